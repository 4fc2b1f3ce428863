"""Drift detection: notice when traffic or the live model's quality moves away from what the live version learned.

Three detectors, each recorded as a :class:`~personalization.models.DriftDetection` row with its evidence:

* **ADWIN** (``river.drift.ADWIN``) on each slot's click stream: every impression (an ``impression`` event with a
  ``recommendation_id``; its ``RecommendationLog`` row names the slot) is a 1 when a click with the same
  recommendation id and item followed, else a 0, in time order. ADWIN keeps an adaptive window and fires when
  the mean (the click-through rate) of its older part differs from its newer part beyond chance.
* **PSI** (population stability index) on the distributions of event types, items, categories, devices and
  countries of what visitors do on their own (not impressions of recommended lists or clicks on them, which a
  new model changes by design), confirmed by a chi-square test, and **Kolmogorov-Smirnov**
  (``scipy.stats.ks_2samp``) on event values (cart and purchase amounts),
  between the live version's training window (its last ``DRIFT_BASELINE_DAYS``) and the last
  ``DRIFT_RECENT_HOURS``.
* **Metric drop**: once a day the live version is scored on the newest day (``training.evaluate_version``) and
  compared with its validation metric; a relative drop beyond ``DRIFT_METRIC_DROP`` is drift.

ADWIN's state is incremental: river's detector per slot is pickled into one ``DriftState`` row with the id of the
last event read (the watermark). Each run reads only the impressions that arrived since, so a run costs what the
traffic of 15 minutes costs, and the stream ADWIN sees is exactly the one a single long-running process would have
seen (replaying a window on each run instead would forget the regime before it, which is what ADWIN compares
against, and re-fire on the same change). The state restarts when another version goes live: a new model is a new
click-through regime. The pickle is written and read by this module only, from the app's own table.

When ``DRIFT_RETRAIN`` is on, a run that records drift queues a retrain (``training.enqueue``), at most one per
``DRIFT_RETRAIN_MIN_HOURS``; the admin shows unacknowledged detections on the model version list.
"""

from __future__ import annotations

import logging
import pickle
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from personalization import registry, training
from personalization.conf import settings
from personalization.models import DriftDetection, DriftState, Event, ModelVersion, RecommendationLog

__all__ = ["DriftReport", "detect", "distribution_shift", "homogeneity_p_value", "ks", "metric_drop", "psi",
           "slot_click_drift", "unacknowledged"]

logger = logging.getLogger("personalization.drift")
ADWIN_KEY = "adwin:clicks"
BATCH = 5000  # impressions read per query
MAX_IMPRESSIONS_PER_RUN = 500_000  # one run's work is bounded; the next run continues from the watermark
KS_MAX_SAMPLE = 20_000  # newest values per window compared by the KS test
KS_P_VALUE = 0.01
CHI2_P_VALUE = 0.001  # PSI counts only when the histograms also differ beyond chance (chi-square test)
CATEGORICAL = {"event_type": "event_type", "device": "context__device", "country": "context__country"}


@dataclass
class DriftReport:
    """What one run found: the detections it recorded, the retrain it queued, and what it skipped and why."""

    detections: list[DriftDetection] = field(default_factory=list)
    retrain: ModelVersion | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    impressions: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"detections": [d.pk for d in self.detections], "retrain": self.retrain.pk if self.retrain else None,
                "skipped": self.skipped, "impressions": self.impressions}


# == statistics =======================================================================================================
def psi(expected: Mapping[str, float], actual: Mapping[str, float], eps: float = 1e-4) -> float:
    """Population stability index of two histograms (counts by bin; bins missing on one side count 0).

    Written here because it is ten lines and no well-kept library ships it (scipy, scikit-learn and river do
    not; the PyPI packages named after it are unmaintained one-offs). ``eps`` floors empty bins so the
    logarithm stays finite. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
    """
    keys = sorted(set(expected) | set(actual), key=str)
    e = np.array([float(expected.get(k, 0.0)) for k in keys])
    a = np.array([float(actual.get(k, 0.0)) for k in keys])
    if not keys or e.sum() <= 0 or a.sum() <= 0:
        return 0.0
    e = np.clip(e / e.sum(), eps, None)
    a = np.clip(a / a.sum(), eps, None)
    return float(np.sum((a - e) * np.log(a / e)))


def ks(baseline: Iterable[float], recent: Iterable[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (``scipy.stats.ks_2samp``)."""
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(list(baseline), dtype=float), np.asarray(list(recent), dtype=float))
    return float(result.statistic), float(result.pvalue)


def homogeneity_p_value(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """p-value of the chi-square test that both histograms come from one distribution
    (``scipy.stats.chi2_contingency``): PSI alone grows with the number of bins over the sample size, so a small
    recent window would look drifted by chance."""
    from scipy.stats import chi2_contingency

    keys = [k for k in set(expected) | set(actual) if expected.get(k, 0) + actual.get(k, 0) > 0]
    if len(keys) < 2:
        return 1.0
    table = np.array([[expected.get(k, 0) for k in keys], [actual.get(k, 0) for k in keys]], dtype=float)
    return float(chi2_contingency(table).pvalue)


def _top_bins(counts: Mapping[str, int], top: Iterable[str]) -> dict[str, int]:
    """Counts of the ``top`` keys, the rest summed under ``"(other)"``."""
    keep = set(top)
    binned: dict[str, int] = {}
    for key, n in counts.items():
        name = key if key in keep else "(other)"
        binned[name] = binned.get(name, 0) + n
    return binned


def _largest_moves(expected: Mapping[str, float], actual: Mapping[str, float], n: int = 5) -> list[dict[str, Any]]:
    """The bins whose share moved most, for the evidence."""
    e_total = sum(expected.values()) or 1
    a_total = sum(actual.values()) or 1
    moves = [{"bin": str(k), "baseline_share": round(expected.get(k, 0) / e_total, 4),
              "recent_share": round(actual.get(k, 0) / a_total, 4)} for k in set(expected) | set(actual)]
    moves.sort(key=lambda m: abs(m["recent_share"] - m["baseline_share"]), reverse=True)
    return moves[:n]


# == recording ========================================================================================================
def _record(report: DriftReport, *, detector: str, subject: str, statistic: str, value: float, threshold: float,
            now: datetime, live: ModelVersion | None, evidence: dict[str, Any],
            baseline: tuple[datetime | None, datetime | None] = (None, None),
            recent: tuple[datetime | None, datetime | None] = (None, None)) -> DriftDetection | None:
    """Record one detection, unless the same detector already reported the same subject for the same live version
    within ``DRIFT_RETRAIN_MIN_HOURS`` (a shift that persists is one detection, not one per run)."""
    repeat_after = now - timedelta(hours=settings.DRIFT_RETRAIN_MIN_HOURS)
    if DriftDetection.objects.filter(detector=detector, subject=subject, model_version=live,
                                     detected_at__gt=repeat_after).exists():
        report.skipped[f"{detector}:{subject}"] = "already reported for this live version lately"
        return None
    detection = DriftDetection.objects.create(
        detector=detector, subject=subject[:100], statistic=statistic[:32], value=float(value),
        threshold=float(threshold), baseline_start=baseline[0], baseline_end=baseline[1], recent_start=recent[0],
        recent_end=recent[1], evidence=evidence, model_version=live, detected_at=now)
    logger.warning("Drift: %s", detection)
    report.detections.append(detection)
    return detection


# == ADWIN on each slot's click stream ===============================================================================
def _new_slot_state(now: datetime) -> dict[str, Any]:
    from river.drift import ADWIN

    return {"adwin": ADWIN(delta=settings.DRIFT_ADWIN_DELTA), "seen": 0, "clicks": 0, "started": now.isoformat(),
            "times": deque(maxlen=4096)}


def _impression_batches(after_id: int, settled: datetime) -> Iterable[list[tuple[int, str, str, datetime]]]:
    """Impressions with a recommendation id after ``after_id`` in id order, stopping at the first one younger than
    ``settled`` (its click may still come)."""
    read = 0
    while read < MAX_IMPRESSIONS_PER_RUN:
        rows = list(Event.objects.filter(event_type="impression", id__gt=after_id).exclude(recommendation_id="")
                    .order_by("id").values_list("id", "recommendation_id", "item_key", "occurred_at")[:BATCH])
        if not rows:
            return
        for index, row in enumerate(rows):
            if row[3] > settled:
                if index:
                    yield rows[:index]
                return
        yield rows
        read += len(rows)
        after_id = rows[-1][0]
        if len(rows) < BATCH:
            return


def _chunks(values: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def slot_click_drift(report: DriftReport, live: ModelVersion | None, now: datetime) -> None:
    """Feed the impressions that arrived since the last run to each slot's ADWIN; record the changes it finds."""
    try:
        import river.drift  # noqa: F401
    except ImportError:
        report.skipped["clicks"] = "river is not installed (personalization.W060)"
        return
    state_row = DriftState.objects.filter(key=ADWIN_KEY).first()
    live_id = live.pk if live else None
    slots: dict[str, dict[str, Any]] = {}
    watermark = 0
    if state_row is not None:
        watermark = state_row.last_event_id
        if state_row.model_version_id == live_id:
            try:
                slots = pickle.loads(bytes(state_row.state))  # noqa: S301 - this module's own row (see docstring)
            except Exception:  # noqa: BLE001 - e.g. written by another river version: start the streams afresh
                logger.warning("Drift: could not read the ADWIN state; starting afresh", exc_info=True)
    settled = now - timedelta(seconds=settings.DRIFT_CLICK_SECONDS)
    minimum = settings.DRIFT_ADWIN_MIN_IMPRESSIONS
    for rows in _impression_batches(watermark, settled):
        watermark = rows[-1][0]
        rec_ids = sorted({r[1] for r in rows})
        slot_of: dict[str, str] = {}
        clicked: set[tuple[str, str]] = set()
        for chunk in _chunks(rec_ids):
            slot_of.update((rec, slot) for rec, slot, version in RecommendationLog.objects.filter(id__in=chunk)
                           .values_list("id", "slot", "model_version_id") if version == live_id)
            clicked.update(Event.objects.filter(event_type="click", recommendation_id__in=chunk)
                           .values_list("recommendation_id", "item_key"))
        for _, rec_id, item, occurred in sorted(rows, key=lambda r: (r[3], r[0])):
            slot = slot_of.get(rec_id)
            if slot is None:
                continue  # served by another version or a fallback, or not logged (RECOMMENDATION_LOG_WRITE "off")
            state = slots.get(slot) or slots.setdefault(slot, _new_slot_state(now))
            adwin = state["adwin"]
            before, width_before = adwin.estimation, adwin.width
            hit = (rec_id, item) in clicked
            adwin.update(1.0 if hit else 0.0)
            state["seen"] += 1
            state["clicks"] += int(hit)
            state["times"].append(occurred.timestamp())
            report.impressions += 1
            if not adwin.drift_detected or state["seen"] < minimum:
                continue
            after, width = adwin.estimation, int(adwin.width)
            times = state["times"]
            since = datetime.fromtimestamp(times[-width], tz=occurred.tzinfo) if 0 < width <= len(times) else None
            direction = "down" if after < before else "up"
            _record(report, detector=DriftDetection.Detector.ADWIN, subject=f"slot:{slot}"
                    + ("" if direction == "down" else ":up"), statistic="ctr", value=after,
                    threshold=settings.DRIFT_ADWIN_DELTA, now=now, live=live,
                    recent=(since, occurred), evidence={
                        "ctr_before": round(before, 4), "ctr_after": round(after, 4), "direction": direction,
                        "window_before": int(width_before), "window_after": width,
                        "impressions_seen": state["seen"], "clicks_seen": state["clicks"],
                        "changed_since": since.isoformat() if since else None,
                        "detected_at_event": occurred.isoformat(),
                        "delta": settings.DRIFT_ADWIN_DELTA})
    blob = pickle.dumps(slots, protocol=pickle.HIGHEST_PROTOCOL)
    DriftState.objects.update_or_create(key=ADWIN_KEY, defaults={
        "state": blob, "last_event_id": watermark, "model_version_id": live_id,
        "seen": sum(s["seen"] for s in slots.values()), "clicks": sum(s["clicks"] for s in slots.values()),
        "started_at": state_row.started_at if state_row and state_row.model_version_id == live_id else now})


# == PSI and KS between the training window and recent traffic ======================================================
def _counts(qs: Any, field_name: str) -> dict[str, int]:
    return {str(k) if k not in (None, "") else "(none)": n
            for k, n in qs.values_list(field_name).annotate(n=Count("id")).order_by()}


def _categories(item_counts: Mapping[str, int]) -> dict[str, int]:
    from personalization.extraction import load_items

    items = load_items()
    category = dict(zip(items["item"], items["category"].fillna("(none)"), strict=False)) if len(items) else {}
    counts: dict[str, int] = {}
    for item, n in item_counts.items():
        if item == "(none)":
            continue
        name = str(category.get(item) or "(unknown)")
        counts[name] = counts.get(name, 0) + n
    return counts


def _numeric(qs: Any, name: str) -> list[float]:
    """The newest values of a numeric field (event values: cart and purchase amounts)."""
    return [float(v) for v in qs.exclude(**{name: None}).order_by("-occurred_at")
            .values_list(name, flat=True)[:KS_MAX_SAMPLE]]


def _own_choices(qs: Any) -> Any:
    return qs.exclude(event_type="impression").filter(recommendation_id="")


def distribution_shift(report: DriftReport, live: ModelVersion | None, now: datetime) -> None:
    """PSI of categorical distributions and KS of numeric ones: the live version's training window against the
    last ``DRIFT_RECENT_HOURS``."""
    if live is None or live.data_end is None:
        report.skipped["distributions"] = "no live version with a training window"
        return
    base_end = live.data_end
    base_start = max(live.data_start or base_end, base_end - timedelta(days=settings.DRIFT_BASELINE_DAYS))
    recent_start = max(now - timedelta(hours=settings.DRIFT_RECENT_HOURS), base_end)
    baseline = Event.objects.filter(occurred_at__gte=base_start, occurred_at__lte=base_end)
    recent = Event.objects.filter(occurred_at__gt=recent_start, occurred_at__lte=now)
    n_recent = recent.count()
    if n_recent < settings.DRIFT_MIN_EVENTS:
        report.skipped["distributions"] = (f"{n_recent} events since {recent_start:%Y-%m-%d %H:%M}, fewer than "
                                           f"DRIFT_MIN_EVENTS ({settings.DRIFT_MIN_EVENTS})")
        return
    windows = {"baseline": (base_start, base_end), "recent": (recent_start, now)}
    # what visitors do on their own: impressions of recommended lists and clicks on them follow the model (a new
    # live version changes them by design), not the visitors' tastes
    own_baseline, own_recent = _own_choices(baseline), _own_choices(recent)
    hists: dict[str, tuple[dict[str, int], dict[str, int]]] = {
        name: (_counts(own_baseline, path), _counts(own_recent, path)) for name, path in CATEGORICAL.items()}
    base_items = _counts(own_baseline.exclude(item_key=""), "item_key")
    recent_items = _counts(own_recent.exclude(item_key=""), "item_key")
    top = [k for k, _ in sorted(base_items.items(), key=lambda kv: -kv[1])[:settings.DRIFT_PSI_TOP_ITEMS]]
    hists["item"] = (_top_bins(base_items, top), _top_bins(recent_items, top))
    hists["category"] = (_categories(base_items), _categories(recent_items))
    threshold = settings.DRIFT_PSI_THRESHOLD
    for name, (expected, actual) in hists.items():
        if not expected or not actual:
            continue
        value = psi(expected, actual)
        if value > threshold and (p_value := homogeneity_p_value(expected, actual)) < CHI2_P_VALUE:
            _record(report, detector=DriftDetection.Detector.PSI, subject=name, statistic="psi", value=value,
                    threshold=threshold, now=now, live=live, baseline=windows["baseline"], recent=windows["recent"],
                    evidence={"psi": round(value, 4), "chi2_p_value": p_value,
                              "baseline_events": sum(expected.values()), "recent_events": sum(actual.values()),
                              "moved": _largest_moves(expected, actual)})
    for name in ("value",):
        before, after = _numeric(baseline, name), _numeric(recent, name)
        if len(before) < 30 or len(after) < 30:
            continue
        statistic, p_value = ks(before, after)
        if statistic > settings.DRIFT_KS_THRESHOLD and p_value < KS_P_VALUE:
            _record(report, detector=DriftDetection.Detector.KS, subject=name, statistic="ks", value=statistic,
                    threshold=settings.DRIFT_KS_THRESHOLD, now=now, live=live, baseline=windows["baseline"],
                    recent=windows["recent"], evidence={
                        "ks": round(statistic, 4), "p_value": p_value, "baseline_n": len(before),
                        "recent_n": len(after), "baseline_median": float(np.median(before)),
                        "recent_median": float(np.median(after))})


# == the live model's offline metric on the newest day =============================================================
def metric_drop(report: DriftReport, live: ModelVersion | None, now: datetime) -> None:
    """Score the live version on the last day (``training.evaluate_version``) and compare with its validation."""
    metric = settings.PROMOTION_METRIC
    if live is None:
        report.skipped["metric"] = "no live version"
        return
    validated = (live.test_metrics.get("system") or {}).get(metric)
    if not validated:
        report.skipped["metric"] = f"the live version has no validation {metric}"
        return
    since = max(now - timedelta(days=1), live.data_end or now - timedelta(days=1))
    try:
        recheck = training.evaluate_version(live, since=since)
    except training.TrainingError as exc:
        report.skipped["metric"] = str(exc)
        return
    current = (recheck.get("system") or {}).get(metric)
    if current is None:
        report.skipped["metric"] = f"no {metric} on the last day (no returning visitor to score)"
        return
    floor = float(validated) * (1 - settings.DRIFT_METRIC_DROP)
    if current < floor:
        _record(report, detector=DriftDetection.Detector.METRIC, subject="live model", statistic=metric,
                value=current, threshold=floor, now=now, live=live, baseline=(live.data_start, live.data_end),
                recent=(since, now), evidence={
                    "validation": float(validated), "recheck": float(current),
                    "relative_drop": round(1 - current / float(validated), 4), "events": recheck.get("events"),
                    "users": (recheck.get("system") or {}).get("n_users")})


# == the run ==========================================================================================================
def _retrain(report: DriftReport, now: datetime) -> None:
    """Queue one retrain for this run's detections (DRIFT_RETRAIN), at most one per DRIFT_RETRAIN_MIN_HOURS."""
    triggers = [d for d in report.detections if (d.evidence or {}).get("direction") != "up"]
    if not triggers or not settings.DRIFT_RETRAIN:
        return
    hours = settings.DRIFT_RETRAIN_MIN_HOURS
    last = DriftDetection.objects.filter(retrain__isnull=False, detected_at__gt=now - timedelta(hours=hours)).first()
    if last is not None:
        when = last.detected_at.strftime("%Y-%m-%d %H:%M")
        report.skipped["retrain"] = (f"drift already queued version {last.retrain_id} at {when} "
                                     f"(DRIFT_RETRAIN_MIN_HOURS = {hours})")
        return
    if training.in_progress():
        report.skipped["retrain"] = "a version is already queued or training"
        return
    starts = [d.recent_start for d in triggers if d.recent_start is not None]
    version = training.enqueue(changed_since=min(starts) if starts else None)
    DriftDetection.objects.filter(pk__in=[d.pk for d in triggers]).update(retrain=version)
    for detection in triggers:
        detection.retrain = version
    report.retrain = version
    logger.warning("Drift: queued version %s to retrain (%s)", version.pk, "; ".join(str(d) for d in triggers))


def detect(*, now: datetime | None = None, clicks: bool = True, distributions: bool = True,
           metrics: bool = False) -> DriftReport:
    """Run the detectors (ADWIN and PSI/KS every 15 minutes, the metric re-evaluation daily); record what they find
    and, with ``DRIFT_RETRAIN``, queue a retrain. Idempotent for unchanged data."""
    now = now or timezone.now()
    report = DriftReport()
    live = registry.live_version()
    with transaction.atomic():
        if clicks:
            slot_click_drift(report, live, now)
        if distributions:
            distribution_shift(report, live, now)
    if metrics:
        metric_drop(report, live, now)
    _retrain(report, now)
    return report


def unacknowledged(days: int = 7) -> list[DriftDetection]:
    """Recent detections no staff member acknowledged yet (for the admin's notice)."""
    since = timezone.now() - timedelta(days=days)
    return list(DriftDetection.objects.filter(acknowledged=False, detected_at__gte=since)[:20])
