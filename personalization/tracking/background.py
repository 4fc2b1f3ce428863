"""A per-process background writer for page views recorded by the middleware.

A sync web worker cannot take its next request until the previous one's response closers have run, so writing a
view to the database there still costs the site throughput. The middleware therefore hands finished events to
this thread, which writes them in batches through the configured collector. Like analytics SDKs (Segment's
libraries work the same way), a hard kill of the process can lose the views of the last flush interval; a normal
shutdown flushes them (atexit). API and ``track()`` calls never go through here: their callers get counts back.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence

from django.db import close_old_connections, connection
from django.http import HttpRequest

from personalization.conf import settings
from personalization.tracking.identity import Visitor
from personalization.tracking.schema import EventData
from personalization.tracking.service import prepare

logger = logging.getLogger("personalization.tracking")
MAX_QUEUE = 100_000
_Pending = tuple[HttpRequest, Visitor, list[EventData]]  # a finished request's events, still to be prepared


class BackgroundWriter:
    """Batches events from request threads and writes them from one daemon thread."""

    def __init__(self) -> None:
        self._queue: queue.Queue[EventData | _Pending] = queue.Queue(maxsize=MAX_QUEUE)
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, events: Sequence[EventData]) -> None:
        """Queue prepared events (identity and context attached) for writing."""
        self._ensure_thread()
        for event in events:
            self._put(event)

    def submit_request(self, request: HttpRequest, visitor: Visitor, events: list[EventData]) -> None:
        """Queue events of a finished request still to be prepared (context, rate limit): that work then runs
        in this thread too. The visitor must be resolved (user included) by the request's thread."""
        self._ensure_thread()
        self._put((request, visitor, events))

    def _put(self, item: EventData | _Pending) -> None:
        try:
            self._idle.clear()
            self._queue.put_nowait(item)
        except queue.Full:
            logger.error("personalization: background queue full; writing a view inline")
            self._write([item])

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()  # a forked worker starts its own thread
                self._thread = threading.Thread(target=self._run, name="personalization-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        interval = settings.BACKGROUND_FLUSH_SECONDS
        while True:
            try:
                first = self._queue.get(timeout=interval)
            except queue.Empty:
                if not self._idle.is_set() or connection.connection is not None:
                    connection.close()  # idle: give the database connection back
                self._idle.set()
                continue
            # Gather for one interval: one write per interval instead of one per page view.
            batch = [first]
            deadline = time.monotonic() + interval
            while len(batch) < 1000:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            self._write(batch)
            if self._queue.empty():
                self._idle.set()

    @staticmethod
    def _write(batch: list[EventData | _Pending]) -> None:
        from personalization.tracking.collectors import collect

        ready: list[EventData] = []
        for item in batch:
            if isinstance(item, EventData):
                ready.append(item)
                continue
            try:
                request, visitor, events = item
                ready.extend(prepare(request, events, visitor=visitor)[0])
            except Exception:
                logger.exception("personalization: a page view could not be prepared")
        if not ready:
            return
        try:
            close_old_connections()
            collect(ready)
        except Exception:
            logger.exception("personalization: %d page views could not be written", len(ready))
            connection.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (tests, shutdown)."""
        if self._thread is None or not self._thread.is_alive():
            return True
        return self._idle.wait(timeout)


writer = BackgroundWriter()
atexit.register(writer.flush)
