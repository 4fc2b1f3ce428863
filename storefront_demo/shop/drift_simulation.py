"""Simulated live traffic through the real serving and tracking paths, with a taste shift, to watch the learning
loop: ``recommend()`` -> impressions and clicks -> ``personalization.detect_drift`` -> retrain -> new live model.

Used by the acceptance test (tests/monitoring/test_drift_simulation.py) and ``benchmarks/drift.py``. Time is
simulated: the shop's history ends ``days_back`` days ago and the live visits step through the time since, so the
training window, the recency decay of training and the detectors' windows see the order events would have in
production, all in a minute of real time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

from django.utils import timezone

from storefront_demo.shop.simulator import LiveTraffic, SimulatedShop, simulate_shop


@dataclass
class VisitRecord:
    index: int
    at: datetime
    shifted: bool
    impressions: int
    clicks: int
    model_version: int | None


@dataclass
class DriftRun:
    """What happened: per-visit impressions and clicks, the shift, the detection and the retrain."""

    visits: list[VisitRecord] = field(default_factory=list)
    shift_visit: int | None = None
    detection_visit: int | None = None
    detection_impressions: int | None = None  # impressions served between the shift and the detecting run
    detection: Any = None
    retrain_visit: int | None = None  # the first visit served by the first retrained version that went live
    retrain_version: Any = None  # the first version drift queued
    retrains: list[tuple[int, Any]] = field(default_factory=list)  # (visit, version) of every retrain drift queued
    live_from: dict[int, int] = field(default_factory=dict)  # version -> the first visit it served

    def ctr(self, start: int, stop: int) -> float:
        rows = [v for v in self.visits if start <= v.index < stop]
        shown = sum(v.impressions for v in rows)
        return sum(v.clicks for v in rows) / shown if shown else float("nan")


def build_shop(*, products: int = 40, visitors: int = 80, days: int = 20, seed: int = 3,
               days_back: float = 5.0) -> tuple[SimulatedShop, datetime]:
    """Catalog and history of a simulated shop ending ``days_back`` days ago; returns (shop, end of history)."""
    import pandas as pd

    from storefront_demo.shop.management.commands.demo import Command

    end = (timezone.now() - timedelta(days=days_back)).replace(minute=0, second=0, microsecond=0)
    command = Command(stdout=StringIO())
    command.progress = False
    command.build_simulated(products, visitors, days, seed, end=end)
    shop = simulate_shop(n_products=products, n_visitors=visitors, days=days, seed=seed, end=pd.Timestamp(end))
    return shop, end


WARMUP_VISITS = 200
WARMUP_STEP = timedelta(minutes=8)
#: the live visits start this long after the history: the warm-up fills more than a day, so a baseline of the
#: last day of the first model's data (DRIFT_BASELINE_DAYS = 1) holds live-style traffic only (the history has
#: carts and purchases, the live visits do not: that difference is not the drift under test)
MAIN_START = timedelta(hours=27)


def warm_up(shop: SimulatedShop, end: datetime) -> None:
    """Live visits without a model and without a shift right after the history, for the first model to learn."""
    run(LiveTraffic(shop, WARMUP_VISITS, seed=1), start=end, step=WARMUP_STEP, detect_every=10**9)


def _store(rows: list[tuple[str, str, str, datetime]]) -> None:
    """Record events (type, item, visitor, time[, rec id]) through the tracking service, as server code would."""
    from personalization.tracking.collectors import collect
    from personalization.tracking.schema import EventData
    from personalization.tracking.service import prepare

    events = [EventData(event_type=r[0], item_key=r[1], event_id=uuid.uuid4(), occurred_at=r[3], visitor_id=r[2],
                        recommendation_id=r[4] if len(r) > 4 else "", source="python", context={"device": "desktop"})
              for r in rows]
    ready, _ = prepare(None, events)
    collect(ready)


def run(traffic: LiveTraffic, *, start: datetime, step: timedelta, detect_every: int = 20, slot: str = "default",
        n: int = 4, retrain_timeout: float = 300.0) -> DriftRun:
    """Play ``traffic`` visit by visit from ``start``; run the drift detectors every ``detect_every`` visits (as beat
    would) and, when they queue a retrain, wait for it (it trains in this process without a broker)."""
    import personalization
    from personalization import background_runs, registry
    from personalization.monitoring.drift import detect
    from personalization.serving import log_writer
    from storefront_demo.shop.models import Product

    key_of = {sku: f"product:{pk}" for sku, pk in Product.objects.values_list("sku", "pk")}
    category_of = {f"product:{pk}": slug for pk, slug in Product.objects.values_list("pk", "category__slug")}
    out = DriftRun(shift_visit=traffic.shift_visit)
    impressions_since_shift = 0
    waiting_for: int | None = None
    for index in range(traffic.n_visits):
        at = start + index * step
        visit = traffic.visit(index)
        rows: list[tuple] = [("view", key_of[sku], visit.visitor, at + timedelta(seconds=5 * k))
                             for k, sku in enumerate(visit.browsed) if sku in key_of]
        _store(rows)
        result = personalization.recommend(visit.visitor, n=n, slot=slot)
        keys = result.keys()
        clicked = traffic.clicks(visit, [category_of.get(k) for k in keys])
        shown_at = at + timedelta(seconds=30)
        rows = [("impression", k, visit.visitor, shown_at, result.recommendation_id) for k in keys]
        rows += [("click", k, visit.visitor, shown_at + timedelta(seconds=3), result.recommendation_id)
                 for k, hit in zip(keys, clicked, strict=True) if hit]
        _store(rows)
        out.visits.append(VisitRecord(index, at, visit.shifted, len(keys), sum(clicked), result.model_version))
        if visit.shifted:
            impressions_since_shift += len(keys)
        if result.model_version is not None:
            out.live_from.setdefault(result.model_version, index)
        if waiting_for is not None and result.model_version == waiting_for and out.retrain_visit is None:
            out.retrain_visit = index
        if (index + 1) % detect_every:
            continue
        log_writer.flush()
        report = detect(now=at + timedelta(minutes=1))
        if report.detections and out.detection is None and visit.shifted:
            out.detection_visit = index
            out.detection_impressions = impressions_since_shift
            out.detection = report.detections[0]
        if report.retrain is not None:
            background_runs.wait(retrain_timeout)
            report.retrain.refresh_from_db()
            out.retrains.append((index, report.retrain))
            live = registry.live_version()
            if out.retrain_version is None or waiting_for is None and live is not None and live.pk == report.retrain.pk:
                out.retrain_version = report.retrain
                waiting_for = live.pk if live is not None and live.pk == report.retrain.pk else None
    return out
