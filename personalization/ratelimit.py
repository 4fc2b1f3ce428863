"""Rate limits: counting hits per key in fixed windows in the app's shared cache (``CACHE_ALIAS``).

Two ways to count, one for each kind of limit:

* :func:`add`, a fixed window per key opened by the key's first hit (tracking's flood limit, ``RATE_LIMIT_EVENTS``
  per ``RATE_LIMIT_WINDOW``): one round trip per hit; over the limit or not, every hit counts.
* :func:`check`, sliding-window limits (the API throttles): DRF's ``SimpleRateThrottle`` keeps a list of every
  request time per key and rewrites it on every request: at the default 1,200/min a busy visitor's list is
  kilobytes, read and written twice per request. Here requests are counted in windows aligned on the clock and the
  previous window is weighed by how much of it still overlaps the sliding window (the "sliding window counter"
  approximation). Each process keeps a book of the counters (:class:`RateBook`): the first request of a key in a
  window reads and increments them in one round trip, later ones are counted in the book and sent by a background
  thread every ``BACKGROUND_FLUSH_SECONDS`` (one pipelined round trip for all of them), whose replies bring the
  other processes' counts. So a cached answer waits for no round trip, a process sees the others' requests within
  one flush interval, and a limit can only be exceeded by what the other processes accept in that interval. A
  refused request is counted by none of its limits.

A cache outage never stops traffic: while the counters are unavailable, nothing is limited (and it is logged). No
library implements this on top of Django's cache API, hence the hand-written classes.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from personalization import shared_cache
from personalization.batching import flush_interval
from personalization.circuit import CircuitOpen

logger = logging.getLogger("personalization.ratelimit")
CACHE_FORMAT = "personalization:throttle:%(scope)s:%(ident)s"


@dataclass
class Limit:
    """One rate limit applied to one request: ``num`` requests per ``duration`` seconds for ``ident``."""

    scope: str
    ident: str
    num: int
    duration: int

    def keys(self, now: float) -> tuple[str, str]:
        """(current window's counter, previous window's counter)."""
        window = int(now // self.duration)
        base = CACHE_FORMAT % {"scope": self.scope, "ident": self.ident}
        return f"{base}:{window}", f"{base}:{window - 1}"

    def estimate(self, now: float, current: int, previous: int) -> float:
        """Requests in the sliding window ending now: this window's count + the overlapping share of the last."""
        elapsed = now % self.duration
        return previous * (1.0 - elapsed / self.duration) + current

    def wait(self, now: float, current: int, previous: int) -> float:
        """Seconds until one more request fits (``current`` and ``previous`` without the refused request)."""
        elapsed = now % self.duration
        if current + 1 > self.num or previous <= 0:
            return self.duration - elapsed  # this window alone is full: the next one starts afresh
        # previous * (1 - t / duration) + current + 1 <= num  <=>  t >= duration * (1 - (num - current - 1) / prev)
        needed = self.duration * (1.0 - (self.num - current - 1) / previous)
        return max(0.0, needed - elapsed)


def _exceeded(limits: list[Limit], keys: list[tuple[str, str]], now: float, current: dict[str, int],
              previous: dict[str, int]) -> list[float]:
    """The waits of the limits a request exceeds, given each limit's counts with the request in (``current``) and of
    the previous window (``keys``: each limit's current and previous counter)."""
    return [limit.wait(now, current[cur] - 1, previous[prev]) for limit, (cur, prev) in zip(limits, keys, strict=True)
            if limit.estimate(now, current[cur], previous[prev]) > limit.num]


class RateBook:
    """This process's counts of the shared rate-limit counters (see the module docstring).

    ``known[key]`` is the counter's value in the cache at its last round trip; ``sending[key]`` and ``unsent[key]``
    the requests this process counted since (being sent, and not sent yet). A counter's count is their sum. A
    daemon thread (one per process) sends the unsent counts one flush interval after the first of them.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flushing = threading.Lock()
        self.known: dict[str, int] = {}
        self.sending: dict[str, int] = {}
        self.unsent: dict[str, int] = {}
        self.timeouts: dict[str, int] = {}
        self.dirty = threading.Event()
        self.thread: threading.Thread | None = None  # started on first use; a forked child starts its own

    def clear(self) -> None:
        """Forget every count (unsent ones too), after any flush in flight."""
        with self.flushing, self.lock:
            self.known.clear()
            self.sending = {}
            self.unsent.clear()
            self.timeouts.clear()

    def reserve(self, limits: list[Limit], keys: list[tuple[str, str]], now: float) -> list[float] | None:
        """Count one request if it fits every limit, in one step (threads of a worker may ask at once).

        ``keys``: each limit's (current, previous) counter. Returns None when the book does not know every current
        counter yet (ask the cache), ``[]`` when the request was counted, else the waits of the limits it would
        exceed (it is not counted)."""
        with self.lock:
            known = self.known
            if any(cur not in known for cur, _ in keys):
                return None
            current = {cur: known[cur] + self.sending.get(cur, 0) + self.unsent.get(cur, 0) + 1 for cur, _ in keys}
            waits = _exceeded(limits, keys, now, current, {prev: known.get(prev, 0) for _, prev in keys})
            if waits:
                return waits
            for limit, (cur, _) in zip(limits, keys, strict=True):
                self.unsent[cur] = self.unsent.get(cur, 0) + 1
                self.timeouts[cur] = 2 * limit.duration
        self._wake()
        return []

    def learn(self, values: dict[str, int], previous: dict[str, int]) -> None:
        """Counter values just read from the cache (``values``: after this request's increment)."""
        with self.lock:
            if len(self.known) > 100_000:  # visitors of windows long gone
                self.known.clear()
            self._merge(values)
            self._merge(previous)

    def _merge(self, values: dict[str, int]) -> None:
        # counters only grow within their window: a reply older than what the book knows must not move it back
        for key, value in values.items():
            self.known[key] = max(self.known.get(key, 0), value)

    def take_back(self, keys: list[str]) -> None:
        """Undo one increment of ``keys`` made in the cache by this process (a refused request)."""
        shared_cache.decr(keys)
        with self.lock:
            for key in keys:
                if self.known.get(key, 0) > 0:
                    self.known[key] -= 1

    def _wake(self) -> None:
        self._ensure_thread()
        if not self.dirty.is_set():
            self.dirty.set()

    def flush(self) -> None:
        """Send the unsent counts now (one round trip); the background thread calls it, tests and shutdown too."""
        with self.flushing:
            with self.lock:
                batch, self.unsent = self.unsent, {}
                self.sending = batch
                timeouts = {key: self.timeouts.pop(key, 120) for key in batch}
            if not batch:
                return
            values = None
            try:
                values, _ = shared_cache.incr_and_get(timeouts, amounts=batch)
            except Exception as exc:  # noqa: BLE001 - kept for the next flush (a limit errs on the strict side)
                logger.warning("personalization: could not send %d rate-limit counts: %s", len(batch), exc,
                               exc_info=not isinstance(exc, CircuitOpen))
            finally:
                with self.lock:
                    if values is None:  # not sent (or not known to be): keep them for the next flush
                        for key, amount in batch.items():
                            self.unsent[key] = self.unsent.get(key, 0) + amount
                            self.timeouts.setdefault(key, timeouts[key])
                    else:
                        self._merge(values)
                    self.sending = {}
            if values is None:
                self.dirty.set()

    def _ensure_thread(self) -> None:
        if self.thread is not None:
            return
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="personalization-ratelimits", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            self.dirty.wait()
            time.sleep(flush_interval())
            self.dirty.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must survive anything
                logger.exception("personalization: rate-limit flush failed")

    def after_fork_in_child(self) -> None:
        """A forked child starts with an empty book, fresh locks and no thread: the parent's unsent counts are
        the parent's to send, and a lock held by a parent thread at the fork would never be released here."""
        self.lock = threading.Lock()
        self.flushing = threading.Lock()
        self.dirty = threading.Event()
        self.known, self.sending, self.unsent, self.timeouts = {}, {}, {}, {}
        self.thread = None


book = RateBook()
atexit.register(book.flush)
os.register_at_fork(after_in_child=book.after_fork_in_child)


def forget_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver (connected in ``AppConfig.ready()``): other rates or another cache start afresh."""
    if setting in {"PERSONALIZATION", "CACHES"}:
        book.clear()



def check(limits: list[Limit], now: float) -> list[float]:
    """Count one request against every limit if it fits them all; returns the waits of the limits it would exceed
    (``[]``: counted and allowed). A refused request is counted by none of them."""
    keys = [limit.keys(now) for limit in limits]
    waits = book.reserve(limits, keys, now)
    if waits is not None:
        return waits
    # the first request of this window here: count it in the cache at once
    try:
        values, found = shared_cache.incr_and_get(
            {cur: 2 * limit.duration for limit, (cur, _) in zip(limits, keys, strict=True)},
            [prev for _, prev in keys])
    except Exception as exc:  # noqa: BLE001 - a cache outage must not fail requests: no limit meanwhile
        logger.warning("personalization: rate limit counters unavailable: %s", exc,
                       exc_info=not isinstance(exc, CircuitOpen))
        return []
    previous = {prev: int(found.get(prev) or 0) for _, prev in keys}
    book.learn(values, previous)
    waits = _exceeded(limits, keys, now, values, previous)
    if waits:
        book.take_back([cur for cur, _ in keys])  # refused requests count for none of the limits
    return waits


def add(key: str, amount: int, window: int) -> int | None:
    """Add ``amount`` hits to the counter ``key``, whose window opens at its first hit and lasts ``window`` seconds;
    returns the hits in the window, None when the cache is unavailable (the caller lets the hits through)."""
    backend = shared_cache.cache()
    try:
        try:
            return backend.incr(key, amount)  # one round trip for a returning key
        except ValueError:  # no counter yet (or it just expired): open the window
            if backend.add(key, amount, timeout=window):
                return amount
            return backend.incr(key, amount)
    except Exception as exc:  # noqa: BLE001 - a cache outage must not stop the traffic it limits
        logger.warning("personalization: rate limit counters unavailable: %s", exc,
                       exc_info=not isinstance(exc, CircuitOpen))
        return None
