"""The app's cache alias (``CACHE_ALIAS``) with the few operations the serving hot path needs, at one round trip each.

Why not only ``caches[alias]``: Django's ``RedisCache`` builds a new ``redis.Redis`` client for every operation
(redis-py fills a table of about 170 response callbacks per client: 0.1-0.2 ms each time) and cannot send
several commands in one round trip. On Django's ``RedisCache`` this module keeps one client per cache object (its
own connection pool, Django's key function and serializer, so every entry stays readable and writable through
``caches[alias]``), pipelines the commands and reads serving's entries through the process's near cache
(:mod:`personalization.near_cache`). Any other backend (local memory, database, memcached, django-redis) goes
through the standard cache API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache

from personalization.circuit import guard_cache
from personalization.conf import settings
from personalization.near_cache import near_cache, redis_configuration


def cache() -> BaseCache:
    """The cache of ``PERSONALIZATION['CACHE_ALIAS']``; on Django's RedisCache with the app's timeouts and circuit
    breaker (:mod:`personalization.circuit`) where its OPTIONS set no timeouts."""
    backend = caches[settings.CACHE_ALIAS]
    guard_cache(backend)
    return backend


#: Backends whose entries no other process sees: each process has its own (local memory) or none (dummy).
PER_PROCESS_BACKENDS = (LocMemCache, DummyCache)


def is_shared() -> bool:
    """Whether every process of the site reads what one writes in the app's cache (Redis, Memcached, database or
    file-based cache), so a value published there (the live model) reaches them all.

    Local memory and the dummy cache are per process: what the training command or another worker writes there is
    never seen by the web server. Decided once per settings generation (a ``CACHES`` change reloads it)."""
    return settings.derived("cache-is-shared", _backend_is_shared)


def _backend_is_shared() -> bool:
    try:
        return not isinstance(cache(), PER_PROCESS_BACKENDS)
    except Exception:  # noqa: BLE001 - a misconfigured alias is reported by the checks (E004); trust nothing
        return False


_clients: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def _redis(backend: BaseCache) -> tuple[Any, Any] | None:
    """(client, serializer) when ``backend`` is Django's own RedisCache, else None.

    One client per process and configuration, shared by all threads (redis-py clients are thread-safe): Django's
    cache objects are per thread, and a threaded server may start a thread per request."""
    key = redis_configuration(backend)
    if key is None:
        return None
    found = _clients.get(key)
    if found is None:
        client_impl = backend._cache
        # the write server: reads of what this request just wrote must not go to a lagging replica
        client = client_impl._client(connection_pool=client_impl._get_connection_pool(write=True))
        found = _clients.setdefault(key, (client, client_impl._serializer))
    return found


def get(key: str) -> Any:
    """One entry, read directly from the cache; None when it is absent or the cache fails (the caller recomputes)."""
    try:
        return cache().get(key)
    except Exception:  # noqa: BLE001 - a cache outage must not break a page: the value is recomputed
        return None


def get_many(keys: Iterable[str], *, near: bool = False) -> dict[str, Any]:
    """Like ``cache.get_many``: the found entries by key (one round trip at most).

    ``near``: serve them from the process's near cache when the backend has one (no round trip on a hit). Its
    values are shared with other callers: read them, never mutate them.
    """
    keys = list(keys)
    if not keys:
        return {}
    if near:
        copy = near_cache(cache())
        if copy is not None:
            found = copy.get_many(keys)
            if found is not None:
                return found
    return _fetch(keys)


def _fetch(keys: list[str]) -> dict[str, Any]:
    backend = cache()
    redis = _redis(backend)
    if redis is None:
        return backend.get_many(keys)
    client, serializer = redis
    made = [backend.make_key(k) for k in keys]
    return {k: serializer.loads(v) for k, v in zip(keys, client.mget(made), strict=True) if v is not None}


def set_many(data: Mapping[str, Any], timeout: int | None) -> None:
    """Like ``cache.set_many`` (``timeout`` None: no expiry; 0: delete), in one round trip.

    The written keys leave this process's near cache before and after the write, so no read here returns what
    they held before (another thread's read in between could have put it back)."""
    backend = cache()
    forget(data, backend)
    try:
        _write(backend, data, timeout)
    finally:
        forget(data, backend)


def _write(backend: BaseCache, data: Mapping[str, Any], timeout: int | None) -> None:
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


def incr_and_get(counters: Mapping[str, int], keys: Iterable[str] = (), *,
                 amounts: Mapping[str, int] | None = None) -> tuple[dict[str, int], dict[str, Any]]:
    """Add ``amounts[key]`` (default 1) to each counter, created with its timeout in seconds when missing, and
    read ``keys``.

    Returns (counter values after the increment, found entries of ``keys``): one round trip on Redis. The counters
    are plain integers, readable through ``caches[alias].get`` like any entry.
    """
    keys = list(keys)
    amounts = amounts or {}
    backend = cache()
    redis = _redis(backend)
    if redis is None:
        values = {}
        for key, timeout in counters.items():
            backend.add(key, 0, timeout)
            try:
                values[key] = backend.incr(key, amounts.get(key, 1))
            except ValueError:  # expired between add and incr
                backend.set(key, amounts.get(key, 1), timeout)
                values[key] = amounts.get(key, 1)
        return values, (backend.get_many(keys) if keys else {})
    client, serializer = redis
    pipe = client.pipeline(transaction=False)
    for key, timeout in counters.items():
        made = backend.make_key(key)
        pipe.incrby(made, amounts.get(key, 1))
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


def forget(keys: Iterable[str], backend: BaseCache | None = None) -> None:
    """Drop ``keys`` from this process's near cache: they were just written here (through any API)."""
    copy = near_cache(backend or cache())
    if copy is not None:
        copy.forget(keys)


def decr(keys: Iterable[str]) -> None:
    """Take 1 back from each existing counter (a request that was counted but refused)."""
    backend = cache()
    for key in keys:
        try:
            backend.decr(key)
        except ValueError:  # expired meanwhile: nothing to take back
            pass
