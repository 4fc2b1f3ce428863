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
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timezone as dt_timezone
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from personalization.conf import settings
from personalization.tracking.schema import EventData

logger = logging.getLogger("personalization.tracking")


@dataclass
class CollectResult:
    accepted: int = 0
    duplicates: int = 0


def _dedupe_batch(events: Sequence[EventData]) -> tuple[list[EventData], int]:
    seen: set[uuid.UUID] = set()
    unique = []
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        unique.append(event)
    return unique, len(events) - len(unique)


def _stitch_users(events: Sequence[EventData], db: str | None = None) -> None:
    """Attach the user to anonymous events of visitors who have signed in on that device (one query)."""
    from personalization.models import VisitorLink

    anonymous = {e.visitor_id for e in events if e.user_id is None and e.visitor_id}
    if not anonymous:
        return
    links = dict(
        VisitorLink.objects.using(db).filter(visitor_id__in=anonymous).values_list("visitor_id", "user_id")
    )
    if links:
        for event in events:
            if event.user_id is None and event.visitor_id in links:
                event.user_id = links[event.visitor_id]


_COLUMNS = ("event_id", "event_type", "item_key", "visitor_id", "user_id", "occurred_at", "received_at", "value",
            "recommendation_id", "source", "context")


_COPY_TYPES = ("uuid", "text", "text", "text", "int4", "timestamptz", "timestamptz", "float8", "text", "text", "jsonb")


def write_events(events: Sequence[EventData], *, stitch: bool = True) -> int:
    """Insert events, skipping event ids already stored; returns how many rows were new.

    Anonymous events of visitors linked to a user (sign-in on that browser) get the user. On PostgreSQL the
    rows go straight into the table with one binary COPY (typed columns: no per-value Python formatting, no
    server-side text parsing); a batch holding an id that is already stored (a retried batch) makes that COPY
    fail as a whole, and is then written through a temporary table and ``INSERT ... ON CONFLICT DO NOTHING``.
    Django's bulk_create quotes every array element in Python, which made ingestion five times slower. Other
    databases use bulk_create after a lookup of the ids already stored.
    """
    if not events:
        return 0
    return _write_unique(_dedupe_batch(events)[0], stitch)


def _write_unique(events: list[EventData], stitch: bool = True) -> int:
    """``write_events`` for a batch without repeated event ids."""
    from personalization.models import Event

    db = router.db_for_write(Event)
    received = timezone.now()
    if connections[db].vendor == "postgresql":
        if stitch:
            _stitch_users(events, db)
        return _copy_events_postgresql(db, events, received)
    existing = set(
        Event.objects.using(db).filter(event_id__in=[e.event_id for e in events]).values_list("event_id", flat=True)
    )
    fresh = [e for e in events if e.event_id not in existing]
    if not fresh:
        return 0
    if stitch:
        _stitch_users(fresh, db)
    rows = [
        Event(
            event_id=e.event_id,
            event_type=e.event_type,
            item_key=e.item_key,
            visitor_id=e.visitor_id,
            user_id=e.user_id,
            occurred_at=e.occurred_at,
            received_at=received,
            value=e.value,
            recommendation_id=e.recommendation_id,
            source=e.source,
            context=e.context,
        )
        for e in fresh
    ]
    Event.objects.using(db).bulk_create(rows, batch_size=2000, ignore_conflicts=True)
    return len(fresh)


def _copy_rows(copy: Any, events: Sequence[EventData], received: Any) -> None:
    from psycopg.types.json import Jsonb

    copy.set_types(_COPY_TYPES)
    write = copy.write_row
    for e in events:
        occurred = e.occurred_at
        if occurred.tzinfo is None:  # a naive time is UTC, as Django's connections are
            occurred = occurred.replace(tzinfo=dt_timezone.utc)
        value = e.value
        write((e.event_id, e.event_type, e.item_key, e.visitor_id, e.user_id, occurred, received,
               None if value is None else float(value), e.recommendation_id, e.source, Jsonb(e.context)))


def _copy_events_postgresql(db: str, events: Sequence[EventData], received: Any) -> int:
    """One binary COPY into the event table (in a savepoint inside a transaction); on a duplicate id, the
    duplicate-skipping path. Returns how many rows were new."""
    from personalization.models import Event

    connection = connections[db]
    table = Event._meta.db_table
    statement = f"COPY {table} ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    try:
        with transaction.atomic(using=db) if connection.in_atomic_block else nullcontext():
            with connection.cursor() as wrapper, connection.wrap_database_errors:
                cursor = wrapper.cursor  # the psycopg cursor, for COPY
                with cursor.copy(statement) as copy:
                    _copy_rows(copy, events, received)
                return len(events)
    except IntegrityError as exc:
        if getattr(getattr(exc, "__cause__", None), "sqlstate", None) != "23505":  # not a unique violation
            raise
    return _insert_new_events_postgresql(db, events, received)


def _insert_new_events_postgresql(db: str, events: Sequence[EventData], received: Any) -> int:
    """COPY into a temporary table, then ``INSERT ... ON CONFLICT (event_id) DO NOTHING``: skips ids already
    stored, also when another process stores them concurrently."""
    from personalization.models import Event

    table = Event._meta.db_table
    columns = ", ".join(_COLUMNS)
    connection = connections[db]
    with transaction.atomic(using=db), connection.cursor() as wrapper, connection.wrap_database_errors:
        cursor = wrapper.cursor
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS _personalization_event_in ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        with cursor.copy(f"COPY _personalization_event_in ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            _copy_rows(copy, events, received)
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _personalization_event_in "
            f"ON CONFLICT (event_id) DO NOTHING RETURNING 1"
        )
        inserted = len(cursor.fetchall())
        cursor.execute("DELETE FROM _personalization_event_in")  # the outer transaction may go on
    return inserted


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

        unique, in_batch = _dedupe_batch(events)
        db = router.db_for_write(Event)
        if not connections[db].in_atomic_block:
            accepted = _write_unique(unique) if unique else 0
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

            self._client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=2)
        return self._client

    def _dedupe_key(self, event_id: uuid.UUID) -> str:
        return f"{self.key}:seen:{event_id}"

    def collect(self, events: Sequence[EventData]) -> CollectResult:
        import redis

        unique, in_batch = _dedupe_batch(events)
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
        """Write buffered events in batches. Rows leave Redis only after the database has them."""
        batch_size = settings.FLUSH_BATCH_SIZE
        written = 0
        lock = self.client.lock(f"{self.key}:flush-lock", timeout=300, blocking_timeout=0)
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
        unique, in_batch = _dedupe_batch(events)
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
