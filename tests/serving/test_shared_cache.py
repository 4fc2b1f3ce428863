"""personalization.shared_cache: the serving hot path's cache access stays compatible with ``caches[alias]``."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from personalization import shared_cache


@pytest.fixture
def cache():
    return caches["default"]


def test_entries_are_shared_both_ways_with_the_django_cache(cache):
    shared_cache.set_many({"a": {"items": [("product:1", 0.5, "als")]}, "n": 7}, timeout=60)
    assert cache.get("a") == {"items": [("product:1", 0.5, "als")]} and cache.get("n") == 7
    cache.set("b", ("vv", [1, 2]), 60)
    assert shared_cache.get_many(["a", "b", "missing"]) == {"a": {"items": [("product:1", 0.5, "als")]},
                                                            "b": ("vv", [1, 2])}


def test_timeout_zero_deletes_and_none_keeps(cache):
    cache.set("gone", 1, 60)
    shared_cache.set_many({"gone": 2}, timeout=0)
    assert cache.get("gone") is None
    shared_cache.set_many({"kept": 3}, timeout=None)
    assert cache.get("kept") == 3
    if hasattr(cache, "_cache") and hasattr(cache._cache, "get_client"):  # Django's RedisCache: check the TTL
        client = cache._cache.get_client(write=True)
        assert client.ttl(cache.make_key("kept")) == -1
        shared_cache.set_many({"brief": 1}, timeout=30)
        assert 0 < client.ttl(cache.make_key("brief")) <= 30


def test_counters_increment_atomically_and_read_other_keys_in_the_same_call(cache):
    cache.set("other", "value", 60)
    values, found = shared_cache.incr_and_get({"c1": 60, "c2": 60}, ["other", "absent"])
    assert values == {"c1": 1, "c2": 1} and found == {"other": "value"}
    values, _ = shared_cache.incr_and_get({"c1": 60}, [])
    assert values == {"c1": 2} and cache.get("c1") == 2
    shared_cache.decr(["c1", "never-set"])
    assert cache.get("c1") == 1 and cache.get("never-set") is None
    values, _ = shared_cache.incr_and_get({"c1": 60, "c3": 60}, amounts={"c1": 5, "c3": 2})  # several at once
    assert values == {"c1": 6, "c3": 2} and cache.get("c3") == 2
