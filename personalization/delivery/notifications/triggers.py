"""The trigger kinds of notification rules: which users a rule's run considers, about what, with which items.

``recommended_items``
    users with any event in the last ``NOTIFICATION_SCORE_WINDOW_DAYS``; items from ``serving.recommend()``
    (available, not already bought). At most one message per rule and user per local day.
``abandoned_cart``
    users whose cart (``add_to_cart`` not followed by ``remove_from_cart`` or ``purchase`` of the item) was last
    touched more than ``ABANDONED_CART_HOURS`` ago and less than ``ABANDONED_CART_MAX_DAYS`` ago. One message per
    cart state.
``back_in_stock``
    users who viewed or carted (in the last ``BACK_IN_STOCK_LOOKBACK_DAYS``) an item that was unavailable and is
    available again. Availability is a snapshot of the catalog adapter's ``available()`` over the watched items,
    kept in the cache between runs; a restock seen by one run stays announceable for
    ``BACK_IN_STOCK_NOTICE_DAYS`` (so users in quiet hours get it later). One message per restock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from personalization import shared_cache
from personalization.conf import settings
from personalization.models import Event, NotificationRule

Trigger = NotificationRule.Trigger
VIEW, ADD, REMOVE, PURCHASE = "view", "add_to_cart", "remove_from_cart", "purchase"
SNAPSHOT_KEY = "personalization:notifications:availability:v1"


class RunState(Protocol):
    """What a trigger reads from the run: its time and the restocks it has seen (computed once per run)."""

    now: datetime

    def restocked(self) -> dict[str, datetime]: ...


@dataclass
class Candidate:
    user_id: int
    subject: str  # what the message is about (part of the idempotency key)
    period: str | None = None  # part of the key; None: the user's local date
    items: list[str] | None = None  # None: the user's recommendations


def recommended_candidates(rule: NotificationRule, run: RunState) -> list[Candidate]:
    since = run.now - timedelta(days=float(settings.NOTIFICATION_SCORE_WINDOW_DAYS))
    ids = (Event.objects.filter(user__isnull=False, occurred_at__gte=since, occurred_at__lte=run.now)
           .values_list("user_id", flat=True).distinct().order_by())
    return [Candidate(uid, "recommended") for uid in sorted(set(ids))]


def abandoned_cart_candidates(rule: NotificationRule, run: RunState) -> list[Candidate]:
    now = run.now
    idle = now - timedelta(hours=float(settings.ABANDONED_CART_HOURS))
    oldest = now - timedelta(days=float(settings.ABANDONED_CART_MAX_DAYS))
    rows = (Event.objects.filter(user__isnull=False, event_type__in=[ADD, REMOVE, PURCHASE],
                                 occurred_at__gte=oldest, occurred_at__lte=now)
            .exclude(item_key="").order_by("user_id", "occurred_at", "id")
            .values_list("user_id", "item_key", "event_type", "occurred_at"))
    carts: dict[int, dict[str, datetime]] = defaultdict(dict)
    for uid, item, kind, when in rows.iterator(chunk_size=5000):
        if kind == ADD:
            carts[uid][item] = when
        else:
            carts[uid].pop(item, None)
    out = []
    for uid in sorted(carts):
        cart = carts[uid]
        if not cart:
            continue
        last = max(cart.values())
        if last > idle:
            continue  # still shopping
        items = sorted(cart, key=lambda k: cart[k], reverse=True)
        signature = ",".join(sorted(cart)) + "@" + last.isoformat()
        out.append(Candidate(uid, "cart:" + signature, period=last.date().isoformat(), items=items))
    return out


def refresh_availability(now: datetime) -> dict[str, datetime]:
    """Update the availability snapshot of watched items; returns restocked item -> when the restock was seen.

    Watched items are those viewed or carted by users in the look-back window. An item unavailable in the previous
    snapshot and available now is restocked at ``now``; restocks are remembered for ``BACK_IN_STOCK_NOTICE_DAYS``.
    The first run has no previous snapshot and so finds no restocks.
    """
    from personalization.catalog import get_catalog

    cache = shared_cache.cache()
    snapshot = cache.get(SNAPSHOT_KEY) or {}
    previous = set(snapshot.get("unavailable", ()))
    restocked = {k: datetime.fromisoformat(v) for k, v in (snapshot.get("restocked") or {}).items()}
    since = now - timedelta(days=float(settings.BACK_IN_STOCK_LOOKBACK_DAYS))
    watched = set(Event.objects.filter(user__isnull=False, event_type__in=[VIEW, ADD], occurred_at__gte=since,
                                       occurred_at__lte=now).exclude(item_key="")
                  .values_list("item_key", flat=True).distinct().order_by())
    checked = watched | previous
    available = get_catalog().available(checked) if checked else set()
    for key in previous & available:
        restocked[key] = now
    notice = timedelta(days=float(settings.BACK_IN_STOCK_NOTICE_DAYS))
    restocked = {k: t for k, t in restocked.items() if k in available and now - notice <= t}
    cache.set(SNAPSHOT_KEY, {"unavailable": sorted(watched - available),
                             "restocked": {k: t.isoformat() for k, t in restocked.items()},
                             "at": now.isoformat()}, timeout=None)
    return restocked


def back_in_stock_candidates(rule: NotificationRule, run: RunState) -> list[Candidate]:
    restocked = run.restocked()
    if not restocked:
        return []
    since = run.now - timedelta(days=float(settings.BACK_IN_STOCK_LOOKBACK_DAYS))
    interest = (Event.objects.filter(user__isnull=False, item_key__in=list(restocked), event_type__in=[VIEW, ADD],
                                     occurred_at__gte=since, occurred_at__lte=run.now)
                .values_list("user_id", "item_key").distinct().order_by())
    bought = set(Event.objects.filter(user__isnull=False, item_key__in=list(restocked), event_type=PURCHASE,
                                      occurred_at__gte=min(restocked.values()), occurred_at__lte=run.now)
                 .values_list("user_id", "item_key", "occurred_at").order_by())
    bought_after = {(u, k) for u, k, t in bought if t >= restocked[k]}
    groups: dict[tuple[int, datetime], list[str]] = defaultdict(list)
    for uid, item in interest:
        if (uid, item) not in bought_after:
            groups[(uid, restocked[item])].append(item)
    return [
        Candidate(uid, "restock:" + ",".join(sorted(items)) + "@" + when.isoformat(),
                  period=when.date().isoformat(), items=sorted(items))
        for (uid, when), items in sorted(groups.items())
    ]


TRIGGERS: dict[str, Callable[[NotificationRule, RunState], list[Candidate]]] = {
    Trigger.RECOMMENDED: recommended_candidates,
    Trigger.ABANDONED_CART: abandoned_cart_candidates,
    Trigger.BACK_IN_STOCK: back_in_stock_candidates,
}


