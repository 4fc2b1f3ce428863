"""Pausing exploration from the dashboard (personalization.runtime) stops explored positions on the next request."""

from __future__ import annotations

import pytest

from personalization import runtime, serving
from personalization.models import Event, RuntimeControl


@pytest.fixture
def exploring(shop, settings):
    """A slot that gives every position to exploration; lists are cached as usual."""
    explore = {"exploration": "epsilon", "exploration_rate": 1.0}
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SLOTS": {"default": {}, "explore": explore}}
    serving.seed_exploration(11)
    yield [v for v in Event.objects.exclude(item_key="").order_by("visitor_id")
           .values_list("visitor_id", flat=True).distinct()[:5]]
    serving.seed_exploration(None)


def _explored(result) -> int:
    return sum(r.reason.startswith("exploration:") for r in result.items)


def test_paused_exploration_explores_no_position_until_resumed(exploring):
    visitor, other = exploring[0], exploring[1]
    before = serving.recommend(visitor, 10, slot="explore")
    assert _explored(before) >= 5

    runtime.set_exploration_paused(True, by="test")
    again = serving.recommend(visitor, 10, slot="explore")  # its cached, explored list is not served any more
    assert _explored(again) == 0 and len(again.items) == 10
    assert _explored(serving.recommend(other, 10, slot="explore")) == 0
    assert serving.recommend(visitor, 10, slot="explore").cached  # the unexplored list is cached and reused

    runtime.set_exploration_paused(False, by="test")
    assert _explored(serving.recommend(exploring[2], 10, slot="explore")) >= 5


def test_a_pause_written_to_the_database_is_honoured_once_the_short_cache_expires(exploring):
    from django.core.cache import caches

    from tests.caches import clear_cache

    RuntimeControl.objects.create(exploration_paused=True)  # e.g. another process without a shared cache
    clear_cache(caches["default"])  # what CACHE_SECONDS of expiry does
    assert runtime.exploration_paused()
    assert _explored(serving.recommend(exploring[0], 10, slot="explore")) == 0


def test_a_database_failure_leaves_exploration_on(exploring, monkeypatch):
    def broken():
        raise RuntimeError("database down")

    monkeypatch.setattr(runtime, "_load", broken)
    assert runtime.controls() == runtime.DEFAULT_CONTROLS
    assert _explored(serving.recommend(exploring[0], 10, slot="explore")) >= 5
