"""The Redis circuit breaker: short timeouts on every Redis connection the app makes, and after a failure, skip
that Redis server on every path for ``REDIS_CIRCUIT_SECONDS``.

A Redis that accepts connections but never answers would hold every request for as long as the socket waits
(forever without a timeout). Each connection the app makes (its cache alias, the near cache, the rate limits, the
Redis collector) gets ``REDIS_CONNECT_TIMEOUT`` / ``REDIS_SOCKET_TIMEOUT`` unless the host's configuration sets its
own, and is one of the :class:`GuardedConnection` classes: a connection error or timeout opens the circuit of its
server (host and port, or socket path: every database number of one server shares it), and while it is open every
command on that server fails at once with ``redis.ConnectionError``, exactly as a Redis refusing connections does.
The callers already treat that as an outage: caches miss, rate limits allow, the collector writes to the database.
When the time is up one caller probes the server (the others keep skipping it); a reply closes the circuit.

The state is per process (no coordination: each process finds out with one timeout of its own).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.retry import Retry

from personalization.conf import settings

__all__ = ["CircuitOpen", "GuardedConnection", "client_options", "guard_cache", "is_open", "key_for_url", "reset",
           "trip"]

#: One instance, so the options of two clients compare equal (redis-py copies it into each connection).
NO_RETRY = Retry(NoBackoff(), 0)
#: A probe after the open time may take this long (its own timeouts) before other callers try the server too.
PROBE_SECONDS = 2.0


class CircuitOpen(redis.ConnectionError):
    """The server failed moments ago: the command was not sent (a ``redis.ConnectionError``, so every caller's
    outage handling applies)."""


class _Breaker:
    """Open-until times per server key (monotonic seconds); absent: closed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open_until: dict[str, float] = {}
        self.probing: dict[str, tuple[float, int]] = {}  # key -> (until when, thread): one probe at a time

    def allows(self, key: str) -> bool:
        until = self.open_until.get(key)
        if until is None:
            return True
        now = time.monotonic()
        if now < until:
            return False
        me = threading.get_ident()
        with self.lock:  # the time is up: let one thread probe the server
            until, prober = self.probing.get(key, (0.0, None))
            if until > now and prober != me:
                return False
            self.probing[key] = (now + PROBE_SECONDS, me)
            return True

    def trip(self, key: str) -> None:
        with self.lock:
            self.open_until[key] = time.monotonic() + float(settings.REDIS_CIRCUIT_SECONDS)
            self.probing.pop(key, None)

    def close(self, key: str) -> None:
        if key in self.open_until:
            with self.lock:
                self.open_until.pop(key, None)
                self.probing.pop(key, None)

    def after_fork_in_child(self) -> None:
        self.lock = threading.Lock()


_breaker = _Breaker()
os.register_at_fork(after_in_child=_breaker.after_fork_in_child)


def is_open(key: str) -> bool:
    """Whether Redis server ``key`` (see :func:`key_for_url`) is being skipped; never starts a probe."""
    until = _breaker.open_until.get(key)
    return until is not None and time.monotonic() < until


def trip(key: str) -> None:
    """Skip server ``key`` for ``REDIS_CIRCUIT_SECONDS`` (a failure seen outside a guarded connection)."""
    _breaker.trip(key)


def reset() -> None:
    """Close every circuit of this process (tests, ``testutils.reset_state``)."""
    with _breaker.lock:
        _breaker.open_until.clear()
        _breaker.probing.clear()


def key_for_url(url: str) -> str:
    """The breaker key of a Redis URL: its server (``host:port`` or the socket path), not the database number."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


class _Guarded:
    """Mixed into redis-py's connection classes: fail fast while the server's circuit is open, open it on a
    connection error or timeout, close it on a reply."""

    def _circuit_key(self) -> str:
        path = getattr(self, "path", None)
        return f"unix:{path}" if path else f"{self.host}:{self.port}"

    def _guard(self) -> str:
        key = self._circuit_key()
        if not _breaker.allows(key):
            self.disconnect()
            raise CircuitOpen(f"Redis at {key} failed moments ago; skipped for up to "
                              f"{settings.REDIS_CIRCUIT_SECONDS} s (PERSONALIZATION['REDIS_CIRCUIT_SECONDS']).")
        return key

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        key = self._guard()
        try:
            super().connect_check_health(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError):
            _breaker.trip(key)
            raise

    def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        key = self._guard()
        try:
            super().send_packed_command(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if not isinstance(exc, CircuitOpen):
                _breaker.trip(key)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError):
            _breaker.trip(self._circuit_key())
            raise
        _breaker.close(self._circuit_key())
        return response


class GuardedConnection(_Guarded, Connection):
    """``redis://`` connections."""


class GuardedSSLConnection(_Guarded, SSLConnection):
    """``rediss://`` connections."""


class GuardedUnixConnection(_Guarded, UnixDomainSocketConnection):
    """``unix://`` connections."""


def _connection_class(url: str) -> type:
    scheme = urlsplit(url).scheme
    return {"rediss": GuardedSSLConnection, "unix": GuardedUnixConnection}.get(scheme, GuardedConnection)


def client_options(url: str, **given: Any) -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis.from_url(url, ...)`` / a pool: the guarded connection class of the URL's
    scheme, the app's timeouts and no retries (a retry would wait the timeout again), under what ``given`` sets."""
    options = dict(given)
    options.setdefault("connection_class", _connection_class(url))
    if options.get("socket_connect_timeout") is None:
        options["socket_connect_timeout"] = float(settings.REDIS_CONNECT_TIMEOUT)
    if options.get("socket_timeout") is None:
        options["socket_timeout"] = float(settings.REDIS_SOCKET_TIMEOUT)
    options.setdefault("retry", NO_RETRY)
    return options


def guard_cache(backend: Any) -> None:
    """Give Django's own ``RedisCache`` object ``backend`` the app's timeouts and guarded connections, where its
    ``OPTIONS`` set none (idempotent; other backends are left alone)."""
    from django.core.cache.backends.redis import RedisCache

    if type(backend) is not RedisCache or getattr(backend, "_personalization_guarded", False):
        return
    impl = backend._cache
    impl._pool_options.update(client_options(backend._servers[0], **impl._pool_options))
    impl._pools.clear()  # pools made before (by the host's own use) would keep unguarded connections
    backend._personalization_guarded = True
