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
from collections.abc import Sequence

from django.db import connection
from django.http import HttpRequest

from personalization.batching import BatchingThread, retry_transient
from personalization.tracking.identity import Visitor
from personalization.tracking.schema import EventData
from personalization.tracking.service import prepare

logger = logging.getLogger("personalization.tracking")
MAX_QUEUE = 100_000
_Pending = tuple[HttpRequest, Visitor, list[EventData]]  # a finished request's events, still to be prepared


class BackgroundWriter:
    """Batches events from request threads and writes them from one daemon thread (:mod:`personalization.batching`)."""

    def __init__(self) -> None:
        self._thread = BatchingThread("personalization-writer", self._write, max_queue=MAX_QUEUE,
                                      on_full=self._write_inline)

    def submit(self, events: Sequence[EventData]) -> None:
        """Queue prepared events (identity and context attached) for writing."""
        for event in events:
            self._thread.submit(event)

    def submit_request(self, request: HttpRequest, visitor: Visitor, events: list[EventData]) -> None:
        """Queue events of a finished request still to be prepared (context, rate limit): that work then runs
        in this thread too. The visitor must be resolved (user included) by the request's thread."""
        self._thread.submit((request, visitor, events))

    def _write_inline(self, item: EventData | _Pending) -> None:
        logger.error("personalization: background queue full; writing a view inline")
        self._write([item])

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
            retry_transient(collect, ready)
        except Exception:
            logger.exception("personalization: %d page views could not be written", len(ready))
            connection.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (tests, shutdown)."""
        return self._thread.flush(timeout)


writer = BackgroundWriter()
atexit.register(writer.flush)
