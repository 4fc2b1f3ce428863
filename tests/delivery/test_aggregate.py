"""personalization.aggregate_variant_stats counts block impressions and clicks per variant, once each."""

import pytest
from django.utils import timezone

from personalization.models import Event, VariantStat
from tests.caches import clear_cache

pytestmark = pytest.mark.django_db


def _event(kind, variant, block="hero", **extra):
    now = timezone.now()
    return Event.objects.create(event_type=kind, item_key="product:1", visitor_id="v1", occurred_at=now,
                                received_at=now, context={"slot": block, "block": block, "variant": variant, **extra})


def _stats():
    return {(s.slot, s.variant): (s.impressions, s.clicks) for s in VariantStat.objects.all()}


def test_aggregate_counts_incrementally_and_idempotently():
    from django.core.cache import caches

    from personalization.tasks import aggregate_variant_stats

    for _ in range(3):
        _event("impression", "sale")
    _event("click", "sale")
    _event("impression", "new")
    _event("view", "sale")  # not counted
    Event.objects.create(event_type="impression", item_key="product:2", visitor_id="v2", occurred_at=timezone.now(),
                         received_at=timezone.now(), context={"slot": "home"})  # not a block
    result = aggregate_variant_stats.delay().get()
    assert result["events"] == 5
    assert _stats() == {("hero", "sale"): (3, 1), ("hero", "new"): (1, 0)}

    assert aggregate_variant_stats()["events"] == 0  # nothing new: nothing counted twice
    assert _stats() == {("hero", "sale"): (3, 1), ("hero", "new"): (1, 0)}

    _event("click", "new")
    _event("impression", "x", block="footer")
    aggregate_variant_stats()
    assert _stats() == {("hero", "sale"): (3, 1), ("hero", "new"): (1, 1), ("footer", "x"): (1, 0)}

    clear_cache(caches["default"])  # the watermark is gone: a full recount gives the same numbers
    aggregate_variant_stats()
    assert _stats() == {("hero", "sale"): (3, 1), ("hero", "new"): (1, 1), ("footer", "x"): (1, 0)}


def test_the_task_is_in_the_beat_schedule():
    from personalization.schedules import BEAT_SCHEDULE

    assert any(e["task"] == "personalization.aggregate_variant_stats" for e in BEAT_SCHEDULE.values())
