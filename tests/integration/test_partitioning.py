"""The monthly partitioning recipe of docs/deployment.md, run against PostgreSQL: scripts/partition_events.sql
turns the event table into monthly partitions, keeps every row, and the app then ingests (with retried batches
stored once), queries, forgets and drops a month as before."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from personalization.models import Event
from personalization.tracking.schema import EventData
from personalization.tracking.writer import write_events

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "partition_events.sql"

UNDO = """
DROP TABLE personalization_event CASCADE;
DROP FUNCTION personalization_event_ensure_partitions(timestamptz, timestamptz);
ALTER TABLE personalization_event_unpartitioned RENAME TO personalization_event;
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT conname FROM pg_constraint WHERE conrelid = 'personalization_event'::regclass
             AND conname LIKE '%\\_unpartitioned' LOOP
        EXECUTE format('ALTER TABLE personalization_event RENAME CONSTRAINT %I TO %I', r.conname,
                       left(r.conname, -length('_unpartitioned')));
    END LOOP;
    FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = 'personalization_event'::regclass AND c.relname LIKE '%\\_unpartitioned' LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', r.relname, left(r.relname, -length('_unpartitioned')));
    END LOOP;
END $$;
"""


def events(n: int, when, visitor: str = "v1") -> list[EventData]:
    return [EventData(event_type="view", item_key=f"product:{i}", event_id=uuid.uuid4(), occurred_at=when,
                      visitor_id=visitor) for i in range(n)]


@pytest.fixture
def partitioned(transactional_db):
    if connection.vendor != "postgresql":
        pytest.fail("The partitioning recipe is for PostgreSQL; run this test with `make test-prod`.")
    yield
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(UNDO)  # the rest of the session gets Django's table back


def partition_of(event_ids) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text, count(*) FROM personalization_event "
                       "WHERE event_id = ANY(%s) GROUP BY 1", [list(event_ids)])
        return dict(cursor.fetchall())


def test_monthly_partitioning_recipe_keeps_rows_and_the_app_works_on_it(partitioned):
    now = timezone.now()
    old_month = (now.replace(day=1) - timedelta(days=40)).replace(day=10)
    before = events(3, old_month) + events(2, now)
    write_events(before)

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(SCRIPT.read_text())

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_partitioned_table "
                       "WHERE partrelid = 'personalization_event'::regclass")
        assert cursor.fetchone()[0] == 1
    assert Event.objects.count() == 5
    assert partition_of(e.event_id for e in before) == {
        f"personalization_event_{old_month:%Y_%m}": 3, f"personalization_event_{now:%Y_%m}": 2}

    # Ingestion: a new batch by binary COPY, then the same batch again (a retried flush) is stored once.
    fresh = events(4, now, visitor="v2")
    assert write_events(fresh) == 4
    assert write_events(fresh + events(1, now, visitor="v2")) == 1
    assert Event.objects.filter(visitor_id="v2").count() == 5
    assert Event.objects.values("event_id").distinct().count() == Event.objects.count() == 10
    created = Event.objects.create(event_type="click", item_key="product:1", visitor_id="v3", occurred_at=now,
                                   received_at=now)
    assert created.pk > max(Event.objects.exclude(pk=created.pk).values_list("pk", flat=True))

    # Forgetting deletes across partitions; retention drops a whole month.
    assert Event.objects.filter(visitor_id="v1").delete()[0] == 5
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT personalization_event_ensure_partitions(now(), now() + interval '6 months')")
        assert cursor.fetchone()[0] == 3  # three months ahead existed already
        cursor.execute(f"DROP TABLE personalization_event_{now:%Y_%m}")
    assert Event.objects.count() == 0
