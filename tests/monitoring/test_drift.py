"""Drift detectors against the real database: ADWIN on click streams (incremental), PSI/KS on traffic, the metric
re-check, the retrain they trigger (rate-limited), the task, the admin, the checks."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.utils import timezone

from personalization import tasks
from personalization.models import DriftDetection, DriftState, Event, ModelVersion, RecommendationLog
from personalization.monitoring import drift

pytestmark = pytest.mark.django_db
NOW = timezone.now().replace(microsecond=0)


@pytest.fixture
def live():
    return ModelVersion.objects.create(status=ModelVersion.Status.LIVE, data_start=NOW - timedelta(days=10),
                                       data_end=NOW - timedelta(days=2), test_metrics={"system": {"ndcg@10": 0.3}})


@pytest.fixture
def drift_settings(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "DRIFT_CLICK_SECONDS": 0, "DRIFT_RETRAIN": False}
    return settings


def _serve(version, slot, impressions, ctr, start, rng, *, step=timedelta(seconds=20)):
    """``impressions`` impressions of lists from ``version`` in ``slot``, each clicked with probability ``ctr``."""
    events, logs = [], []
    at = start
    for i in range(0, impressions, 4):
        rec = uuid.uuid4().hex
        logs.append(RecommendationLog(id=rec, subject="v:x", slot=slot, model_version=version, created_at=at))
        for k in range(4):
            item = f"product:{i + k}"
            events.append(Event(event_type="impression", item_key=item, visitor_id="x", occurred_at=at,
                                received_at=at, recommendation_id=rec))
            if rng.random() < ctr:
                events.append(Event(event_type="click", item_key=item, visitor_id="x", occurred_at=at + step / 2,
                                    received_at=at, recommendation_id=rec))
        at += step
    RecommendationLog.objects.bulk_create(logs)
    Event.objects.bulk_create(events)
    return at


def test_psi_is_zero_for_equal_histograms_and_large_for_a_moved_one():
    assert drift.psi({"a": 50, "b": 50}, {"a": 5, "b": 5}) == pytest.approx(0.0)
    assert drift.psi({"a": 90, "b": 10}, {"a": 10, "b": 90}) > 1.0
    assert drift.psi({"a": 10}, {"b": 10}) > 5  # disjoint: floored bins keep it finite
    assert drift.homogeneity_p_value({"a": 9, "b": 11}, {"a": 11, "b": 9}) > 0.5  # noise
    assert drift.homogeneity_p_value({"a": 900, "b": 100}, {"a": 100, "b": 900}) < 1e-9


def test_adwin_reads_the_click_stream_incrementally_and_records_a_ctr_drop_with_evidence(live, drift_settings):
    import random

    rng = random.Random(1)
    at = _serve(live, "home", 2000, 0.3, NOW - timedelta(hours=5), rng)
    first = drift.detect(now=NOW, distributions=False)
    assert first.impressions == 2000 and not first.detections
    state = DriftState.objects.get(key=drift.ADWIN_KEY)
    assert state.seen == 2000 and state.model_version == live
    watermark = state.last_event_id

    shift_at = at
    _serve(live, "home", 800, 0.05, at, rng)
    second = drift.detect(now=NOW, distributions=False)
    assert second.impressions == 800  # only the new ones
    assert DriftState.objects.get(key=drift.ADWIN_KEY).last_event_id > watermark
    [found] = second.detections
    assert (found.detector, found.subject, found.statistic) == ("adwin", "slot:home", "ctr")
    assert found.evidence["ctr_before"] > 0.2 and found.evidence["ctr_after"] < found.evidence["ctr_before"]
    assert found.evidence["direction"] == "down" and found.model_version == live
    assert found.recent_start >= shift_at - timedelta(minutes=30)  # "since when": about where the rate changed
    assert drift.detect(now=NOW, distributions=False).detections == []  # nothing new: nothing recorded again


def test_lists_of_other_versions_are_not_part_of_the_live_click_stream(live, drift_settings):
    import random

    old = ModelVersion.objects.create(status=ModelVersion.Status.RETIRED)
    _serve(old, "home", 400, 0.3, NOW - timedelta(hours=3), random.Random(2))
    assert drift.detect(now=NOW, distributions=False).impressions == 0


def test_a_device_shift_is_found_by_psi_with_the_bins_that_moved(live, drift_settings):
    def events(device, start, n):
        return [Event(event_type="view", item_key=f"product:{i % 7}", visitor_id=f"v{i}", context={"device": device},
                      occurred_at=start + timedelta(seconds=i), received_at=start) for i in range(n)]

    Event.objects.bulk_create(events("desktop", live.data_end - timedelta(hours=5), 900)
                              + events("mobile", NOW - timedelta(hours=3), 600))
    report = drift.detect(now=NOW, clicks=False)
    device = next(d for d in report.detections if d.subject == "device")
    assert device.detector == "psi" and device.value > 0.2
    moved = {m["bin"]: m for m in device.evidence["moved"]}
    assert moved["mobile"]["recent_share"] == 1.0 and moved["desktop"]["baseline_share"] == 1.0
    assert device.baseline_end == live.data_end and device.recent_end == NOW
    assert "item" not in {d.subject for d in report.detections}  # the same items: no item drift


def test_too_few_recent_events_skip_the_distributions_with_a_reason(live, drift_settings):
    report = drift.detect(now=NOW, clicks=False)
    assert "DRIFT_MIN_EVENTS" in report.skipped["distributions"] and not report.detections


def test_a_detection_queues_one_retrain_per_period(live, settings):
    import random

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "DRIFT_CLICK_SECONDS": 0, "DRIFT_RETRAIN_MIN_HOURS": 6}
    rng = random.Random(3)
    at = _serve(live, "home", 1500, 0.3, NOW - timedelta(hours=6), rng)
    at = _serve(live, "home", 800, 0.02, at, rng)
    report = drift.detect(now=NOW, distributions=False)
    assert report.retrain is not None and report.retrain.status == ModelVersion.Status.QUEUED
    assert DriftDetection.objects.get().retrain == report.retrain

    ModelVersion.objects.filter(pk=report.retrain.pk).update(status=ModelVersion.Status.FAILED)
    DriftDetection.objects.create(detector="psi", subject="item", statistic="psi", value=1, threshold=0.2,
                                  detected_at=NOW - timedelta(hours=1), model_version=live)
    _serve(live, "cart", 1500, 0.3, at, rng)
    _serve(live, "cart", 800, 0.02, at + timedelta(hours=1), rng)
    later = drift.detect(now=NOW + timedelta(hours=2), distributions=False)
    assert later.detections and later.retrain is None
    assert "DRIFT_RETRAIN_MIN_HOURS" in later.skipped["retrain"]
    assert ModelVersion.objects.filter(status=ModelVersion.Status.QUEUED).count() == 0


def test_the_live_models_metric_recheck_records_a_drop(shop_history, settings):
    from personalization.training import train

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "DRIFT_RETRAIN": False}
    version = train(ModelVersion.objects.create(), until=timezone.now() - timedelta(days=2))
    assert version.status == ModelVersion.Status.LIVE
    validated = version.test_metrics["system"]["ndcg@10"]
    # as if it had validated far better than it does on the newest day
    ModelVersion.objects.filter(pk=version.pk).update(
        test_metrics={**version.test_metrics, "system": {**version.test_metrics["system"], "ndcg@10": 0.99}})
    result = tasks.detect_drift(metrics=True, now=timezone.now().isoformat())
    [found] = DriftDetection.objects.all()
    assert result["detections"] == [found.pk]
    assert found.detector == "metric" and found.statistic == "ndcg@10" and found.model_version_id == version.pk
    assert found.evidence["validation"] == 0.99 and found.value < 0.99 * (1 - 0.3)
    assert found.evidence["users"] > 0 and validated > 0
    version.refresh_from_db()
    assert version.test_metrics["recheck"]["system"]["ndcg@10"] == found.value  # recorded on the version too


def test_the_task_runs_the_frequent_detectors_and_reports(live, drift_settings):
    result = tasks.detect_drift()
    assert result["detections"] == [] and result["retrain"] is None and "distributions" in result["skipped"]


def test_admin_lists_detections_read_only_acknowledges_and_warns_on_the_model_list(admin_client, live):
    found = DriftDetection.objects.create(detector="adwin", subject="slot:home", statistic="ctr", value=0.05,
                                          threshold=0.002, evidence={"ctr_before": 0.3}, detected_at=timezone.now(),
                                          model_version=live)
    page = admin_client.get("/admin/personalization/modelversion/").content.decode()
    assert "Drift: 1 unacknowledged detection" in page and "slot:home" in page
    listing = admin_client.get("/admin/personalization/driftdetection/")
    assert listing.status_code == 200 and "slot:home" in listing.content.decode()
    detail = admin_client.get(f"/admin/personalization/driftdetection/{found.pk}/change/")
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert admin_client.get("/admin/personalization/driftdetection/add/").status_code == 403
    admin_client.post("/admin/personalization/driftdetection/", {
        "action": "acknowledge_detections", "_selected_action": [found.pk]})
    found.refresh_from_db()
    assert found.acknowledged and found.acknowledged_by == "admin"
    assert "unacknowledged" not in admin_client.get("/admin/personalization/modelversion/").content.decode()


def test_bad_drift_settings_are_reported_at_start_up(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "DRIFT_PSI_THRESHOLD": -1, "DRIFT_ADWIN_DELTA": 2,
                                "DRIFT_RETRAIN": "yes"}
    ids = [m.id for m in run_checks()]
    assert ids.count("personalization.E060") == 2 and "personalization.E061" in ids
