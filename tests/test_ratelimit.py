"""personalization.ratelimit: the sliding-window estimate of the API's limits and the fixed window of the flood
counter (both through the API: tests/api/test_throttling.py and tests/api/test_events.py)."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from personalization import ratelimit
from personalization.ratelimit import Limit


def test_the_previous_window_counts_by_its_overlap_with_the_sliding_window():
    limit = Limit("visitor", "v:x", num=10, duration=60)
    assert limit.estimate(now=6000.0, current=4, previous=8) == 12.0  # the window just turned: all of the last
    assert limit.estimate(now=6030.0, current=4, previous=8) == 8.0  # half way: half of it
    assert limit.estimate(now=6045.0, current=4, previous=8) == 6.0


def test_wait_is_the_time_until_one_more_request_fits():
    limit = Limit("visitor", "v:x", num=10, duration=60)
    assert limit.wait(now=6015.0, current=10, previous=0) == 45.0  # this window is full: wait for the next one
    # 8 * (1 - t/60) + 5 + 1 <= 10  <=>  t >= 30
    assert limit.wait(now=6015.0, current=5, previous=8) == pytest.approx(15.0)
    assert limit.wait(now=6040.0, current=5, previous=8) == 0.0


def test_a_fixed_window_counts_every_hit_from_the_first_one():
    assert ratelimit.add("personalization:rate:v:a", 2, 60) == 2
    assert ratelimit.add("personalization:rate:v:a", 3, 60) == 5
    assert ratelimit.add("personalization:rate:v:b", 1, 60) == 1  # one counter per key
    caches["default"].delete("personalization:rate:v:a")  # the window ended: the next hit opens a new one
    assert ratelimit.add("personalization:rate:v:a", 1, 60) == 1


def test_an_unavailable_cache_limits_nothing(monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(caches["default"], "incr", down)
    assert ratelimit.add("personalization:rate:v:c", 1, 60) is None
