"""Collector backends: where validated events go.

``DatabaseCollector`` (embedded default) bulk-inserts, after the surrounding transaction commits.
``RedisCollector`` (production) de-duplicates by event id in Redis, appends to a Redis list and lets the
``personalization.flush_events`` task write batches; when Redis is unreachable it writes to the database
directly, so accepted events are never lost. ``MemoryCollector`` keeps events in a list for host projects' tests.
"""

from __future__ import annotations

import json
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections, router, transaction

from personalization.conf import settings
from personalization.tracking.schema import EventData
from personalization.tracking.writer import dedupe, write_events, write_unique

logger = logging.getLogger("personalization.tracking")
#: Seconds a flush's lock outlives its last batch (a batch of FLUSH_BATCH_SIZE rows takes well under one).
FLUSH_LOCK_SECONDS = 15


@dataclass
class CollectResult:
    accepted: int = 0
    duplicates: int = 0


class Collector(ABC):
    """Takes validated events. ``collect`` must be cheap: it runs in the request."""

    @abstractmethod
    def collect(self, events: Sequence[EventData]) -> CollectResult:
        """Store or buffer the events; report how many were new and how many were already known."""

    def flush(self, max_events: int | None = None) -> int:
        """Move buffered events to the database; returns how many were written. No-op when unbuffered."""
        return 0


class DatabaseCollector(Collector):
    """Bulk insert now, or after the surrounding transaction commits when called inside one."""

    def collect(self, events: Sequence[EventData]) -> CollectResult:
        from personalization.models import Event

        unique, in_batch = dedupe(events)
        db = router.db_for_write(Event)
        if not connections[db].in_atomic_block:
            accepted = write_unique(unique) if unique else 0
            return CollectResult(accepted=accepted, duplicates=in_batch + len(unique) - accepted)
        known = set(
            Event.objects.using(db).filter(event_id__in=[e.event_id for e in unique]).values_list(
                "event_id", flat=True
            )
        )
        fresh = [e for e in unique if e.event_id not in known]
        if fresh:
            transaction.on_commit(lambda: write_events(fresh), using=db)
        return CollectResult(accepted=len(fresh), duplicates=in_batch + len(known))


class RedisCollector(Collector):
    """Buffer in a Redis list, de-duplicated by event id; the flush task writes batches to the database."""

    def __init__(self, url: str | None = None, key: str | None = None):
        from django.conf import settings as django_settings

        self.url = url or settings.REDIS_URL or getattr(django_settings, "REDIS_URL", None) or "redis://127.0.0.1:6379/0"
        self.key = key or settings.REDIS_STREAM_KEY
        self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import redis

            from personalization.circuit import client_options

            self._client = redis.Redis.from_url(self.url, **client_options(self.url))
        return self._client

    def _dedupe_key(self, event_id: uuid.UUID) -> str:
        return f"{self.key}:seen:{event_id}"

    def collect(self, events: Sequence[EventData]) -> CollectResult:
        import redis

        unique, in_batch = dedupe(events)
        if not unique:
            return CollectResult(0, in_batch)
        try:
            pipe = self.client.pipeline(transaction=False)
            for event in unique:
                pipe.set(self._dedupe_key(event.event_id), 1, nx=True, ex=settings.REDIS_DEDUPE_TTL)
            fresh = [e for e, new in zip(unique, pipe.execute(), strict=True) if new]
            if fresh:
                self.client.rpush(self.key, *[json.dumps(e.as_row(), separators=(",", ":")) for e in fresh])
        except redis.RedisError as exc:
            logger.warning("Redis collector unavailable (%s); writing %d events to the database", exc, len(unique))
            result = DatabaseCollector().collect(unique)
            result.duplicates += in_batch
            return result
        return CollectResult(accepted=len(fresh), duplicates=in_batch + len(unique) - len(fresh))

    def pending(self) -> int:
        return int(self.client.llen(self.key))

    def flush(self, max_events: int | None = None) -> int:
        """Write buffered events in batches. Rows leave Redis only after the database has them.

        One flush at a time holds a lock that expires ``FLUSH_LOCK_SECONDS`` after its last batch (renewed before
        each trim), so a lock left behind by a flush cut off mid-way (a Redis restart keeps it in its snapshot, a
        killed worker never releases it) stops the next flushes only briefly. A flush whose lock expired while
        it wrote stops before trimming: the batch stays buffered, and the flush that now holds the lock writes it
        again (the rows already stored are skipped), so no batch is trimmed twice.
        """
        from redis.exceptions import LockError

        batch_size = settings.FLUSH_BATCH_SIZE
        written = 0
        lock = self.client.lock(f"{self.key}:flush-lock", timeout=FLUSH_LOCK_SECONDS, blocking_timeout=0)
        if not lock.acquire(blocking=False):
            return 0
        try:
            while max_events is None or written < max_events:
                raw = self.client.lrange(self.key, 0, batch_size - 1)
                if not raw:
                    break
                batch = []
                for item in raw:
                    try:
                        batch.append(EventData.from_row(json.loads(item)))
                    except (ValueError, KeyError, TypeError):
                        logger.error("Dropping an unreadable buffered event: %r", item[:200])
                with transaction.atomic():
                    written += write_events(batch)
                try:
                    lock.reacquire()  # still ours (else raises): the TTL starts again, then trim
                except LockError:
                    logger.warning("Flush lock expired while writing a batch; leaving the buffer to the next flush")
                    break
                self.client.ltrim(self.key, len(raw), -1)
        finally:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 - the lock may have expired; the next flush proceeds
                pass
        return written


class MemoryCollector(Collector):
    """Keeps events in memory (``MemoryCollector.events``); for host projects' tests."""

    events: list[EventData] = []

    def collect(self, events: Sequence[EventData]) -> CollectResult:
        unique, in_batch = dedupe(events)
        known = {e.event_id for e in MemoryCollector.events}
        fresh = [e for e in unique if e.event_id not in known]
        MemoryCollector.events.extend(fresh)
        return CollectResult(len(fresh), in_batch + len(unique) - len(fresh))


def get_collector() -> Collector:
    """The configured collector (one instance per process and settings generation)."""
    return settings.derived("collector", settings.COLLECTOR_BACKEND)


def collect(events: Iterable[EventData]) -> CollectResult:
    """Hand events to the configured collector; never raises (errors are logged and counted as lost)."""
    events = list(events)
    try:
        return get_collector().collect(events)
    except Exception:
        logger.exception("Could not collect %d events; trying the database directly", len(events))
        return CollectResult(accepted=write_events(events))
