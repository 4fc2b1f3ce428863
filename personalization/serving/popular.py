"""Popularity without a live model: the items most visitors interacted with in the visitor's context, else in the
shop.

Items are ranked by distinct people (the user when signed in, else the visitor id), not by raw events, so a burst
from one visitor counts once and cannot make an item #1; bots and floods are already dropped at ingestion
(``BOT_FILTER``, the per-visitor and per-IP limits). The event count breaks ties.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Case, CharField, Count, F, Value, When
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from personalization import shared_cache
from personalization.freshness import PREFIX, SAFE_KEY, safe_part
from personalization.serving.results import Recommendation

#: How long a popularity list is cached. An empty one (a new shop, no events yet) only briefly: the shop's first
#: events must show on the next pages, not ten minutes later.
POPULAR_SECONDS = 600
EMPTY_POPULAR_SECONDS = 5


def _popular_rows(segment: tuple[str, Any] | None) -> list[tuple[str, int]]:
    from personalization.models import Event

    key = f"{PREFIX}popular:v3:{safe_part(f'{segment[0]}={segment[1]}') if segment else 'all'}"
    popular = shared_cache.get(key)
    if popular is None:
        base = Event.objects.exclude(item_key="").exclude(event_type__in=["impression", "remove_from_cart"])
        if segment is not None:
            name, value = segment
            base = base.filter(occurred_at__hour=int(value)) if name == "hour" else base.filter(
                **{f"context__{name}": value})
        since = timezone.now() - timedelta(days=30)
        popular = _ranked(base.filter(occurred_at__gte=since))
        if not popular:  # an imported history may be older than 30 days
            popular = _ranked(base)
        try:
            shared_cache.cache().set(key, popular, timeout=POPULAR_SECONDS if popular else EMPTY_POPULAR_SECONDS)
        except Exception:  # noqa: BLE001
            pass
    return popular


def _ranked(events: Any) -> list[tuple[str, int]]:
    """The top items of ``events`` by distinct people, then by events: [(item key, people)]."""
    person = Case(When(user_id__isnull=False, then=Concat(Value("u:"), Cast("user_id", CharField()))),
                  default=F("visitor_id"), output_field=CharField())
    rows = (events.values("item_key").annotate(people=Count(person, distinct=True), n=Count("id"))
            .order_by("-people", "-n", "item_key")[:200])
    return [(r["item_key"], r["people"]) for r in rows]


def popular(n: int, exclude: set[str], context: dict[str, Any] | None = None) -> list[Recommendation]:
    """Most interacted-with items of the last 30 days in the visitor's country, device or hour, else overall."""
    context = context or {}
    for name in ("country", "device", "hour"):
        value = context.get(name)
        if value in (None, "") or (name == "hour" and not str(value).isdigit()):
            continue
        if name != "hour" and not SAFE_KEY.match(str(value)):
            continue
        rows = [(k, c) for k, c in _popular_rows((name, value)) if k not in exclude]
        if len(rows) >= n:
            return [Recommendation(k, float(c), f"popular:{name}={value}") for k, c in rows[:n]]
    return [Recommendation(k, float(c), "popular") for k, c in _popular_rows(None) if k not in exclude][:n]
