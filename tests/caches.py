"""Emptying the test cache without disturbing the other pytest-xdist worker."""

from __future__ import annotations


def clear_cache(cache) -> None:
    """Empty the test cache. On Redis, only this worker's keys (its KEY_PREFIX): FLUSHDB would also tell every near
    cache of the other pytest-xdist worker to drop everything (Redis sends a flush to all tracking clients), in the
    middle of its near-cache tests; tests/serving/test_near_cache.py tests a real flush, in its own xdist group."""
    from django.core.cache.backends.redis import RedisCache

    if type(cache) is not RedisCache:
        cache.clear()
        return
    from personalization.near_cache import near_cache

    client = cache._cache.get_client(write=True)
    keys = list(client.scan_iter(match=f"{cache.key_prefix}:*" if cache.key_prefix else "*", count=1000))
    for start in range(0, len(keys), 1000):
        client.unlink(*keys[start:start + 1000])
    near = near_cache(cache)
    if near is not None:  # deleting a key that was absent invalidates nothing: this process's copy starts empty too
        near.clear()
