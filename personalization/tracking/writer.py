"""Writes validated events into the Event table, each event id once: the one bulk writer of the app.

The collectors (a request's events, the Redis buffer's flush) and the importer (history files) all end here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import timezone as dt_timezone
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from personalization.models import Event, VisitorLink
from personalization.tracking.schema import EventData


def dedupe(events: Sequence[EventData]) -> tuple[list[EventData], int]:
    """The events with each id once (the first one wins), and how many repeats were left out."""
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
    SQLite takes one ``executemany`` of ``INSERT ... ON CONFLICT DO NOTHING`` (several times faster than
    ``bulk_create``, which builds SQL per object); other databases use bulk_create after a lookup of the ids
    already stored.
    """
    if not events:
        return 0
    return write_unique(dedupe(events)[0], stitch)


def write_unique(events: list[EventData], stitch: bool = True) -> int:
    """``write_events`` for a batch without repeated event ids."""
    db = router.db_for_write(Event)
    received = timezone.now()
    vendor = connections[db].vendor
    if vendor in {"postgresql", "sqlite"}:
        if stitch:
            _stitch_users(events, db)
        if vendor == "postgresql":
            return _copy_events_postgresql(db, events, received)
        return _insert_new_events_sqlite(db, events, received)
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


def _insert_new_events_sqlite(db: str, events: Sequence[EventData], received: Any) -> int:
    """Prepared values through one ``executemany`` of ``INSERT ... ON CONFLICT DO NOTHING``; the row count is what
    was new."""
    connection = connections[db]
    meta = Event._meta
    fields = [meta.get_field(name) for name in _COLUMNS]
    event_id, occurred, context = fields[0], fields[5], fields[10]
    prepared_received = fields[6].get_db_prep_save(received, connection=connection)
    params = [
        (event_id.get_db_prep_save(e.event_id, connection=connection), e.event_type, e.item_key, e.visitor_id,
         e.user_id, occurred.get_db_prep_save(e.occurred_at, connection=connection), prepared_received,
         None if e.value is None else float(e.value), e.recommendation_id, e.source,
         context.get_db_prep_save(e.context, connection=connection))
        for e in events
    ]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT DO NOTHING")
    inserted = 0
    with transaction.atomic(using=db), connection.cursor() as cursor:
        for start in range(0, len(params), 1000):
            cursor.executemany(sql, params[start:start + 1000])
            inserted += max(cursor.rowcount, 0)
    return inserted


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
    """COPY into a temporary table, then ``INSERT`` the rows whose id is not stored yet, ``ON CONFLICT DO
    NOTHING`` for ids another process stores concurrently. No conflict target: on an event table partitioned by
    month (scripts/partition_events.sql) the unique constraint is (event_id, occurred_at)."""
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
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _personalization_event_in i "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} e WHERE e.event_id = i.event_id) "
            f"ON CONFLICT DO NOTHING RETURNING 1"
        )
        inserted = len(cursor.fetchall())
        cursor.execute("DELETE FROM _personalization_event_in")  # the outer transaction may go on
    return inserted
