"""A per-process daemon thread that writes what request threads hand it, in batches.

The tracking middleware's page views and serving's recommendation log both use it: a sync web worker cannot take
its next request until the current one's work is done, so rows are queued and written one batch per interval.
The thread sleeps through an interval instead of waiting on the queue, so a request's ``put`` never wakes it (a
wake-up per row costs the request thread the GIL hand-over); under load (a full batch waiting) it does not sleep.
A hard kill loses at most the last interval's rows; a normal shutdown flushes them (``atexit`` in the users).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import OperationalError, close_old_connections, connection

from personalization.conf import DEFAULTS, settings

logger = logging.getLogger("personalization")
T = TypeVar("T")
#: Pauses before the retries of a write that failed on a transient database error: about 7 s in all, then the
#: error propagates (the caller logs it). A SQLite file another writer holds fails at once or after its timeout.
RETRY_PAUSES = (0.1, 0.3, 1.0, 2.0, 4.0)


def retry_transient(write: Callable[..., T], *args: Any) -> T:
    """``write(*args)``, again after a pause while the database fails transiently (``OperationalError``: a locked
    SQLite file, a dropped connection), so a background batch is not lost to a moment of contention.

    Only for idempotent writes: the event ids and the list ids make every row land once."""
    for pause in RETRY_PAUSES:
        try:
            return write(*args)
        except OperationalError as error:
            logger.warning("personalization: database busy (%s); writing again in %.1f s", error, pause)
            connection.close()
            time.sleep(pause)
    return write(*args)


def flush_interval() -> float:
    """``BACKGROUND_FLUSH_SECONDS`` for the background threads, with the default while the setting is invalid (the
    checks report it; a thread must not die of it)."""
    try:
        return max(float(settings.BACKGROUND_FLUSH_SECONDS), 0.01)
    except Exception:  # noqa: BLE001
        return DEFAULTS["BACKGROUND_FLUSH_SECONDS"]


class BatchingThread:
    """Queue items from any thread; ``write(batch)`` runs in one daemon thread per process (forks start their own).

    ``on_full(item)`` handles an item the full queue refused (default: log and drop it).
    """

    def __init__(self, name: str, write: Callable[[list[Any]], None], *, max_batch: int = 1000,
                 max_queue: int = 100_000, on_full: Callable[[Any], None] | None = None) -> None:
        self.name = name
        self._write = write
        self._max_batch = max_batch
        self._on_full = on_full
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._pending = 0  # items submitted and not yet written (or dropped by a failed write)
        self._settled = threading.Condition()

    def submit(self, item: Any) -> None:
        """Queue one item for the next batch."""
        self._ensure_thread()
        try:
            with self._settled:
                self._queue.put_nowait(item)
                self._pending += 1
        except queue.Full:
            if self._on_full is not None:
                self._on_full(item)
            else:
                logger.error("personalization: %s queue full; dropping an item", self.name)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (tests, shutdown)."""
        if self._thread is None or not self._thread.is_alive():
            return True
        with self._settled:
            return self._settled.wait_for(lambda: self._pending == 0, timeout)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            interval = flush_interval()
            try:
                first = self._queue.get(timeout=interval)
            except queue.Empty:
                if connection.connection is not None:
                    connection.close()  # idle: give the database connection back
                continue
            if self._queue.qsize() < self._max_batch - 1:
                time.sleep(interval)  # gather one interval's items: one write per interval, not per row
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                close_old_connections()
                retry_transient(self._write, batch)
            except Exception:
                logger.exception("personalization: %s could not write %d items", self.name, len(batch))
                connection.close()
            with self._settled:
                self._pending -= len(batch)
                if self._pending == 0:
                    self._settled.notify_all()
