"""Daily ingestion counters kept in the database: accepted events and what tracking left out.

Tracking counts bots, rate-limited, no-consent, invalid and duplicate events in the cache (``tracking/metrics.py``:
one cache increment on those rare paths, nothing on the accepted path). :func:`persist_counters` copies the last
days' values into ``IngestionCounter`` rows and counts the accepted events from the ``Event`` table (by the day
they were received), so the hot path is unchanged. It sets, never adds, so it is safe to run any number of times;
a value never goes down (a cache emptied by a Redis restart does not erase what was copied before).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone

from django.db import transaction
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from personalization.conf import settings
from personalization.models import Event, IngestionCounter
from personalization.tracking import metrics

#: The counter of events stored (from the Event table); the others come from tracking's cache counters.
ACCEPTED = "accepted_events"
NAMES = (ACCEPTED, *metrics.NAMES)
#: Days copied per run: the cache keeps 8 days of counters.
DAYS = 8


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC start and end of a calendar day (counters and exports use UTC days)."""
    start = datetime.combine(day, time.min, tzinfo=dt_timezone.utc)
    return start, start + timedelta(days=1)


def persist_counters(days: int = DAYS, *, today: date | None = None) -> dict[str, dict[str, int]]:
    """Copy the counters of the last ``days`` UTC days (today included) into ``IngestionCounter``.

    Returns ``{iso day: {name: count}}`` of what is stored now.
    """
    today = today or timezone.now().astimezone(dt_timezone.utc).date()
    accepted = accepted_by_day(today - timedelta(days=days - 1), today)
    stored: dict[str, dict[str, int]] = {}
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        values = {name: metrics.get(name, day.isoformat()) for name in metrics.NAMES}
        values[ACCEPTED] = accepted.get(day, 0)
        with transaction.atomic():
            existing = dict(IngestionCounter.objects.select_for_update().filter(day=day)
                            .values_list("name", "count"))
            for name, value in values.items():
                value = max(value, existing.get(name, 0))
                if name not in existing:
                    if value:
                        IngestionCounter.objects.create(day=day, name=name, count=value)
                elif value != existing[name]:
                    IngestionCounter.objects.filter(day=day, name=name).update(count=value, updated_at=timezone.now())
                values[name] = value
        stored[day.isoformat()] = values
    return stored


def accepted_by_day(first: date, last: date) -> dict[date, int]:
    """Events received on each UTC day from ``first`` to ``last`` through tracking (imports left out).

    One query. ``received_at`` has no index (each index slows ingestion), so the rows are found through the
    ``occurred_at`` index: tracking accepts client times at most MAX_EVENT_AGE_SECONDS old and
    MAX_CLOCK_SKEW_SECONDS ahead, which bounds the range to read.
    """
    start, end = day_bounds(first)[0], day_bounds(last)[1]
    rows = (Event.objects
            .filter(occurred_at__gte=start - timedelta(seconds=settings.MAX_EVENT_AGE_SECONDS + 3600),
                    occurred_at__lt=end + timedelta(seconds=settings.MAX_CLOCK_SKEW_SECONDS + 3600),
                    received_at__gte=start, received_at__lt=end)
            .exclude(source=Event.Source.IMPORT)
            .annotate(day=TruncDate("received_at", tzinfo=dt_timezone.utc))
            .order_by().values("day").annotate(n=Count("id")).values_list("day", "n"))
    return dict(rows)


def counts(start: date, end: date) -> dict[str, int]:
    """Sum of each stored counter over the UTC days ``start`` to ``end`` (both included); 0 for missing ones."""
    totals = dict.fromkeys(NAMES, 0)
    for name, value in IngestionCounter.objects.filter(day__gte=start, day__lte=end).values_list("name", "count"):
        totals[name] = totals.get(name, 0) + value
    return totals
