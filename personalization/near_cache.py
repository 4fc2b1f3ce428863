"""A process-local copy of the serving hot path's cache entries, kept coherent by Redis itself.

Why: a cached recommendation reads five to seven small entries (live model, catalog generation, the visitor's
versions and state, the list). One network round trip for them costs more than all the Python of a cached answer
(0.1-1 ms on loopback, more between hosts). Redis 6+ tracks the keys a connection has read (``CLIENT TRACKING``,
RESP3) and pushes an invalidation on that connection as soon as any client changes, deletes, expires, evicts or
flushes one of them. This module keeps the decoded entries in a bounded dict and drops them on those pushes, which
it drains without blocking before every read: a hit costs a ``poll()`` and dict lookups, a miss one round trip
(``MGET`` and ``PTTL`` of the missing keys) on the tracking connection. Replies and pushes share that connection,
so they arrive in the server's order: an invalidation is never applied before the read it invalidates.

Entries never outlive their Redis TTL (read with ``PTTL``) nor ``NEAR_CACHE_SECONDS``; the copy holds at most
``NEAR_CACHE_MAX_BYTES`` of serialized values (the oldest go first); any connection error empties it, and the next
read reconnects. A write through :mod:`personalization.shared_cache` drops the written keys
at once; a write by another process (or through ``caches[alias]``) is seen as soon as its invalidation arrives,
microseconds after the write. Only Django's own ``RedisCache`` backend gets a near cache.

redis-py's client-side cache (``cache_config``) caches single commands only, deep-copies every hit and cannot serve
a multi-key read with per-key expiry, hence this small class. Values are shared between callers: never mutate them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.core.cache.backends.base import BaseCache
from redis.backoff import NoBackoff
from redis.retry import Retry

from personalization.circuit import CircuitOpen, guard_cache
from personalization.conf import settings

logger = logging.getLogger("personalization.cache")
ALL = object()  # in ``fetching``: everything was invalidated (a flush)
ABSENT = object()  # a key known not to exist (Redis tracks absent keys too: their creation invalidates)
SOCKET_TIMEOUT = 5.0  # seconds, when the cache's options set none
RETRY_SECONDS = 5.0  # after a failed connection, the near cache stays off this long (reads go to Redis directly)
ENTRY_OVERHEAD = 200  # bytes counted per entry beyond its key and serialized value (the tuple, the dict slot)


class NearCache:
    """The near cache of one Django ``RedisCache`` object in one process (see the module docstring)."""

    def __init__(self, backend: BaseCache) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        self.conn: Any = None  # dropped in a forked child (os.register_at_fork below)
        self.entries: dict[str, tuple[float, Any, int]] = {}  # made key -> (monotonic expiry, value or ABSENT, size)
        self.size = 0  # serialized bytes of the entries (a proxy of their memory: NEAR_CACHE_MAX_BYTES)
        self.failed_at = -RETRY_SECONDS
        self.client_id: int | None = None
        self.fetching: set[str] | None = None  # keys invalidated while a miss's read is in flight

    # -- connection --------------------------------------------------------------------------------------------
    def _connect(self) -> Any:
        client_impl = self.backend._cache
        pool = client_impl._get_connection_pool(write=True)  # the server writes go to: no lagging replica
        options = {**pool.connection_kwargs, "protocol": 3, "health_check_interval": 0, "retry": Retry(NoBackoff(), 0)}
        options["socket_timeout"] = options.get("socket_timeout") or SOCKET_TIMEOUT  # a hung server fails, not hangs
        conn = pool.connection_class(**options)
        conn.register_connect_callback(self._on_connect)  # any (re)connection turns tracking on and empties the copy
        conn.connect()
        return conn

    def _on_connect(self, conn: Any) -> None:
        self._clear()
        conn._parser.set_invalidation_push_handler(self._invalidated)  # as redis-py's own cache does
        conn.send_command("CLIENT", "TRACKING", "ON")
        conn.read_response()
        conn.send_command("CLIENT", "ID")
        self.client_id = int(conn.read_response())  # names it in CLIENT LIST (operations, tests)

    def _connection(self) -> Any:
        """The tracking connection of this process (None while Redis or tracking is unavailable)."""
        if self.conn is not None:
            return self.conn
        if time.monotonic() - self.failed_at < RETRY_SECONDS:
            return None
        try:
            self.conn = self._connect()
        except Exception as exc:  # noqa: BLE001 - an old server (no RESP3/tracking) or an outage: read Redis directly
            self.failed_at = time.monotonic()
            logger.warning("personalization: no near cache (Redis client tracking unavailable): %s", exc,
                           exc_info=not isinstance(exc, CircuitOpen))
            return None
        return self.conn

    def _reset(self) -> None:
        conn, self.conn = self.conn, None
        self._clear()
        self.failed_at = time.monotonic()
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001
                pass

    def _invalidated(self, push: list[Any]) -> None:
        keys = push[1] if len(push) > 1 else None
        if keys is None:  # FLUSHDB / FLUSHALL
            self._clear()
            if self.fetching is not None:
                self.fetching.add(ALL)
            return
        for key in keys:
            key = key.decode() if isinstance(key, bytes) else key
            self._pop(key)
            if self.fetching is not None:  # changed while a read of it is in flight: its reply may be the old value
                self.fetching.add(key)

    def _drain(self, conn: Any) -> None:
        while conn.can_read(0):
            conn.read_response(push_request=True)

    # -- API ---------------------------------------------------------------------------------------------------
    def get_many(self, keys: list[str]) -> dict[str, Any] | None:
        """The found entries of ``keys`` (like ``cache.get_many``), or None when the near cache is unavailable."""
        backend = self.backend
        made = {k: backend.make_key(k) for k in keys}
        with self.lock:
            conn = self._connection()
            if conn is None:
                return None
            try:
                self._drain(conn)
                now = time.monotonic()
                found: dict[str, Any] = {}
                missing: list[str] = []
                for key, made_key in made.items():
                    entry = self.entries.get(made_key)
                    if entry is None or entry[0] <= now:
                        missing.append(key)
                    elif entry[1] is not ABSENT:
                        found[key] = entry[1]
                if missing:
                    found.update(self._fetch(conn, [(k, made[k]) for k in missing], now))
                return found
            except Exception:  # noqa: BLE001
                logger.warning("personalization: near cache connection lost; reading Redis directly", exc_info=True)
                self._reset()
                return None

    def _fetch(self, conn: Any, keys: list[tuple[str, str]], now: float) -> dict[str, Any]:
        made = [m for _, m in keys]
        self.fetching = set()
        try:
            conn.send_packed_command(conn.pack_commands([("MGET", *made), *(("PTTL", m) for m in made)]))
            values = conn.read_response()
            ttls = [conn.read_response() for _ in made]
            changed = self.fetching  # written by another client between our MGET and our PTTLs (or during them)
        finally:
            self.fetching = None
        max_age = float(settings.NEAR_CACHE_SECONDS)
        budget = int(settings.NEAR_CACHE_MAX_BYTES)
        serializer = self.backend._cache._serializer
        found = {}
        for (key, made_key), raw, ttl in zip(keys, values, ttls, strict=True):
            value = ABSENT if raw is None else serializer.loads(raw)
            if value is not ABSENT:
                found[key] = value
            if ttl == 0 or (ttl == -2 and raw is not None) or (raw is None and ttl != -2):
                continue  # expiring now, or gone / created between MGET and PTTL: answer it, do not keep it
            if ALL in changed or made_key in changed:
                continue
            age = max_age if ttl < 0 else min(max_age, ttl / 1000.0)
            size = len(made_key) + (len(raw) if raw is not None else 0) + ENTRY_OVERHEAD
            if size > budget // 4:
                continue  # too big to keep: read it from Redis each time
            self._pop(made_key)
            if self.size + size > budget:
                self._evict(budget // 4 * 3 - size)
            self.entries[made_key] = (now + age, value, size)
            self.size += size
        return found

    def _pop(self, made_key: str) -> None:
        entry = self.entries.pop(made_key, None)
        if entry is not None:
            self.size -= entry[2]

    def _clear(self) -> None:
        self.entries.clear()
        self.size = 0

    def _evict(self, target: int) -> None:
        """Drop the oldest entries (insertion order) until the copy holds at most ``target`` bytes."""
        for key in list(self.entries):
            if self.size <= target:
                break
            self._pop(key)

    def clear(self) -> None:
        """Drop every entry this process holds (a cache emptied by deleting keys one by one: absent keys send no
        invalidation, so their "absent" entries would stay)."""
        with self.lock:
            self._clear()

    def forget(self, keys: Iterable[str]) -> None:
        """Drop ``keys`` now: this process wrote them (their invalidation push would arrive a moment later)."""
        with self.lock:
            for key in keys:
                self._pop(self.backend.make_key(key))



def redis_configuration(backend: BaseCache) -> tuple[Any, ...] | None:
    """What identifies the connections and serialization of Django's own ``RedisCache`` (a subclass may store
    entries differently), else None: one client and one near cache per process and configuration."""
    from django.core.cache.backends.redis import RedisCache

    if type(backend) is not RedisCache:
        return None
    guard_cache(backend)  # first: the key includes the connection options it adds
    impl = backend._cache
    return (tuple(backend._servers), impl._pool_class, repr(sorted(impl._pool_options.items())),
            type(impl._serializer))


#: One near cache per process and Redis cache configuration, shared by all threads: Django's cache objects are
#: per thread, and threaded servers may start a thread per request.
_registry: dict[tuple[Any, ...], NearCache] = {}
_registry_lock = threading.Lock()


def near_cache(backend: BaseCache) -> NearCache | None:
    """The near cache of ``backend``'s configuration (Django's RedisCache only, and only when ``NEAR_CACHE`` is on),
    else None."""
    if not settings.NEAR_CACHE:
        return None
    connection = redis_configuration(backend)
    if connection is None:
        return None
    key = (*connection, backend.key_prefix, backend.version, backend.key_func)
    near = _registry.get(key)
    if near is None:
        with _registry_lock:
            near = _registry.setdefault(key, NearCache(backend))
    return near


def forget_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: another CACHES setting means other backends; drop every near cache."""
    if setting == "CACHES":
        with _registry_lock:
            for near in _registry.values():
                with near.lock:
                    near._reset()
            _registry.clear()


def _after_fork_in_child() -> None:
    """A forked child starts with fresh locks and no connection (a lock held by a parent thread at the fork would
    never be released here; the parent's socket and tracked keys are the parent's)."""
    global _registry_lock
    _registry_lock = threading.Lock()
    for near in _registry.values():
        near.lock = threading.Lock()
        near.conn = None  # dropped, not closed: the socket is the parent's
        near._clear()
        near.fetching = None


os.register_at_fork(after_in_child=_after_fork_in_child)
