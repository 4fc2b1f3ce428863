"""Data audits: is the event data that training learns from and reports count what it should be?

:func:`run_audit` checks the last ``days`` (complete hours up to now) against the ``baseline_days`` before them and
saves an ``AuditReport``; :func:`latest_report` returns the newest one (the admin dashboard shows it). Every check
gives ``pass`` / ``warn`` / ``fail`` with the numbers it measured and the thresholds it used
(``PERSONALIZATION["AUDIT"]``); the report's status is the worst of them. The checks:

- ``event_volume``: events per type and UTC hour against the same hour of the previous days: the usual range is the
  median +- k x MAD (median absolute deviation, scaled to a standard deviation; robust to the odd outage or sale),
  with a floor of sqrt(median) (the noise of a count) so that a quiet, steady hour is not flagged for one event.
- ``duplicates``, ``bots``, ``rate_limited``: shares of what tracking received, from the daily ingestion counters.
- ``unknown_items``: events about items the catalog does not hold (deleted, mistyped keys) or holds as unavailable.
- ``clock_skew``: events stamped in the future of their arrival, or arriving long after they happened.
- ``context``: missing or malformed context fields (device, os, browser, country, hour, weekday).
- ``impossible_rates``: visitors with more events in one minute than a person can make.
- ``attribution``: the share of impressions and clicks that name a recommendation list known to RecommendationLog.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import numpy as np
from django.db.models import Count, F
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from personalization import signals
from personalization.catalog import get_catalog
from personalization.conf import settings
from personalization.models import AuditReport, Event, RecommendationLog
from personalization.monitoring import counters
from personalization.subjects import subject_key

PASS, WARN, FAIL = AuditReport.Status.PASS.value, AuditReport.Status.WARN.value, AuditReport.Status.FAIL.value
_RANK = {PASS: 0, WARN: 1, FAIL: 2}
#: Sources whose events carry the request's context (device, os, browser; country when known).
REQUEST_SOURCES = (Event.Source.MIDDLEWARE, Event.Source.TRACKER, Event.Source.API)
DEVICES = {"mobile", "tablet", "desktop", "other"}
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CHUNK = 1000  # keys per IN (...) lookup
_MAX_DETAILS = 20


def worst(statuses: Iterable[str]) -> str:
    """The most severe of some statuses (``pass`` for none)."""
    return max(statuses, key=_RANK.__getitem__, default=PASS)


def _above(value: float, pair: list[float]) -> str:
    """``fail`` above the pair's second number, ``warn`` above its first."""
    warn, fail = pair
    return FAIL if value > fail else WARN if value > warn else PASS


def _below(value: float, pair: list[float]) -> str:
    """``fail`` below the pair's second number, ``warn`` below its first."""
    warn, fail = pair
    return FAIL if value < fail else WARN if value < warn else PASS


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _check(name: str, status: str, summary: str, numbers: dict[str, Any], thresholds: dict[str, Any],
           details: list[Any] | None = None) -> dict[str, Any]:
    return {"name": name, "status": status, "summary": summary, "numbers": numbers, "thresholds": thresholds,
            "details": (details or [])[:_MAX_DETAILS]}


def _chunks(values: list[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


class Window:
    """The audited period and the baseline before it."""

    def __init__(self, days: int, baseline_days: int, now: datetime | None = None) -> None:
        now = (now or timezone.now()).astimezone(dt_timezone.utc)
        self.end = now.replace(minute=0, second=0, microsecond=0)  # complete hours only
        self.start = self.end - timedelta(days=days)
        self.baseline_start = self.start - timedelta(days=baseline_days)
        self.days, self.baseline_days = days, baseline_days

    def events(self) -> Any:
        return Event.objects.filter(occurred_at__gte=self.start, occurred_at__lt=self.end).order_by()


def check_event_volume(window: Window, audit: dict[str, Any]) -> dict[str, Any]:
    """Events per type and UTC hour of the period against the same hour of each baseline day (median +- k MAD)."""
    from scipy.stats import median_abs_deviation  # here: the admin imports this module in every web process
    rows = (Event.objects.filter(occurred_at__gte=window.baseline_start, occurred_at__lt=window.end).order_by()
            .annotate(hour=TruncHour("occurred_at", tzinfo=dt_timezone.utc))
            .values("event_type", "hour").annotate(n=Count("id")).values_list("event_type", "hour", "n"))
    counts: dict[str, dict[datetime, int]] = defaultdict(dict)
    for event_type, hour, n in rows:
        counts[event_type][hour.astimezone(dt_timezone.utc)] = n
    thresholds = {"k_warn": audit["volume_k_warn"], "k_fail": audit["volume_k_fail"],
                  "min_change": audit["volume_min_change"], "min_history_days": audit["min_history_days"],
                  "range": "median +- k * max(1.4826 * MAD, sqrt(median)) of the same UTC hour on the baseline days"}
    baseline_hours = [h for by_hour in counts.values() for h in by_hour if h < window.start]
    first = min(baseline_hours) if baseline_hours else window.start
    history = int((window.start - first).total_seconds() // 86400)
    period_hours = [window.start + timedelta(hours=i) for i in range(window.days * 24)]
    per_type = {t: sum(n for h, n in by_hour.items() if h >= window.start) for t, by_hour in counts.items()}
    numbers: dict[str, Any] = {"events": sum(per_type.values()), "per_type": per_type,
                               "baseline_days_with_history": history}
    if history < audit["min_history_days"]:
        return _check("event_volume", PASS, f"Not judged: {history} day(s) of history before the period, fewer "
                      f"than {audit['min_history_days']}.", numbers, thresholds)
    flagged = []
    checked = 0
    for event_type, by_hour in sorted(counts.items()):
        offsets = np.arange(1, window.baseline_days + 1)
        for hour in period_hours:
            past = [hour - timedelta(days=int(d)) for d in offsets]
            sample = np.array([by_hour.get(p, 0) for p in past if p >= first], dtype=float)
            if len(sample) < audit["min_history_days"]:
                continue
            checked += 1
            count = by_hour.get(hour, 0)
            median = float(np.median(sample))
            scale = max(float(median_abs_deviation(sample, scale="normal")), float(np.sqrt(max(median, 1.0))))
            deviation = abs(count - median)
            if deviation < audit["volume_min_change"] or deviation <= audit["volume_k_warn"] * scale:
                continue
            status = FAIL if deviation > audit["volume_k_fail"] * scale else WARN
            flagged.append({"event_type": event_type, "hour": hour.isoformat(), "count": count,
                            "median": median, "low": round(max(median - audit["volume_k_warn"] * scale, 0), 2),
                            "high": round(median + audit["volume_k_warn"] * scale, 2),
                            "k": round(deviation / scale, 2), "status": status})
    flagged.sort(key=lambda f: -f["k"])
    numbers.update(buckets_checked=checked, buckets_flagged=len(flagged))
    status = worst(f["status"] for f in flagged)
    if flagged:
        top = flagged[0]
        summary = (f"{len(flagged)} of {checked} type-hours outside the usual range; e.g. {top['event_type']} at "
                   f"{top['hour'][:13]}h: {top['count']} (usual {top['low']:g}-{top['high']:g}).")
    else:
        summary = f"All {checked} type-hours within the usual range."
    return _check("event_volume", status, summary, numbers, thresholds, flagged)


def check_ingestion(window: Window, audit: dict[str, Any]) -> list[dict[str, Any]]:
    """Duplicate rate, bot and rate-limited shares from the ingestion counters of the period's UTC days, up to the
    day of its end: the counters are daily, and in the first hour of a day (the period ending at midnight) that
    day's counters so far are what tracking received since the period, not part of a day the audit left out."""
    first, last = window.start.date(), window.end.date()
    totals = counters.counts(first, last)
    received = sum(totals.values())
    numbers = {"days": [first.isoformat(), last.isoformat()], "counters": totals, "received": received}
    duplicates = totals["duplicate_events"]
    shares = {
        "duplicates": ("duplicate_rate", _share(duplicates, duplicates + totals[counters.ACCEPTED]),
                       "of events sent were repeats of stored ones"),
        "bots": ("bot_share", _share(totals["bot_events"], received), "of events received came from bots"),
        "rate_limited": ("rate_limited_share", _share(totals["rate_limited_events"], received),
                         "of events received were over the rate limit"),
    }
    results = []
    for name, (key, share, what) in shares.items():
        if not received:
            results.append(_check(name, PASS, "No events counted in the period.", numbers, {key: audit[key]}))
            continue
        results.append(_check(name, _above(share, audit[key]), f"{share:.2%} {what}.",
                              {**numbers, key: share}, {key: audit[key]}))
    return results


def check_items(window: Window, audit: dict[str, Any]) -> dict[str, Any]:
    """Events about items the catalog does not hold, or holds as unavailable."""
    thresholds = {"unknown_item_share": audit["unknown_item_share"],
                  "unavailable_item_share": audit["unavailable_item_share"]}
    per_item = dict(window.events().exclude(item_key="").values("item_key").annotate(n=Count("id"))
                    .values_list("item_key", "n"))
    adapter = get_catalog()
    managed = [key for key in per_item if adapter.manages(key)]
    found: dict[str, bool] = {}
    for chunk in _chunks(managed):
        for row in adapter.features(chunk):
            found[row["item"]] = bool(row.get("available", True))
    unknown = {k: per_item[k] for k in managed if k not in found}
    unavailable = {k: per_item[k] for k in managed if found.get(k) is False}
    total = sum(per_item[k] for k in managed)
    numbers = {"item_events": total, "items": len(managed), "unknown_items": len(unknown),
               "unknown_item_events": sum(unknown.values()), "unavailable_items": len(unavailable),
               "unavailable_item_events": sum(unavailable.values()),
               "unmanaged_items": len(per_item) - len(managed)}
    unknown_share = _share(numbers["unknown_item_events"], total)
    unavailable_share = _share(numbers["unavailable_item_events"], total)
    numbers.update(unknown_item_share=unknown_share, unavailable_item_share=unavailable_share)
    status = worst([_above(unknown_share, audit["unknown_item_share"]),
                    _above(unavailable_share, audit["unavailable_item_share"])])
    details = [{"item": k, "events": n, "problem": "unknown"}
               for k, n in sorted(unknown.items(), key=lambda kv: -kv[1])[:10]]
    details += [{"item": k, "events": n, "problem": "unavailable"}
                for k, n in sorted(unavailable.items(), key=lambda kv: -kv[1])[:10]]
    summary = (f"{unknown_share:.2%} of item events name items the catalog does not hold, "
               f"{unavailable_share:.2%} unavailable ones.")
    return _check("unknown_items", status, summary, numbers, thresholds, details)


def check_clock_skew(window: Window, audit: dict[str, Any]) -> dict[str, Any]:
    """Events stamped after they arrived (a fast client clock) or arriving long after they happened (a slow clock,
    an offline app's backlog). Imported history is left out."""
    events = window.events().exclude(source=Event.Source.IMPORT)
    total = events.count()
    future = events.filter(
        occurred_at__gt=F("received_at") + timedelta(seconds=audit["future_tolerance_seconds"])).count()
    late = events.filter(received_at__gt=F("occurred_at") + timedelta(seconds=audit["late_seconds"])).count()
    numbers = {"events": total, "future_events": future, "late_events": late,
               "future_share": _share(future, total), "late_share": _share(late, total)}
    thresholds = {"future_share": audit["future_share"], "future_tolerance_seconds": audit["future_tolerance_seconds"],
                  "late_share": audit["late_share"], "late_seconds": audit["late_seconds"]}
    status = worst([_above(numbers["future_share"], audit["future_share"]),
                    _above(numbers["late_share"], audit["late_share"])])
    summary = (f"{numbers['future_share']:.2%} stamped more than {audit['future_tolerance_seconds']} s after they "
               f"arrived, {numbers['late_share']:.2%} arrived more than {audit['late_seconds']} s late.")
    return _check("clock_skew", status, summary, numbers, thresholds)


def _context_problems(source: str, context: Any) -> tuple[set[str], set[str]]:
    """Missing and malformed fields of one stored context."""
    if not isinstance(context, dict):
        return set(), {"context"}
    missing, malformed = set(), set()
    for name, valid in (("hour", range(24)), ("weekday", range(7))):
        value = context.get(name)
        if value is None:
            missing.add(name)
        elif isinstance(value, bool) or not isinstance(value, int) or value not in valid:
            malformed.add(name)
    if source in REQUEST_SOURCES:
        for name in ("device", "os", "browser"):
            value = context.get(name)
            if value in (None, ""):
                missing.add(name)
            elif not isinstance(value, str) or (name == "device" and value not in DEVICES):
                malformed.add(name)
    country = context.get("country")
    if country is not None and (not isinstance(country, str) or not _COUNTRY.match(country)):
        malformed.add("country")
    return missing, malformed


def check_context(window: Window, audit: dict[str, Any]) -> dict[str, Any]:
    """Missing or malformed context fields, on the period's latest ``context_sample`` events (imports left out)."""
    rows = (window.events().exclude(source=Event.Source.IMPORT).order_by("-occurred_at")
            .values_list("source", "context")[:audit["context_sample"]])
    missing: dict[str, int] = defaultdict(int)
    malformed: dict[str, int] = defaultdict(int)
    sampled = with_missing = with_malformed = 0
    for source, context in rows.iterator(chunk_size=5000):
        sampled += 1
        lacking, bad = _context_problems(source, context)
        for name in lacking:
            missing[name] += 1
        for name in bad:
            malformed[name] += 1
        with_missing += bool(lacking)
        with_malformed += bool(bad)
    numbers = {"sampled": sampled, "missing": dict(missing), "malformed": dict(malformed),
               "missing_share": _share(with_missing, sampled), "malformed_share": _share(with_malformed, sampled)}
    thresholds = {"context_missing_share": audit["context_missing_share"],
                  "context_malformed_share": audit["context_malformed_share"],
                  "context_sample": audit["context_sample"],
                  "expected": "hour 0-23 and weekday 0-6 on every event; device (mobile, tablet, desktop, other), "
                              "os and browser on middleware, tracker and API events; country as 2 capital letters"}
    status = worst([_above(numbers["missing_share"], audit["context_missing_share"]),
                    _above(numbers["malformed_share"], audit["context_malformed_share"])])
    fields = ", ".join(f"{k} {v}" for k, v in sorted({**missing, **malformed}.items())) or "none"
    summary = (f"{numbers['missing_share']:.2%} of {sampled} events lack a field, {numbers['malformed_share']:.2%} "
               f"have a malformed one (fields: {fields}).")
    return _check("context", status, summary, numbers, thresholds)


def check_rates(window: Window, audit: dict[str, Any]) -> dict[str, Any]:
    """Visitors (or users) with more events in one minute than ``max_events_per_minute`` (imports left out)."""
    limit = audit["max_events_per_minute"]
    events = window.events().exclude(source=Event.Source.IMPORT)
    total = events.count()
    rows = list(events.annotate(minute=TruncMinute("occurred_at", tzinfo=dt_timezone.utc))
                .values("visitor_id", "user_id", "minute").annotate(n=Count("id")).filter(n__gt=limit)
                .values_list("visitor_id", "user_id", "minute", "n"))
    by_subject: dict[str, dict[str, Any]] = {}
    for visitor_id, user_id, minute, n in rows:
        subject = f"u:{user_id}" if user_id else f"v:{visitor_id}"
        entry = by_subject.setdefault(subject, {"subject": subject_key(subject), "minutes": 0, "events": 0,
                                                "max_per_minute": 0, "first_minute": minute.isoformat()})
        entry["minutes"] += 1
        entry["events"] += n
        entry["max_per_minute"] = max(entry["max_per_minute"], n)
    flagged_events = sum(e["events"] for e in by_subject.values())
    numbers = {"events": total, "visitors": len(by_subject), "events_in_flagged_minutes": flagged_events,
               "share": _share(flagged_events, total)}
    thresholds = {"max_events_per_minute": limit, "impossible_rate_share": audit["impossible_rate_share"]}
    status = _above(numbers["share"], audit["impossible_rate_share"]) if by_subject else PASS
    details = sorted(by_subject.values(), key=lambda e: -e["max_per_minute"])
    summary = (f"{len(by_subject)} visitor(s) above {limit} events a minute ({numbers['share']:.2%} of events)."
               if by_subject else f"No visitor above {limit} events a minute.")
    return _check("impossible_rates", status, summary, numbers, thresholds, details)


def check_attribution(window: Window, audit: dict[str, Any]) -> dict[str, Any]:
    """The share of each attribution type's events naming a list that RecommendationLog knows."""
    minimum: dict[str, list[float]] = audit["attributed_share"]
    types = list(dict.fromkeys([*audit["attribution_types"], *minimum]))
    thresholds = {"attribution_types": types, "attributed_share (warn, fail below)": minimum}
    per_type: dict[str, dict[str, Any]] = {}
    statuses = []
    log_off = settings.RECOMMENDATION_LOG_WRITE == "off"
    for event_type in types:
        events = window.events().filter(event_type=event_type)
        total = events.count()
        per_id = dict(events.exclude(recommendation_id="").values("recommendation_id").annotate(n=Count("id"))
                      .values_list("recommendation_id", "n"))
        known: set[str] = set()
        for chunk in _chunks(list(per_id)):
            known.update(RecommendationLog.objects.filter(id__in=chunk).values_list("id", flat=True))
        with_id = sum(per_id.values())
        attributed = sum(n for rec_id, n in per_id.items() if rec_id in known)
        share = _share(attributed, total)
        per_type[event_type] = {"events": total, "with_recommendation_id": with_id, "attributed": attributed,
                                "unknown_recommendation_id": with_id - attributed, "attributed_share": share}
        if total and event_type in minimum and not log_off:
            statuses.append(_below(share, minimum[event_type]))
    numbers = {"per_type": per_type, "recommendation_log": settings.RECOMMENDATION_LOG_WRITE}
    parts = [f"{t} {v['attributed_share']:.2%} of {v['events']}" for t, v in per_type.items() if v["events"]]
    summary = "Attributed to a logged list: " + (", ".join(parts) if parts else "no such events") + "."
    if log_off:
        summary += " Not judged: RECOMMENDATION_LOG_WRITE is off, so no list is logged."
    return _check("attribution", worst(statuses), summary, numbers, thresholds)


#: The checks in report order; each takes the window and the AUDIT settings and returns one check or a list.
CHECKS: tuple[Callable[[Window, dict[str, Any]], Any], ...] = (
    check_event_volume, check_ingestion, check_items, check_clock_skew, check_context, check_rates,
    check_attribution,
)


def audit_checks(days: int = 1, baseline_days: int | None = None, *,
                 now: datetime | None = None) -> tuple[Window, list[dict[str, Any]]]:
    """Run every check (after copying the ingestion counters) without saving; returns the window and the checks."""
    audit = settings.AUDIT
    baseline_days = audit["baseline_days"] if baseline_days is None else baseline_days
    for name, value, low in (("days", days, 1), ("baseline_days", baseline_days, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 366:
            raise ValueError(f"{name} must be a whole number of days from {low} to 366, not {value!r}.")
    window = Window(days, baseline_days, now)
    counters.persist_counters(today=window.end.date())
    results: list[dict[str, Any]] = []
    for check in CHECKS:
        outcome = check(window, audit)
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    return window, results


def run_audit(days: int = 1, baseline_days: int | None = None, *, now: datetime | None = None,
              trigger: str = "python", save: bool = True) -> AuditReport:
    """Audit the last ``days`` against the ``baseline_days`` before them; the report is saved unless ``save`` is
    False. Raises ValueError for days outside 1-366."""
    window, results = audit_checks(days, baseline_days, now=now)
    report = AuditReport(created_at=timezone.now(), days=window.days, baseline_days=window.baseline_days,
                         period_start=window.start, period_end=window.end, trigger=trigger,
                         status=worst(c["status"] for c in results), checks=results)
    if save:
        report.save()
    return report


def request_audit(days: int = 1, trigger: str = "admin") -> bool:
    """Have an audit run outside this request (the tasks module queues it, or starts a background thread).

    Returns True when a Celery worker got it, False when it runs in this process."""
    responses = signals.audit_requested.send(sender=AuditReport, days=days, trigger=trigger)
    return any(task_id for _, task_id in responses)


def latest_report() -> AuditReport | None:
    """The newest saved audit report (None before the first audit): what the admin dashboard shows."""
    return AuditReport.objects.order_by("-created_at", "-pk").first()


def report_dict(report: AuditReport) -> dict[str, Any]:
    """A report as plain JSON-ready data (the ``--json`` output of ``personalization_audit``)."""
    return {"id": report.pk, "created_at": report.created_at.isoformat(), "status": report.status,
            "days": report.days, "baseline_days": report.baseline_days,
            "period": {"start": report.period_start.isoformat(), "end": report.period_end.isoformat()},
            "checks": report.checks}


def report_table(report: AuditReport) -> str:
    """A report as a plain-text table: one line per check with its status and summary."""
    width = max((len(c["name"]) for c in report.checks), default=5)
    lines = [f"Audit of {report.period_start:%Y-%m-%d %H:%M} - {report.period_end:%Y-%m-%d %H:%M} UTC "
             f"({report.days} day(s) vs the {report.baseline_days} before): {report.status.upper()}", ""]
    lines.append(f"{'check':<{width}}  status  summary")
    lines.append(f"{'-' * width}  ------  -------")
    lines += [f"{c['name']:<{width}}  {c['status'].upper():<6}  {c['summary']}" for c in report.checks]
    return "\n".join(lines)
