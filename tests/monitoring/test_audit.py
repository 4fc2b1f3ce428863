"""The data audit: every check passes on a shop's steady traffic and flags the anomaly it is there for."""

from __future__ import annotations

import json
from datetime import timedelta
from datetime import timezone as dt_timezone
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from personalization.models import AuditReport
from personalization.monitoring.audit import latest_report, run_audit
from personalization.tracking import metrics

pytestmark = pytest.mark.django_db


def statuses(report: AuditReport) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report.checks}


def check(report: AuditReport, name: str) -> dict:
    return next(c for c in report.checks if c["name"] == name)


def test_steady_traffic_passes_every_check(traffic):
    report = run_audit()
    assert statuses(report) == {name: "pass" for name in (
        "event_volume", "duplicates", "bots", "rate_limited", "unknown_items", "clock_skew", "context",
        "impossible_rates", "attribution")}, [c["summary"] for c in report.checks if c["status"] != "pass"]
    assert report.status == "pass" and report.pk and latest_report() == report
    volume = check(report, "event_volume")["numbers"]
    assert volume["buckets_checked"] == 3 * 24 and volume["baseline_days_with_history"] == 28
    assert check(report, "attribution")["numbers"]["per_type"]["impression"]["attributed_share"] == 1.0
    assert report.period_end == traffic.end and report.period_start == traffic.end - timedelta(days=1)


def test_a_volume_spike_fails_and_names_the_type_and_hour(traffic):
    hour = traffic.end - timedelta(hours=3)
    traffic.add([traffic.event(hour + timedelta(seconds=n), visitor=f"s-{n}") for n in range(300)])
    result = check(run_audit(), "event_volume")
    assert result["status"] == "fail"
    spike = result["details"][0]
    assert (spike["event_type"], spike["hour"], spike["count"]) == ("view", hour.isoformat(), 300 + 5 + (
        (29 * 24 - 3) % 3))
    assert spike["high"] < 50 and "view" in result["summary"]


def test_an_empty_hour_is_judged_against_the_configured_thresholds(traffic, settings):
    from personalization.models import Event

    hour = traffic.end - timedelta(hours=2)
    Event.objects.filter(occurred_at__gte=hour, occurred_at__lt=hour + timedelta(hours=1), event_type="view").delete()
    # 5-7 views an hour: none is 6 below the median, within sqrt(6) * 4 and below volume_min_change (20)
    assert check(run_audit(), "event_volume")["status"] == "pass"
    settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                "AUDIT": {"volume_min_change": 3, "volume_k_warn": 2.0, "volume_k_fail": 8.0}}
    result = check(run_audit(), "event_volume")
    assert result["status"] == "warn" and result["details"][0]["count"] == 0
    assert result["details"][0]["hour"] == hour.isoformat()


def test_without_history_the_volume_is_reported_not_judged(make_product):
    report = run_audit()
    assert check(report, "event_volume")["status"] == "pass"
    assert "Not judged" in check(report, "event_volume")["summary"]


def test_duplicates_fail_from_the_counters(traffic):
    metrics.incr("duplicate_events", 5000)
    result = check(run_audit(), "duplicates")
    assert result["status"] == "fail" and result["numbers"]["counters"]["duplicate_events"] == 5000
    assert result["numbers"]["duplicate_rate"] > 0.2 and result["thresholds"] == {"duplicate_rate": [0.05, 0.2]}


def test_a_bot_share_above_the_threshold_fails(traffic):
    metrics.incr("bot_events", 10_000)
    report = run_audit()
    assert check(report, "bots")["status"] == "fail" and check(report, "duplicates")["status"] == "pass"


def test_in_the_first_hour_of_a_day_the_audit_still_reads_that_days_counters(traffic):
    metrics.incr("bot_events", 10_000)  # today's counter
    just_after_midnight = timezone.now().astimezone(dt_timezone.utc).replace(hour=0, minute=20)
    result = check(run_audit(now=just_after_midnight), "bots")
    assert result["status"] == "fail" and result["numbers"]["counters"]["bot_events"] == 10_000


def test_a_few_rate_limited_events_warn(traffic):
    accepted = check(run_audit(save=False), "rate_limited")["numbers"]["counters"]["accepted_events"]
    metrics.incr("rate_limited_events", int(accepted * 0.03))
    assert check(run_audit(), "rate_limited")["status"] == "warn"


def test_events_about_unknown_or_unavailable_items_are_flagged(traffic):
    when = traffic.end - timedelta(hours=1)
    traffic.add([traffic.event(when, item="product:999999") for _ in range(40)])
    result = check(run_audit(), "unknown_items")
    assert result["status"] == "fail" and {"item": "product:999999", "events": 40, "problem": "unknown"} in \
        result["details"]
    traffic.products[0].in_stock = False
    traffic.products[0].save()
    result = check(run_audit(), "unknown_items")
    assert result["numbers"]["unavailable_items"] == 1 and any(d["problem"] == "unavailable"
                                                               for d in result["details"])


def test_clock_skew_future_and_late_events(traffic):
    when = traffic.end - timedelta(hours=2)
    future = [traffic.event(when, received_at=when - timedelta(hours=1)) for _ in range(30)]
    traffic.add(future)
    result = check(run_audit(), "clock_skew")
    assert result["status"] == "fail" and result["numbers"]["future_events"] == 30
    traffic.add([traffic.event(when, received_at=when + timedelta(hours=5)) for _ in range(30)])
    assert check(run_audit(), "clock_skew")["numbers"]["late_events"] == 30


def test_imported_history_is_not_clock_skew(traffic):
    when = traffic.end - timedelta(hours=2)
    traffic.add([traffic.event(when, received_at=timezone.now(), source="import") for _ in range(100)])
    assert check(run_audit(), "clock_skew")["status"] == "pass"


def test_missing_and_malformed_context_fields(traffic):
    when = traffic.end - timedelta(hours=1)
    traffic.add([traffic.event(when, context={"device": "toaster", "os": "X", "browser": "Y", "country": "germany",
                                              "hour": 25, "weekday": 1}) for _ in range(60)])
    traffic.add([traffic.event(when, context={}) for _ in range(60)])
    result = check(run_audit(), "context")
    assert result["status"] == "fail"
    assert result["numbers"]["malformed"] == {"device": 60, "country": 60, "hour": 60}
    assert result["numbers"]["missing"]["device"] == 60 and result["numbers"]["missing"]["weekday"] == 60


def test_a_visitor_with_an_impossible_rate_is_flagged_under_a_pseudonym(traffic):
    minute = traffic.end - timedelta(hours=4)
    traffic.add([traffic.event(minute + timedelta(milliseconds=100 * n), visitor="scripted") for n in range(200)])
    result = check(run_audit(), "impossible_rates")
    assert result["status"] == "fail" and result["numbers"]["visitors"] == 1
    from personalization.subjects import subject_key

    assert result["details"][0]["subject"] == subject_key("v:scripted")
    assert result["details"][0]["max_per_minute"] == 200 and "scripted" not in json.dumps(result)


def test_impressions_not_attributed_to_a_logged_list_fail(traffic):
    when = traffic.end - timedelta(hours=1)
    traffic.add([traffic.event(when, "impression", recommendation_id="never-logged") for _ in range(60)]
                + [traffic.event(when, "impression") for _ in range(60)])
    result = check(run_audit(), "attribution")
    impressions = result["numbers"]["per_type"]["impression"]
    assert impressions["unknown_recommendation_id"] == 60 and impressions["with_recommendation_id"] == 108
    assert result["status"] == "fail" and impressions["attributed_share"] < 0.5


def test_command_prints_a_table_and_exits_nonzero_on_fail(traffic):
    out = StringIO()
    call_command("personalization_audit", stdout=out)
    table = out.getvalue()
    assert "PASS" in table and "event_volume" in table and "impossible_rates" in table
    traffic.add([traffic.event(traffic.end - timedelta(hours=1), item="product:999999") for _ in range(200)])
    with pytest.raises(CommandError) as failed:
        call_command("personalization_audit", stdout=StringIO())
    assert failed.value.returncode == 1 and "unknown_items" in str(failed.value)
    call_command("personalization_audit", "--fail-on", "never", stdout=StringIO())
    assert AuditReport.objects.filter(trigger="command").count() == 3


def test_command_json_schema(traffic):
    out = StringIO()
    call_command("personalization_audit", "--json", "--days", "2", "--baseline-days", "14", "--no-save", stdout=out)
    data = json.loads(out.getvalue())
    assert set(data) == {"id", "created_at", "status", "days", "baseline_days", "period", "checks"}
    assert data["id"] is None and data["days"] == 2 and data["baseline_days"] == 14
    assert not AuditReport.objects.exists()
    for entry in data["checks"]:
        assert set(entry) == {"name", "status", "summary", "numbers", "thresholds", "details"}
        assert entry["status"] in {"pass", "warn", "fail"} and entry["summary"]


@pytest.mark.parametrize("args", [["--days", "0"], ["--days", "400"], ["--baseline-days", "0"]])
def test_command_rejects_bad_periods_with_a_hint(db, args):
    with pytest.raises(CommandError, match="E.g. --days 1") as error:
        call_command("personalization_audit", *args, stdout=StringIO())
    assert error.value.returncode == 2


def test_task_saves_a_report_and_reports_are_purged_with_the_retention_limit(traffic, settings):
    from personalization.schedules import BEAT_SCHEDULE
    from personalization.tasks import audit_data, purge_expired_data

    assert any(e["task"] == "personalization.audit_data" for e in BEAT_SCHEDULE.values())
    result = audit_data()
    assert result["status"] == "pass" and AuditReport.objects.get(pk=result["report"]).trigger == "schedule"
    AuditReport.objects.filter(pk=result["report"]).update(created_at=timezone.now() - timedelta(days=40))
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "RETENTION_DAYS": 30}
    assert purge_expired_data()["audit_reports"] == 1 and not AuditReport.objects.exists()


def test_bad_audit_thresholds_are_system_check_errors(settings):
    from personalization.checks import check_audit_settings

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "AUDIT": {
        "bot_share": [0.9, 0.1], "max_events_per_minute": 0, "attributed_share": {"impression": [0.5, 0.9]}}}
    errors = check_audit_settings()
    assert {e.id for e in errors} == {"personalization.E080"} and len(errors) == 3
    text = " ".join(e.msg for e in errors)
    assert "bot_share" in text and "max_events_per_minute" in text and "impression" in text
