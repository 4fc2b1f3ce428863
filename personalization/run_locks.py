"""One run at a time for a periodic task, kept alive by a heartbeat, so a dead run is noticed and its lock freed.

A cache lock with a long fixed timeout, held by a process that died (a killed worker, an out-of-memory kill),
blocks every later run until it expires: an hour of drift checks or notification runs lost. Here the lock lives
``ttl`` seconds and a daemon thread of the holder renews it every third of that while the run is alive, so the
next run after a crash goes ahead within ``ttl``. The run's record (host, process, start, last heartbeat, end)
outlives the lock, so the run that takes over logs that its predecessor died and when it last beat, and returns
it (``RunLock.previous``) for the task's result.

Hand-written: Celery has no per-task mutex, and python-redis-lock would tie the app to Redis, while this works on
any shared Django cache (and per process on the local-memory one).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from personalization import shared_cache

__all__ = ["RunLock", "lock_key"]

logger = logging.getLogger("personalization.run_locks")

#: Seconds a lock outlives its last heartbeat: how long a dead run blocks the next one.
DEFAULT_TTL = 60.0
#: How long a run's record (start, last heartbeat, end) is kept after it.
RECORD_SECONDS = 7 * 24 * 3600


def lock_key(name: str) -> str:
    """The cache key of the lock of the runs called ``name``."""
    return f"personalization:run:{name}"


class RunLock:
    """``with RunLock("drift") as lock: if not lock.held: return``: the lock of the runs called ``name``.

    ``held`` is False when another live run holds it. ``previous`` is the record of the run before this one when
    that run never finished (it died: its heartbeat stopped), else None.
    """

    def __init__(self, name: str, *, ttl: float = DEFAULT_TTL) -> None:
        self.name = name
        self.key = lock_key(name)
        self.record_key = f"{self.key}:record"
        self.ttl = float(ttl)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.held = False
        self.previous: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock unless a live run holds it; start the heartbeat."""
        cache = shared_cache.cache()
        if not cache.add(self.key, self.owner, timeout=self.ttl):
            return False
        self.held = True
        record = cache.get(self.record_key)
        if isinstance(record, dict) and not record.get("finished"):
            self.previous = record
            logger.warning("personalization: the previous %s run (%s, started %s) stopped sending heartbeats at %s "
                           "without finishing: taken for dead", self.name, record.get("owner"),
                           _iso(record.get("started")), _iso(record.get("beat")))
        now = time.time()
        self._record = {"owner": self.owner, "started": now, "beat": now, "finished": None}
        cache.set(self.record_key, self._record, timeout=RECORD_SECONDS)
        self._thread = threading.Thread(target=self._beat, name=f"personalization-heartbeat-{self.name}",
                                        daemon=True)
        self._thread.start()
        return True

    def _beat(self) -> None:
        """Renew the lock every third of its life while the run is alive; stop if another run took it."""
        while not self._stop.wait(self.ttl / 3):
            try:
                cache = shared_cache.cache()
                if cache.get(self.key) != self.owner:
                    logger.warning("personalization: the %s run %s lost its lock (its heartbeat was late by more "
                                   "than %.0f s); another run may have started", self.name, self.owner, self.ttl)
                    return
                cache.set(self.key, self.owner, timeout=self.ttl)
                self._record["beat"] = time.time()
                cache.set(self.record_key, self._record, timeout=RECORD_SECONDS)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the run itself must not fail for it
                logger.warning("personalization: heartbeat of the %s run failed", self.name, exc_info=True)

    def release(self) -> None:
        """Stop the heartbeat, record the end and free the lock (only when this run still holds it)."""
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.held = False
        cache = shared_cache.cache()
        self._record["finished"] = time.time()
        cache.set(self.record_key, self._record, timeout=RECORD_SECONDS)
        if cache.get(self.key) == self.owner:
            cache.delete(self.key)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _iso(stamp: Any) -> str:
    if not isinstance(stamp, int | float):
        return "?"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
