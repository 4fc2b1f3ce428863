"""Identity and visitor state: who is asking (:func:`subject_of`) and what they did (:func:`visitor_state`).

The state (recent history, strongest action per item, purchases, cart) is read from the visitor's events and cached
under the visitor's version (``personalization.freshness``), so it is read again only after the visitor acts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, router
from django.db.models import Q

from personalization import shared_cache
from personalization.conf import settings
from personalization.freshness import key_version
from personalization.serving.keys import state_key
from personalization.tracking.identity import get_visitor

#: Strength of an action (explanations say "Because you bought X" rather than "Because you viewed X").
ACTION_RANK = {"purchase": 5, "add_to_cart": 4, "rate": 3, "click": 2, "view": 1, "dwell": 1}
HISTORY_EVENTS = 300  # recent events read per visitor (history, cart, purchases)


def subject_of(user_or_visitor: Any) -> str:
    """Model subject id for a user object, a request, a ``u:``/``v:`` string or a raw visitor id."""
    if isinstance(user_or_visitor, str):
        return user_or_visitor if user_or_visitor[:2] in {"u:", "v:"} else f"v:{user_or_visitor}"
    if hasattr(user_or_visitor, "META"):
        return get_visitor(user_or_visitor).subject
    if getattr(user_or_visitor, "is_authenticated", False):
        return f"u:{user_or_visitor.pk}"
    return "v:"


@dataclass
class VisitorState:
    """What serving needs to know about one visitor, read from their events (cached per visitor version)."""

    history: list[str] = field(default_factory=list)  # recent positive item events, oldest first
    actions: dict[str, str] = field(default_factory=dict)  # item -> the visitor's strongest action on it
    purchased: list[str] = field(default_factory=list)
    in_cart: list[str] = field(default_factory=list)


def _subject_filter(subjects: Sequence[str]) -> Q:
    users = [int(s[2:]) for s in subjects if s.startswith("u:") and s[2:].isdigit()]
    visitors = [s[2:] for s in subjects if s.startswith("v:") and s[2:]]
    q = Q(pk__in=[])
    if users:
        q |= Q(user_id__in=users)
    if visitors:
        q |= Q(visitor_id__in=visitors)
    return q


_RECENT_SQL: dict[tuple[str, str, int], tuple[str, list[Any], int]] = {}


def _recent_events(subject: str) -> list[tuple[str, str]]:
    """(item, event type) of one subject's latest HISTORY_EVENTS item events, newest first.

    Every uncached recommendation runs this query, so its SQL is compiled by the ORM once per database and kind of
    subject (user or visitor), and each call only executes it: building the queryset cost as much as running it.
    """
    from personalization.models import Event

    if subject.startswith("u:"):
        if not subject[2:].isdigit():
            return []
        field_name, ident, marker = "user_id", int(subject[2:]), -918_273_645
    else:
        field_name, ident, marker = "visitor_id", subject[2:], "\x00subject"  # markers: never sent to the database
    db = router.db_for_read(Event)
    compiled = _RECENT_SQL.get((db, field_name, HISTORY_EVENTS))
    if compiled is None:
        qs = (Event.objects.using(db).filter(**{field_name: marker}).exclude(item_key="")
              .exclude(event_type="impression").order_by("-occurred_at", "-id")[:HISTORY_EVENTS]
              .values_list("item_key", "event_type"))
        sql, params = qs.query.sql_with_params()
        compiled = (sql, list(params), list(params).index(marker))
        _RECENT_SQL[(db, field_name, HISTORY_EVENTS)] = compiled
    sql, params, at = compiled
    params = [*params[:at], ident, *params[at + 1:]]
    with connections[db].cursor() as cursor:
        cursor.execute(sql, params)
        return [(item, event) for item, event in cursor.fetchall()]


def states_from_db(subjects: Sequence[str]) -> dict[str, VisitorState]:
    """One query for a batch of subjects: their recent item events, newest first, at most HISTORY_EVENTS each."""
    from personalization.models import Event

    weights = settings.event_weights
    rows: dict[str, list[tuple[str, str]]] = {s: [] for s in subjects}
    if len(subjects) == 1:  # one subject (serving): one index range, two columns, precompiled SQL
        rows[subjects[0]] = _recent_events(subjects[0])
    else:
        qs = (Event.objects.filter(_subject_filter(subjects)).exclude(item_key="").exclude(event_type="impression")
              .order_by("-occurred_at", "-id"))
        wanted = set(subjects)
        for user_id, visitor_id, item, kind in qs.values_list("user_id", "visitor_id", "item_key", "event_type"):
            for subject in (f"u:{user_id}" if user_id else None, f"v:{visitor_id}" if visitor_id else None):
                if subject in wanted and len(rows[subject]) < HISTORY_EVENTS:
                    rows[subject].append((item, kind))
    length = settings.SESSION_HISTORY_LENGTH
    out = {}
    for subject, events in rows.items():
        state = VisitorState()
        cart: dict[str, bool] = {}
        purchased: dict[str, None] = {}
        for item, kind in reversed(events):  # oldest first
            if weights.get(kind, 0.0) > 0:
                state.history.append(item)
            if ACTION_RANK.get(kind, 0) > ACTION_RANK.get(state.actions.get(item, ""), 0):
                state.actions[item] = kind
            if kind == "add_to_cart":
                cart[item] = True
            elif kind in ("remove_from_cart", "purchase"):
                cart.pop(item, None)
            if kind == "purchase":
                purchased[item] = None
        state.history = state.history[-length:] if length > 0 else []  # 0: no session history
        state.purchased = list(purchased)
        state.in_cart = list(cart)
        out[subject] = state
    return out


_UNREAD = object()


def visitor_state(subject: str, vv: Any = None, *, ttl: int | None = None,
                  cached: Any = _UNREAD) -> VisitorState:
    """The visitor's history, purchases and cart (cached until the visitor acts).

    The entry is ``(version, state)`` under one key per visitor: it counts only while ``vv`` (the version part of
    :func:`personalization.freshness.key_version`) is still the visitor's version, so one read needs no version
    first. ``ttl``: the lifetime of a new entry; ``cached``: the entry when the caller already read it (None: it was
    not there), else it is read here.
    """
    if subject in {"u:", "v:"}:
        return VisitorState()
    key = state_key(subject)
    if cached is _UNREAD:
        cached = shared_cache.get(key)
    if isinstance(cached, tuple) and len(cached) == 2 and cached[0] == vv and isinstance(cached[1], VisitorState):
        return cached[1]
    state = states_from_db([subject])[subject]
    ttl = key_version(vv, None)[1] if ttl is None else ttl
    if ttl > 0:  # 0: caching off (a write would only delete the key)
        try:
            shared_cache.set_many({key: (vv, state)}, timeout=ttl)
        except Exception:  # noqa: BLE001
            pass
    return state
