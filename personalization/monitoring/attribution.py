"""Feedback attribution: which impressions, clicks, carts and purchases each served list (and position) earned.

Rules (docs/online_measurement.md):

- An event carrying a list's ``recommendation_id`` counts for the position of its item in that list, when it comes
  from the same subject the list was served to (its user or its visitor id) and not before the list was served.
- Impressions and clicks count once per position (a click implies the item was seen), within
  ``CLICK_SESSION_MINUTES`` of the list (the session).
- Carts and purchases count within ``ATTRIBUTION_WINDOW_HOURS`` of the list; a purchase without a
  ``recommendation_id`` counts for the latest list served to the same subject within the window that showed the
  item (each purchase counts for one list at most). Revenue is the purchases' ``value``.

``ListDailyStat`` rows are per day (UTC, of the list) x slot x model version x A/B arm x explored x position. A day
is always recomputed whole, so re-running it gives the same numbers; the task recomputes only the days new events
(read from a watermark, the last counted ``Event.id``) or new lists touched.
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.db import transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from personalization.conf import settings
from personalization.models import Event, ListDailyStat, RecommendationLog, StatWatermark

logger = logging.getLogger("personalization.monitoring")
WATERMARK = "list_stats"
OUTCOME_EVENTS = ("impression", "click", "add_to_cart", "purchase")
#: Clocks of browsers differ: an event up to this long before its list was logged still counts.
CLOCK_SKEW = timedelta(minutes=1)


@dataclass
class ServedList:
    """One RecommendationLog row, reduced to what attribution needs."""

    id: str
    subject: str
    slot: str
    model_version: int | None
    experiment: int | None
    arm: str
    items: list[str]
    explored: list[bool]
    created_at: datetime


@dataclass
class Outcome:
    """What one position of one list earned."""

    impressed: bool = False
    clicked: bool = False
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0


@dataclass
class Attribution:
    """Outcomes per (list id, position); ``lists`` holds the lists they belong to."""

    lists: dict[str, ServedList]
    outcomes: dict[tuple[str, int], Outcome] = field(default_factory=dict)

    def outcome(self, list_id: str, position: int) -> Outcome:
        return self.outcomes.setdefault((list_id, position), Outcome())


def served_lists(rows: Iterable[RecommendationLog] | Any) -> dict[str, ServedList]:
    """ServedList per id from RecommendationLog rows (a queryset is read in chunks)."""
    out = {}
    fields = ("id", "subject", "slot", "model_version_id", "experiment_id", "arm", "items", "created_at")
    iterator = rows.values_list(*fields).iterator(chunk_size=5000) if hasattr(rows, "values_list") else (
        tuple(getattr(r, f) for f in fields) for r in rows)
    for rec_id, subject, slot, version, experiment, arm, items, created in iterator:
        entries = [e for e in (items or []) if isinstance(e, dict)]
        out[rec_id] = ServedList(rec_id, subject, slot, version, experiment, arm,
                                 [str(e.get("item", "")) for e in entries],
                                 [str(e.get("reason", "")).startswith("exploration:") for e in entries], created)
    return out


def _subjects(user_id: int | None, visitor_id: str) -> tuple[str, ...]:
    return tuple(s for s in (f"u:{user_id}" if user_id else "", f"v:{visitor_id}" if visitor_id else "") if s)


def attribute(lists: dict[str, ServedList], events: Iterable[tuple], *,
              context: dict[str, ServedList] | None = None) -> Attribution:
    """Attribute ``events`` (tuples: id, type, item, user id, visitor id, occurred at, value, recommendation id,
    in any order) to ``lists``. ``context``: more lists (a superset of ``lists``) that may claim a purchase without
    a recommendation id: one claimed by a list outside ``lists`` counts for none of them."""
    session = timedelta(minutes=float(settings.CLICK_SESSION_MINUTES))
    window = timedelta(hours=float(settings.ATTRIBUTION_WINDOW_HOURS))
    result = Attribution(lists)
    shown: dict[tuple[str, str], list[tuple[datetime, str, int]]] = defaultdict(list)
    for served in (context or lists).values():
        for position, item in enumerate(served.items):
            shown[(served.subject, item)].append((served.created_at, served.id, position))
    for entries in shown.values():
        entries.sort()
    ordered = sorted((e for e in events if e[1] in OUTCOME_EVENTS), key=lambda e: (e[5], e[0]))
    people: dict[tuple[Any, str], tuple[str, ...]] = {}
    for _id, kind, item, user_id, visitor_id, occurred, value, rec_id in ordered:
        subjects = people.get((user_id, visitor_id))
        if subjects is None:
            subjects = people[(user_id, visitor_id)] = _subjects(user_id, visitor_id)
        served = lists.get(rec_id) if rec_id else None
        if rec_id and served is None and context is not None and rec_id in context:
            continue  # an event of a list outside the ones counted
        if served is not None:
            if served.subject not in subjects or item not in served.items:
                continue
            age = occurred - served.created_at
            if age < -CLOCK_SKEW:
                continue
            position = served.items.index(item)
            outcome = result.outcome(served.id, position)
            if kind in ("impression", "click"):
                if age <= session:
                    outcome.impressed = True
                    outcome.clicked = outcome.clicked or kind == "click"
            elif age <= window:
                if kind == "add_to_cart":
                    outcome.carts += 1
                else:
                    outcome.purchases += 1
                    outcome.revenue += float(value or 0.0)
        elif kind == "purchase" and not rec_id:
            claim = _latest_showing(shown, subjects, item, occurred, window)
            if claim is not None and claim[0] in lists:
                outcome = result.outcome(*claim)
                outcome.purchases += 1
                outcome.revenue += float(value or 0.0)
    return result


def _latest_showing(shown: dict[tuple[str, str], list[tuple[datetime, str, int]]], subjects: Sequence[str],
                    item: str, at: datetime, window: timedelta) -> tuple[str, int] | None:
    """(list id, position) of the latest list shown to one of ``subjects`` with ``item`` within ``window`` before
    ``at``, else None."""
    best = None
    for subject in subjects:
        entries = shown.get((subject, item))
        if not entries:
            continue
        i = bisect.bisect_right(entries, (at + CLOCK_SKEW, "\uffff", 1 << 30)) - 1
        if i >= 0 and entries[i][0] >= at - window and (best is None or entries[i] > best):
            best = entries[i]
    return (best[1], best[2]) if best is not None else None


def outcome_events(start: datetime, end: datetime, *, upto_id: int | None = None) -> list[tuple]:
    """Events that may be attributed to lists served in [start, end): impressions and clicks with a recommendation
    id until the session after ``end``, carts and purchases with one and purchases without one until the attribution
    window after it (so a day reads the next day's carts and purchases, not its impressions)."""
    window = timedelta(hours=float(settings.ATTRIBUTION_WINDOW_HOURS))
    session = timedelta(minutes=float(settings.CLICK_SESSION_MINUTES))
    with_id = ~Q(recommendation_id="")
    qs = (Event.objects.filter(occurred_at__gte=start - CLOCK_SKEW, occurred_at__lt=end + max(window, session))
          .filter(Q(event_type__in=("impression", "click"), occurred_at__lt=end + session) & with_id
                  | Q(event_type="add_to_cart") & with_id | Q(event_type="purchase")).order_by())
    if upto_id is not None:
        qs = qs.filter(id__lte=upto_id)
    return list(qs.values_list("id", "event_type", "item_key", "user_id", "visitor_id", "occurred_at", "value",
                               "recommendation_id").iterator(chunk_size=10000))


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=dt_timezone.utc)
    return start, start + timedelta(days=1)


def day_stats(day: date, *, upto_id: int | None = None) -> list[ListDailyStat]:
    """The ListDailyStat rows of the lists served on ``day`` (UTC), computed from scratch (not saved)."""
    start, end = _day_bounds(day)
    window = timedelta(hours=float(settings.ATTRIBUTION_WINDOW_HOURS))
    lists = served_lists(RecommendationLog.objects.filter(created_at__gte=start, created_at__lt=end))
    events = outcome_events(start, end, upto_id=upto_id)
    # later lists may claim a purchase without a recommendation id: only those of the people who made one matter
    buyers = sorted({s for e in events if e[1] == "purchase" and not e[7] for s in _subjects(e[3], e[4])})
    context = dict(lists)
    for at in range(0, len(buyers), 1000):
        context.update(served_lists(RecommendationLog.objects.filter(
            created_at__gte=end, created_at__lt=end + window, subject__in=buyers[at:at + 1000])))
    attribution = attribute(lists, events, context=context)
    groups: dict[tuple, ListDailyStat] = {}
    visitors: dict[tuple, set[str]] = defaultdict(set)
    for served in lists.values():
        for position, explored in enumerate(served.explored):
            key = (served.slot, served.model_version, served.experiment, served.arm, explored, position)
            row = groups.get(key)
            if row is None:
                row = groups[key] = ListDailyStat(day=day, slot=served.slot, model_version_id=served.model_version,
                                                  experiment_id=served.experiment, arm=served.arm, explored=explored,
                                                  position=min(position, 32767))
            row.lists += 1
            visitors[key].add(served.subject)
            outcome = attribution.outcomes.get((served.id, position))
            if outcome is not None:
                row.impressions += outcome.impressed
                row.clicks += outcome.clicked
                row.carts += outcome.carts
                row.purchases += outcome.purchases
                row.revenue += outcome.revenue
    for key, row in groups.items():
        row.visitors = len(visitors[key])
        row.revenue = round(row.revenue, 6)
    return list(groups.values())


def aggregate_day(day: date, *, upto_id: int | None = None) -> int:
    """Replace the ListDailyStat rows of ``day`` by freshly computed ones; returns how many rows it has."""
    rows = day_stats(day, upto_id=upto_id)
    with transaction.atomic():
        ListDailyStat.objects.filter(day=day).delete()
        ListDailyStat.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def _touched_days(after_id: int, upto_id: int, since: datetime | None) -> set[date]:
    """Days whose lists new events (ids in (after_id, upto_id]) may count for, and the days lists were served
    since the last run (``since``; None: every day with lists)."""
    window = timedelta(hours=float(settings.ATTRIBUTION_WINDOW_HOURS))
    days: set[date] = set()
    today = timezone.now().astimezone(dt_timezone.utc).date()
    if since is None:
        first = RecommendationLog.objects.aggregate(first=Min("created_at"))["first"]
        since = first if first is not None else timezone.now()
    day = since.astimezone(dt_timezone.utc).date()
    while day <= today:
        days.add(day)
        day += timedelta(days=1)
    new = Event.objects.filter(id__gt=after_id, id__lte=upto_id, event_type__in=OUTCOME_EVENTS).order_by()
    rec_ids = set(new.exclude(recommendation_id="").values_list("recommendation_id", flat=True).distinct())
    if rec_ids:
        ids = list(rec_ids)
        for chunk in range(0, len(ids), 5000):
            for created in (RecommendationLog.objects.filter(id__in=ids[chunk:chunk + 5000])
                            .values_list("created_at", flat=True)):
                days.add(created.astimezone(dt_timezone.utc).date())
    for occurred in new.filter(event_type="purchase", recommendation_id="").values_list("occurred_at", flat=True):
        first, last = (occurred - window).astimezone(dt_timezone.utc).date(), occurred.astimezone(dt_timezone.utc)
        day = first
        while day <= last.date():
            days.add(day)
            day += timedelta(days=1)
    return days


def aggregate_list_stats(days: Sequence[date] | None = None) -> dict[str, Any]:
    """Bring ListDailyStat up to date: the given ``days``, else the days touched since the last run.

    Incremental by event id: the watermark holds the last Event.id counted; events past it are left for the next
    run, so a day is computed from the same events however often it is recomputed."""
    upto = Event.objects.aggregate(last=Max("id"))["last"] or 0
    mark, created = StatWatermark.objects.get_or_create(name=WATERMARK)
    if days is None:
        since = None if created else mark.updated_at
        todo = sorted(_touched_days(mark.last_event_id, upto, since))
    else:
        todo = sorted(set(days))
    rows = 0
    for day in todo:
        rows += aggregate_day(day, upto_id=upto)
    if days is None:
        StatWatermark.objects.filter(name=WATERMARK).update(last_event_id=upto, updated_at=timezone.now())
    logger.info("personalization: list statistics of %d day(s) recomputed up to event %s (%d rows)",
                len(todo), upto, rows)
    return {"days": len(todo), "rows": rows, "last_event_id": upto}
