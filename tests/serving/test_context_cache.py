"""A live ranker that reads the request's context gets its lists cached per context bucket, and only then."""

from __future__ import annotations

from django.core.cache import caches

from personalization import serving
from personalization.serving.precomputation import precompute
from tests.caches import clear_cache
from tests.serving.shop import active_visitor, counting, uncount

MORNING = {"timestamp": "2026-01-06T08:10:00Z", "device": "mobile", "country": "FR"}  # a Tuesday
SAME_BUCKET = {**MORNING, "timestamp": "2026-01-06T09:50:00Z"}  # the same 4-hour bucket
EVENING = {**MORNING, "timestamp": "2026-01-06T20:00:00Z"}


def test_a_ranker_without_context_columns_keeps_one_entry_for_every_context(shop):
    visitor = active_visitor()
    _, system = serving.live_system()
    assert not system.uses_context()  # the default: TRAINING["context_features"] is off
    first = serving.recommend(visitor, 6, context=MORNING)
    again = serving.recommend(visitor, 6, context={**EVENING, "country": "DE", "device": "desktop"})
    assert again.cached and again.keys() == first.keys()


def test_a_ranker_with_context_columns_is_cached_per_context_bucket(shop):
    visitor = active_visitor()
    _, system = serving.live_system()
    serving.recommend(visitor, 6, context=MORNING)  # a plain entry, as a model without context would leave it
    counts = counting(system)
    system.uses_context = lambda: True
    try:
        assert not serving.recommend(visitor, 6, context=MORNING).cached  # the plain entry is not its list
        assert serving.recommend(visitor, 6, context=SAME_BUCKET).cached
        assert counts["recommend"] == 1
        for other in (EVENING, {**MORNING, "country": "DE"}, {**MORNING, "device": "desktop"},
                      {**MORNING, "timestamp": "2026-01-10T08:10:00Z"}):  # hour, country, device, weekend
            assert not serving.recommend(visitor, 6, context=other).cached
            assert serving.recommend(visitor, 6, context=other).cached
        assert counts["recommend"] == 5
        assert serving.recommend(visitor, 6, context=MORNING).cached
    finally:
        uncount(system)
        system.__dict__.pop("uses_context", None)


def test_precompute_leaves_a_model_with_context_columns_alone(shop):
    clear_cache(caches["default"])
    _, system = serving.live_system()
    system.uses_context = lambda: True
    try:
        stats = precompute(days=30)
    finally:
        system.__dict__.pop("uses_context", None)
    assert stats["visitors"] > 10 and stats["entries"] == 0
    assert precompute(days=30)["entries"] >= stats["visitors"]  # the same model without context columns: filled
