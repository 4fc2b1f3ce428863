"""The app's cache alias (``CACHE_ALIAS``) with the few operations the serving hot path needs, at one round trip each.

Why not only ``caches[alias]``: Django's ``RedisCache`` builds a new ``redis.Redis`` client for every operation
(redis-py fills a table of about 170 response callbacks per client: 0.1-0.2 ms each time) and cannot send
several commands in one round trip. A cached recommendation needs the throttle counters and 5-7 keys, so on Django's
``RedisCache`` this module keeps one client per cache object (its own connection pool, Django's key function and
serializer, so every entry stays readable and writable through ``caches[alias]``) and pipelines the commands.
Any other backend (local memory, database, memcached, django-redis) goes through the standard cache API.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache

from personalization.conf import settings

_CLIENT_ATTR = "_personalization_client"
_ABSENT = object()
_scope = threading.local()


class request_scope:  # noqa: N801 - used like a function: ``with request_scope():``
    """Within it, entries read by :func:`incr_and_get` are remembered (found or absent) and :func:`get_many` serves
    them without another round trip; entries written meanwhile are forgotten. One request, one thread: the API
    views open it around a request so the rate-limit round trip also fetches what serving reads next.
    (A class, not ``@contextmanager``: it runs on every API request, and a generator costs several times more.)"""

    __slots__ = ("outer",)

    def __enter__(self) -> None:
        self.outer = getattr(_scope, "memo", None)
        _scope.memo = {}

    def __exit__(self, *exc: object) -> None:
        _scope.memo = self.outer


def _memo() -> dict[str, Any] | None:
    return getattr(_scope, "memo", None)


def cache() -> BaseCache:
    """The cache of ``PERSONALIZATION['CACHE_ALIAS']``."""
    return caches[settings.CACHE_ALIAS]


def _redis(backend: BaseCache) -> tuple[Any, Any] | None:
    """(client, serializer) when ``backend`` is Django's own RedisCache, else None."""
    from django.core.cache.backends.redis import RedisCache

    if type(backend) is not RedisCache:  # a subclass may store entries differently
        return None
    client_impl = backend._cache  # RedisCacheClient: one per cache object, as its connection pools are
    client = client_impl.__dict__.get(_CLIENT_ATTR)
    if client is None:
        # the write server: reads of what this request just wrote must not go to a lagging replica
        client = client_impl._client(connection_pool=client_impl._get_connection_pool(write=True))
        setattr(client_impl, _CLIENT_ATTR, client)
    return client, client_impl._serializer


def get_many(keys: Iterable[str]) -> dict[str, Any]:
    """Like ``cache.get_many``: the found entries by key (one round trip)."""
    keys = list(keys)
    memo = _memo()
    found: dict[str, Any] = {}
    if memo:
        rest = []
        for k in keys:
            value = memo.get(k, _ABSENT)
            if value is _ABSENT:
                rest.append(k)
            elif value is not None:
                found[k] = value
        keys = rest
    if keys:
        found.update(_fetch(keys))
    return found


def _fetch(keys: list[str]) -> dict[str, Any]:
    backend = cache()
    redis = _redis(backend)
    if redis is None:
        return backend.get_many(keys)
    client, serializer = redis
    made = [backend.make_key(k) for k in keys]
    return {k: serializer.loads(v) for k, v in zip(keys, client.mget(made), strict=True) if v is not None}


def set_many(data: Mapping[str, Any], timeout: int | None) -> None:
    """Like ``cache.set_many`` (``timeout`` None: no expiry; 0: delete), in one round trip."""
    memo = _memo()
    if memo:
        for key in data:
            memo.pop(key, None)
    backend = cache()
    redis = _redis(backend)
    if redis is None:
        backend.set_many(dict(data), timeout)
        return
    if not data:
        return
    client, serializer = redis
    timeout = backend.get_backend_timeout(timeout)
    pipe = client.pipeline(transaction=False)
    for key, value in data.items():
        made = backend.make_key(key)
        if timeout == 0:
            pipe.delete(made)
        else:
            pipe.set(made, serializer.dumps(value), ex=timeout)
    pipe.execute()


def incr_and_get(counters: Mapping[str, int], keys: Iterable[str] = ()) -> tuple[dict[str, int], dict[str, Any]]:
    """Add 1 to each counter (created with its timeout in seconds when missing) and read ``keys``.

    Returns (counter values after the increment, found entries of ``keys``): one round trip on Redis. The counters
    are plain integers, readable through ``caches[alias].get`` like any entry. Within :func:`request_scope` the
    entries of ``keys`` (found or not) are remembered for :func:`get_many`.
    """
    keys = list(keys)
    values, found = _incr_and_fetch(counters, keys)
    memo = _memo()
    if memo is not None:
        memo.update({k: found.get(k) for k in keys})
    return values, found


def _incr_and_fetch(counters: Mapping[str, int], keys: list[str]) -> tuple[dict[str, int], dict[str, Any]]:
    backend = cache()
    redis = _redis(backend)
    if redis is None:
        values = {}
        for key, timeout in counters.items():
            backend.add(key, 0, timeout)
            try:
                values[key] = backend.incr(key)
            except ValueError:  # expired between add and incr
                backend.set(key, 1, timeout)
                values[key] = 1
        return values, (backend.get_many(keys) if keys else {})
    client, serializer = redis
    pipe = client.pipeline(transaction=False)
    for key, timeout in counters.items():
        made = backend.make_key(key)
        pipe.incr(made)
        pipe.expire(made, timeout)
    made_keys = [backend.make_key(k) for k in keys]
    if made_keys:
        pipe.mget(made_keys)
    replies = pipe.execute()
    values = {key: int(replies[2 * i]) for i, key in enumerate(counters)}
    found = {}
    if made_keys:
        found = {k: serializer.loads(v) for k, v in zip(keys, replies[-1], strict=True) if v is not None}
    return values, found


def decr(keys: Iterable[str]) -> None:
    """Take 1 back from each existing counter (a request that was counted but refused)."""
    backend = cache()
    for key in keys:
        try:
            backend.decr(key)
        except ValueError:  # expired meanwhile: nothing to take back
            pass
