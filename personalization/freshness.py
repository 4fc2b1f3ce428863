"""Freshness of serving's cached entries: the per-visitor version keys tracking bumps and serving reads.

Every cached visitor state and list counts only while the versions it was computed under are current. The visitor
version changes at once when the visitor acts (:func:`invalidate_visitor`); views only set a view version that the
entries follow SETTLE_SECONDS later (:func:`invalidate_events`). Nothing is ever purged: stale entries are
overwritten or expire. It lives outside ``serving/`` because the tracking service writes it and serving reads it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from personalization import shared_cache
from personalization.circuit import CircuitOpen
from personalization.conf import settings

logger = logging.getLogger("personalization.serving")

#: Prefix of every key serving writes to the cache.
PREFIX = "personalization:"
#: Key parts used as they are; anything else is hashed.
SAFE_KEY = re.compile(r"^[A-Za-z0-9:_.@-]{1,120}$")
SETTLE_SECONDS = 10  # right after an action the events may still be on their way to the database
#: Events that only lengthen the visitor's history: they refresh cached lists after SETTLE_SECONDS, not at once.
SOFT_EVENTS = frozenset({"view", "dwell"})
#: Events that change nothing serving reads (the visitor state ignores them): no invalidation at all.
IGNORED_EVENTS = frozenset({"impression"})


def safe_part(part: str) -> str:
    """``part`` as a cache key part: as it is when short and plain, else its SHA-1."""
    return part if SAFE_KEY.match(part) else hashlib.sha1(part.encode()).hexdigest()


def visitor_version_key(subject: str) -> str:
    """Cache key of the subject's visitor version (time of their last action, in ms)."""
    return f"{PREFIX}vv:{safe_part(subject)}"


def view_version_key(subject: str) -> str:
    """Cache key of the subject's view version (time of their last view, in ms)."""
    return f"{PREFIX}vs:{safe_part(subject)}"


def _bump(subjects: Iterable[str], key: Callable[[str], str]) -> None:
    subjects = tuple(s for s in subjects if s and s not in {"u:", "v:"})
    if not subjects:
        return
    now = int(time.time() * 1000)
    try:
        shared_cache.set_many({key(s): now for s in subjects},
                              timeout=max(settings.RECOMMENDATION_CACHE_SECONDS, 60) * 4)
    except Exception as exc:  # noqa: BLE001 - a cache outage must not stop tracking
        logger.warning("Could not invalidate cached recommendations: %s", exc,
                       exc_info=not isinstance(exc, CircuitOpen))


def invalidate_visitor(*subjects: str) -> None:
    """The visitors acted: their cached state and recommendations are stale from now on (one cache round trip).

    The visitor version is the time of the last action in ms, so a result computed right after an action (when the
    action's event may still be in a buffer) is cached only briefly.
    """
    _bump(subjects, visitor_version_key)


def invalidate_events(events: Iterable[Any]) -> None:
    """Called by the tracking service with every batch of prepared events (``EventData``).

    Actions that change what may be recommended (cart, purchase, rating, click, ...) change the visitor version at
    once. Views (page views of the middleware, tracker views and dwells) only lengthen the history: they set the
    visitor's *view version*, which the cache keys follow once it is SETTLE_SECONDS old (see :func:`key_version`),
    so the tags of the next pages are not recomputed for every page view, yet a view shows in the lists within
    SETTLE_SECONDS. Impressions and events without an item change nothing serving reads and invalidate nothing.
    """
    hard: set[str] = set()
    soft: set[str] = set()
    for event in events:
        kind = getattr(event, "event_type", "")
        if kind in IGNORED_EVENTS or not getattr(event, "item_key", ""):
            continue
        target = soft if kind in SOFT_EVENTS else hard
        if getattr(event, "user_id", None):
            target.add(f"u:{event.user_id}")
        if getattr(event, "visitor_id", ""):
            target.add(f"v:{event.visitor_id}")
    if hard:
        _bump(sorted(hard), visitor_version_key)
    soft -= hard
    if soft:
        _bump(sorted(soft), view_version_key)


def key_version(vv: Any, vs: Any) -> tuple[Any, int]:
    """(version part of the cache keys, their TTL) from the visitor version ``vv`` and the view version ``vs``.

    Within SETTLE_SECONDS of a view the keys stay on a "settling" version whose entries live SETTLE_SECONDS at
    most (so a view is reflected within SETTLE_SECONDS however often the visitor views pages); afterwards they
    include the view version. Within SETTLE_SECONDS of an action entries also live SETTLE_SECONDS at most (its events
    may still be on their way to the database).
    """
    ttl = settings.RECOMMENDATION_CACHE_SECONDS
    now = time.time() * 1000
    try:
        if vv and now - float(vv) < SETTLE_SECONDS * 1000:
            ttl = min(ttl, SETTLE_SECONDS)
        if not vs:
            return vv, ttl
        if now - float(vs) < SETTLE_SECONDS * 1000:
            return f"{vv or 0}~", min(ttl, SETTLE_SECONDS)
    except (TypeError, ValueError):
        return vv, ttl
    return f"{vv or 0}.{vs}", ttl


def key_versions(subjects: Sequence[str]) -> dict[str, tuple[Any, int]]:
    """:func:`key_version` of each subject (one cache round trip)."""
    try:
        got = shared_cache.get_many([visitor_version_key(s) for s in subjects]
                                    + [view_version_key(s) for s in subjects])
    except Exception:  # noqa: BLE001
        got = {}
    return {s: key_version(got.get(visitor_version_key(s)), got.get(view_version_key(s))) for s in subjects}
