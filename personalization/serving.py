"""The online service: ``recommend()`` and ``similar_items()`` from the live model, with business rules and caching.

One call runs: cache lookup -> candidates and ranking from the live :class:`RecommenderSystem` -> business rules of
the slot (exclusions, availability, filters, boosts, pinned items, per-category caps) -> diversity (maximal marginal
relevance or category spread) -> exploration (epsilon-greedy or Thompson sampling) -> a :class:`Result` carrying a
``recommendation_id`` and the ``model_version``, logged as a ``RecommendationLog`` row off the request path.

Models: the live version's system is loaded once per process and swapped atomically when another process promotes
a new version: every call compares the live version token published in the cache with the loaded one.

Caching: results are cached per (visitor, slot, parameters); each entry holds the model version and visitor version
it was computed under and counts only while both are current, so a cache hit is one round trip (live version,
visitor versions, visitor state and the entry in one ``get_many``) and makes no database query. The visitor version
changes at once when the visitor acts (:func:`invalidate_visitor`, called by the tracking service for every batch of
events); views only set a view version that the entries follow SETTLE_SECONDS later (:func:`invalidate_events`).
The model version changes when a new model goes live. Nothing is ever purged: stale entries are overwritten or
expire. Item features and display fields sit in an in-process table in front of the cache (:func:`item_features`,
:func:`item_display`). The ``personalization.precompute_recommendations`` task fills the cache for recently active
visitors after promotion.

Nothing here raises to a caller: on any failure it logs and falls back (live model -> popularity of the visitor's
context -> global popularity -> empty list).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from personalization import shared_cache
from personalization.batching import BatchingThread
from personalization.conf import settings

logger = logging.getLogger("personalization.serving")
LIVE_KEY = "personalization:live-version"
_PREFIX = "personalization:"

#: Rules of a slot (``PERSONALIZATION["SLOTS"][slot]``) when the slot does not set them.
SLOT_DEFAULTS: dict[str, Any] = {
    "n": 10,  # list length when the caller gives none
    "exclude_purchased": True,  # never recommend what the visitor bought
    "exclude_in_cart": True,  # nor what is in their cart (add_to_cart not followed by remove/purchase)
    "categories": [],  # only these categories (empty: all)
    "price_min": None,
    "price_max": None,
    "brands": [],  # only these brands (empty: all)
    "boost": {},  # category -> score factor (> 1 promotes, < 1 demotes)
    "pinned": [],  # item keys always shown first (when available and not excluded)
    "max_per_category": None,  # at most this many items of one category
    "diversity": None,  # "mmr" (maximal marginal relevance), "category" (spread categories) or None
    "mmr_lambda": 0.7,  # MMR trade-off: 1 = relevance only, 0 = diversity only
    "exploration": None,  # "epsilon" (uniform), "thompson" (Beta posterior of click rates) or None
    "exploration_rate": 0.1,  # share of the (unpinned) positions given to exploration
}
DIVERSITY = (None, "mmr", "category")
EXPLORATION = (None, "epsilon", "thompson")
#: Strength of an action in explanations ("Because you bought X" beats "Because you viewed X").
ACTION_RANK = {"purchase": 5, "add_to_cart": 4, "rate": 3, "click": 2, "view": 1, "dwell": 1}
ACTION_VERB = {"purchase": "bought", "add_to_cart": "added", "rate": "rated", "click": "clicked",
               "view": "viewed", "dwell": "viewed"}
HISTORY_EVENTS = 300  # recent events read per visitor (history, cart, purchases)
SETTLE_SECONDS = 10  # right after an action the events may still be on their way to the database
_SAFE_KEY = re.compile(r"^[A-Za-z0-9:_.@-]{1,120}$")


class UnknownSlot(ValueError):
    """A slot not in ``PERSONALIZATION["SLOTS"]``."""


@dataclass
class Recommendation:
    item: str
    score: float
    reason: str = ""  # how it was produced, e.g. "itemknn:because product:12", "pinned", "popular:country=FR"
    explanation: str = ""  # the reason in words (``explain=True``), e.g. "Because you viewed Blue mug"


@dataclass
class Result:
    items: list[Recommendation]
    recommendation_id: str
    model_version: int | None
    fallback: str = ""  # "" when the live model answered, else which fallback did
    slot: str = ""
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def keys(self) -> list[str]:
        return [r.item for r in self.items]


# == slots ========================================================================================================
def slot_names() -> list[str]:
    return list(settings.SLOTS)


def default_slot() -> str:
    slots = settings.SLOTS
    return "default" if "default" in slots or not slots else next(iter(slots))


def slot_spec(slot: str | None) -> dict[str, Any]:
    """The rules of ``slot`` (empty: the default slot) over :data:`SLOT_DEFAULTS`; UnknownSlot when not configured."""
    name = slot or default_slot()
    return dict(settings.derived(f"slot:{name}", lambda: _merged_slot_spec(name)))


def _merged_slot_spec(name: str) -> dict[str, Any]:
    slots = settings.SLOTS
    if name not in slots and not (name == "default" and not slots):
        raise UnknownSlot(f"Unknown slot {name!r}; configured slots: {', '.join(slots) or 'none'}.")
    spec = slots.get(name) or {}
    if not isinstance(spec, dict):
        raise ImproperlyConfigured(f'PERSONALIZATION["SLOTS"][{name!r}] must be a dict of rules.')
    unknown = sorted(set(spec) - set(SLOT_DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(f'Unknown rule(s) {unknown} in PERSONALIZATION["SLOTS"][{name!r}]; '
                                   f"valid: {', '.join(SLOT_DEFAULTS)}.")
    merged = {**SLOT_DEFAULTS, **spec, "name": name}
    if merged["diversity"] not in DIVERSITY:
        raise ImproperlyConfigured(f'SLOTS[{name!r}]["diversity"] must be "mmr", "category" or None.')
    if merged["exploration"] not in EXPLORATION:
        raise ImproperlyConfigured(f'SLOTS[{name!r}]["exploration"] must be "epsilon", "thompson" or None.')
    if not 0.0 <= float(merged["exploration_rate"]) <= 1.0:
        raise ImproperlyConfigured(f'SLOTS[{name!r}]["exploration_rate"] must be within 0..1.')
    return merged


# == the live model ===============================================================================================
class _Loaded:
    def __init__(self) -> None:
        self.token: str | None = None
        self.version_id: int | None = None
        self.system: Any = None
        self.failed: dict[str, float] = {}  # token -> time of the last failed load
        self.lock = threading.Lock()


_loaded = _Loaded()
RETRY_FAILED_LOAD_SECONDS = 30.0


def _cache():
    return shared_cache.cache()


def _token_of(version: Any) -> str:
    """Identifies one version row for good (ids can be reused after a database is flushed)."""
    return f"{version.pk}@{version.created_at.timestamp():.6f}" if version is not None else "0"


def _live_token_from_db() -> str:
    from personalization.registry import live_version

    return _token_of(live_version())


def publish_live_version(sender: Any = None, **kwargs: Any) -> None:
    """``model_promoted`` receiver: publish the live version so every process swaps models on its next call."""
    try:
        shared_cache.set_many({LIVE_KEY: _live_token_from_db()}, timeout=None)
    except Exception:  # noqa: BLE001
        logger.warning("Could not publish the live model version", exc_info=True)


def _live_token(cached: Any = None) -> str:
    value = cached
    if value is None:
        try:
            value = _cache().get(LIVE_KEY)
        except Exception:  # noqa: BLE001
            value = None
    if value is None or isinstance(value, int):  # int: published by an older release
        value = _live_token_from_db()
        try:
            shared_cache.set_many({LIVE_KEY: value}, timeout=300)
        except Exception:  # noqa: BLE001
            pass
    return str(value)


def _system_for(token: str) -> tuple[int | None, Any]:
    if token in ("0", ""):
        return None, None
    if _loaded.token == token:
        return _loaded.version_id, _loaded.system
    failed_at = _loaded.failed.get(token)
    if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_LOAD_SECONDS:
        return _loaded.version_id, _loaded.system  # keep serving the previous model meanwhile
    with _loaded.lock:
        if _loaded.token != token:
            from personalization.models import ModelVersion
            from personalization.registry import load_system

            pk = int(token.split("@", 1)[0])
            try:
                version = ModelVersion.objects.get(pk=pk)
                system = load_system(version)
            except Exception:
                _loaded.failed[token] = time.monotonic()
                logger.exception("personalization: could not load model version %s; serving the previous one", pk)
                return _loaded.version_id, _loaded.system
            # swap only once fully loaded: readers see the old or the new (version, system) pair, never a mix
            _loaded.system, _loaded.version_id, _loaded.token = system, pk, token
            _loaded.failed.pop(token, None)
    return _loaded.version_id, _loaded.system


def live_system() -> tuple[int | None, Any]:
    """(version id, system) of the live model, loading or swapping it when the live version changed."""
    return _system_for(_live_token())


# == identity and visitor state ===================================================================================
def subject_of(user_or_visitor: Any) -> str:
    """Model subject id for a user object, a request, a ``u:``/``v:`` string or a raw visitor id."""
    if isinstance(user_or_visitor, str):
        return user_or_visitor if user_or_visitor[:2] in {"u:", "v:"} else f"v:{user_or_visitor}"
    if hasattr(user_or_visitor, "META"):
        from personalization.tracking.identity import get_visitor

        return get_visitor(user_or_visitor).subject
    if getattr(user_or_visitor, "is_authenticated", False):
        return f"u:{user_or_visitor.pk}"
    return "v:"


def _safe(part: str) -> str:
    return part if _SAFE_KEY.match(part) else hashlib.sha1(part.encode()).hexdigest()


def _vv_key(subject: str) -> str:
    return f"{_PREFIX}vv:{_safe(subject)}"


def _vs_key(subject: str) -> str:
    return f"{_PREFIX}vs:{_safe(subject)}"


#: Events that only lengthen the visitor's history: they refresh cached lists after SETTLE_SECONDS, not at once.
SOFT_EVENTS = frozenset({"view", "dwell"})
#: Events that change nothing serving reads (the visitor state ignores them): no invalidation at all.
IGNORED_EVENTS = frozenset({"impression"})


def _bump(subjects: Iterable[str], key: Any) -> None:
    subjects = tuple(s for s in subjects if s and s not in {"u:", "v:"})
    if not subjects:
        return
    now = int(time.time() * 1000)
    try:
        shared_cache.set_many({key(s): now for s in subjects},
                              timeout=max(settings.RECOMMENDATION_CACHE_SECONDS, 60) * 4)
    except Exception:  # noqa: BLE001 - a cache outage must not stop tracking
        logger.warning("Could not invalidate cached recommendations", exc_info=True)


def invalidate_visitor(*subjects: str) -> None:
    """The visitors acted: their cached state and recommendations are stale from now on (one cache round trip).

    The visitor version is the time of the last action in ms, so a result computed right after an action (when the
    action's event may still be in a buffer) is cached only briefly.
    """
    _bump(subjects, _vv_key)


def invalidate_events(events: Iterable[Any]) -> None:
    """Called by the tracking service with every batch of prepared events (``EventData``).

    Actions that change what may be recommended (cart, purchase, rating, click, ...) change the visitor version at
    once. Views (page views of the middleware, tracker views and dwells) only lengthen the history: they set the
    visitor's *view version*, which the cache keys follow once it is SETTLE_SECONDS old (see :func:`_version`), so
    the tags of the next pages are not recomputed for every page view, yet a view shows in the lists within
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
        _bump(sorted(hard), _vv_key)
    soft -= hard
    if soft:
        _bump(sorted(soft), _vs_key)


def _version(vv: Any, vs: Any) -> tuple[Any, int]:
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


def _versions(subjects: Sequence[str]) -> dict[str, tuple[Any, int]]:
    """:func:`_version` of each subject (one cache round trip)."""
    try:
        got = shared_cache.get_many([_vv_key(s) for s in subjects] + [_vs_key(s) for s in subjects])
    except Exception:  # noqa: BLE001
        got = {}
    return {s: _version(got.get(_vv_key(s)), got.get(_vs_key(s))) for s in subjects}


@dataclass
class VisitorState:
    """What serving needs to know about one visitor, read from their events (cached per visitor version)."""

    history: list[str] = field(default_factory=list)  # recent positive item events, oldest first
    actions: dict[str, str] = field(default_factory=dict)  # item -> the visitor's strongest action on it
    purchased: list[str] = field(default_factory=list)
    in_cart: list[str] = field(default_factory=list)


def _subject_filter(subjects: Sequence[str]):
    from django.db.models import Q

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
    from django.db import connections, router

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


def _states_from_db(subjects: Sequence[str]) -> dict[str, VisitorState]:
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


def _state_key(subject: str) -> str:
    return f"{_PREFIX}vstate:{_safe(subject)}"


def _ttl(vv: Any) -> int:
    return _version(vv, None)[1]


_UNREAD = object()


def visitor_state(subject: str, vv: Any = None, *, ttl: int | None = None,
                  cached: Any = _UNREAD) -> VisitorState:
    """The visitor's history, purchases and cart (cached until the visitor acts).

    The entry is ``(version, state)`` under one key per visitor: it counts only while ``vv`` (the version part of
    :func:`_version`) is still the visitor's version, so one read needs no version first. ``ttl``: the lifetime of
    a new entry; ``cached``: the entry when the caller already read it (None: it was not there), else it is read here.
    """
    if subject in {"u:", "v:"}:
        return VisitorState()
    key = _state_key(subject)
    if cached is _UNREAD:
        try:
            cached = _cache().get(key)
        except Exception:  # noqa: BLE001
            cached = None
    if isinstance(cached, tuple) and len(cached) == 2 and cached[0] == vv and isinstance(cached[1], VisitorState):
        return cached[1]
    state = _states_from_db([subject])[subject]
    ttl = _ttl(vv) if ttl is None else ttl
    if ttl > 0:  # 0: caching off (a write would only delete the key)
        try:
            shared_cache.set_many({key: (vv, state)}, timeout=ttl)
        except Exception:  # noqa: BLE001
            pass
    return state


# == catalog lookups ==============================================================================================
_MISSING = {"missing": True}
#: Cache key of the catalog generation: when it changes (or the cache is cleared) every process drops its
#: in-process item table. Read in the same round trip as the live version, so it costs nothing per request.
CATALOG_GEN_KEY = f"{_PREFIX}catalog-gen"
LOCAL_ITEMS_MAX = 500_000  # rows of the in-process item table before it is emptied


class _LocalItems:
    """In-process item table: features and display rows per item key, each with its own expiry.

    It sits in front of the shared cache (``CATALOG_CACHE_SECONDS``): a request whose items are all here makes no
    cache or database round trip for them. Rows expire after ``CATALOG_CACHE_SECONDS`` (half of it when the row came
    from the shared cache, so no row is older than the setting allows by more than half of it); the whole table is
    dropped when the catalog generation published in the cache changes (also after the cache is cleared) and by
    :func:`forget_items` (``catalog.reset_catalog``).
    """

    def __init__(self) -> None:
        self.gen: str | None = None
        self.features: dict[str, tuple[float, dict[str, Any]]] = {}
        self.display: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def clear(self) -> None:
        self.features = {}
        self.display = {}


_local = _LocalItems()


def forget_items() -> None:
    """Drop this process's in-process item table (catalog changes, tests)."""
    _local.clear()


def _sync_catalog(gen: Any) -> None:
    """Drop the in-process item table when the catalog generation in the cache is not the one it was filled under."""
    if gen is None:
        gen = uuid.uuid4().hex
        try:
            added = _cache().add(CATALOG_GEN_KEY, gen, timeout=None)
            shared_cache.forget([CATALOG_GEN_KEY])  # this process's copy held "absent"
            if not added:
                gen = _cache().get(CATALOG_GEN_KEY) or gen
        except Exception:  # noqa: BLE001
            return
    if gen != _local.gen:
        _local.clear()
        _local.gen = gen


def invalidate_catalog() -> None:
    """The catalog changed: every process drops its in-process item table on its next request."""
    try:
        shared_cache.set_many({CATALOG_GEN_KEY: uuid.uuid4().hex}, timeout=None)
    except Exception:  # noqa: BLE001
        logger.warning("Could not publish a new catalog generation", exc_info=True)
    forget_items()


def _cached_rows(keys: list[str], table: dict[str, tuple[float, Any]], prefix: str,
                 load: Any) -> dict[str, Any]:
    """Rows of ``keys`` from the in-process table, else the shared cache, else ``load(missing keys)``."""
    ttl = settings.CATALOG_CACHE_SECONDS
    now = time.monotonic()
    found: dict[str, Any] = {}
    todo: list[str] = []
    for k in keys:
        entry = table.get(k)
        if entry is not None and entry[0] > now:
            found[k] = entry[1]
        else:
            todo.append(k)
    if not todo:
        return found
    cache_keys = {f"{_PREFIX}{prefix}:{_safe(k)}": k for k in todo}
    try:
        cached = shared_cache.get_many(cache_keys)
    except Exception:  # noqa: BLE001
        cached = {}
    shared = {cache_keys[ck]: v for ck, v in cached.items()}
    rest = [k for k in todo if k not in shared]
    fresh = load(rest) if rest else {}
    if fresh and ttl > 0:
        try:
            shared_cache.set_many({f"{_PREFIX}{prefix}:{_safe(k)}": v for k, v in fresh.items()}, timeout=ttl)
        except Exception:  # noqa: BLE001
            pass
    if ttl > 0:
        if len(table) + len(todo) > LOCAL_ITEMS_MAX:
            table.clear()
        for k, v in shared.items():
            table[k] = (now + ttl / 2, v)
        for k, v in fresh.items():
            table[k] = (now + ttl, v)
    found.update(shared)
    found.update(fresh)
    return found


def item_features(keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Catalog features (category, price, brand, available) of existing items, cached CATALOG_CACHE_SECONDS."""
    from personalization.catalog import get_catalog

    def load(todo: list[str]) -> dict[str, dict[str, Any]]:
        rows = {row["item"]: row for row in get_catalog().features(todo)}
        return {k: rows.get(k, _MISSING) for k in todo}

    keys = list(dict.fromkeys(k for k in keys if isinstance(k, str)))
    if not keys:
        return {}
    found = _cached_rows(keys, _local.features, "item", load)
    return {k: v for k, v in found.items() if not v.get("missing")}


def item_display(keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Display fields (title, url, image, price, category, brand) of existing items, cached like the features."""
    from personalization.catalog import get_catalog

    def load(todo: list[str]) -> dict[str, dict[str, Any]]:
        rows = get_catalog().display(todo)
        return {k: rows.get(k, _MISSING) for k in todo}

    keys = list(dict.fromkeys(k for k in keys if isinstance(k, str)))
    if not keys:
        return {}
    found = _cached_rows(keys, _local.display, "display", load)
    return {k: dict(found[k]) for k in keys if k in found and not found[k].get("missing")}


# == recommend ====================================================================================================
def _context_of(user_or_visitor: Any, context: dict[str, Any] | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    if hasattr(user_or_visitor, "META"):
        try:
            from personalization.tracking.context import request_context

            server = request_context(user_or_visitor)
            ctx.update({k: server[k] for k in ("country", "device") if server.get(k)})
        except Exception:  # noqa: BLE001
            logger.warning("Could not read the request context", exc_info=True)
    ctx.update({k: v for k, v in (context or {}).items() if v not in (None, "")})
    ctx.setdefault("hour", timezone.localtime().hour)
    return ctx


def _rec_key(subject: str, parts: Sequence[Any]) -> str:
    """One entry per visitor and parameters; it holds the model token and visitor version it was computed under."""
    digest = hashlib.sha1(repr((subject, *parts)).encode()).hexdigest()
    return f"{_PREFIX}rec:{digest}"


def _rec_entry(entry: Any, token: str, vv: Any) -> dict[str, Any] | None:
    """The cached entry when it was computed under the live model ``token`` and the visitor version ``vv``."""
    if isinstance(entry, dict) and entry.get("token") == token and entry.get("vv") == vv:
        return entry
    return None


def _spec_or_default(slot: str) -> dict[str, Any]:
    try:
        return slot_spec(slot)
    except (UnknownSlot, ImproperlyConfigured) as exc:  # template tags may name slots the host never configured
        logger.warning("personalization: %s Using the default rules.", exc)
        return {**SLOT_DEFAULTS, "name": slot or "default"}


@dataclass
class _Lookup:
    """What one ``recommend`` call reads from the cache (the near cache, else one round trip): the live model, the
    catalog generation, the visitor's versions and state, and both entries the list may be cached under (warm, or
    cold: then the list depends on the request's context). Entries carry the versions they were computed under and
    count only when those are still current."""

    subject: str
    ctx: dict[str, Any]
    keys: dict[Any, str]  # None (warm) or the cold segment -> entry key
    cold_segment: tuple[Any, ...]

    @property
    def cache_keys(self) -> list[str]:
        return [LIVE_KEY, CATALOG_GEN_KEY, _vv_key(self.subject), _vs_key(self.subject), _state_key(self.subject),
                *self.keys.values()]


def _lookup(user_or_visitor: Any, spec: dict[str, Any], n: int, context: dict[str, Any] | None,
                 history: list[str] | None, exclude: set[str], item: str | None, category: str | None) -> _Lookup:
    subject = subject_of(user_or_visitor)
    ctx = _context_of(user_or_visitor, context)
    parts = (spec["name"], n, item, category)
    tail = (sorted(exclude), tuple(history or ()))
    cold_segment = (ctx.get("country"), ctx.get("device"), ctx.get("hour"))
    keys = {None: _rec_key(subject, (*parts, None, *tail))}
    if not history:
        keys[cold_segment] = _rec_key(subject, (*parts, cold_segment, *tail))
    return _Lookup(subject, ctx, keys, cold_segment)


def recommend(
    user_or_visitor: Any, n: int | None = None, *, slot: str = "", context: dict[str, Any] | None = None,
    history: list[str] | None = None, exclude: Iterable[str] | None = None, item: str | None = None,
    category: str | None = None, explain: bool = False,
) -> Result:
    """Top-n recommendations for a request, user, ``u:``/``v:`` subject or raw visitor id, with the slot's rules.

    ``history``: item keys (most recent last) to use in addition to the visitor's stored events; ``exclude``: keys
    never to return; ``item``: "more like this item"; ``category``: only this category; ``explain``: fill each
    item's ``explanation``. Never raises: on any failure it logs and returns popular items (or an empty list).
    """
    rec_id = uuid.uuid4().hex
    subject = "v:"
    spec = _spec_or_default(slot)
    n = max(1, min(int(n or spec["n"]), 100))
    exclude = {str(k) for k in exclude or ()}
    state = VisitorState()
    try:
        lookup = _lookup(user_or_visitor, spec, n, context, history, exclude, item, category)
        subject, ctx, keys, cold_segment = lookup.subject, lookup.ctx, lookup.keys, lookup.cold_segment
        vv_key, vs_key, state_key = _vv_key(subject), _vs_key(subject), _state_key(subject)
        try:
            got = shared_cache.get_many(lookup.cache_keys, near=True)
        except Exception:  # noqa: BLE001
            got = {}
        token = _live_token(got.get(LIVE_KEY))
        _sync_catalog(got.get(CATALOG_GEN_KEY))
        vv, ttl = _version(got.get(vv_key), got.get(vs_key))
        state = visitor_state(subject, vv, ttl=ttl, cached=got.get(state_key))
        cold = not state.history and not history  # then the list depends on the request's context
        key = keys[cold_segment if cold else None]
        hit = _rec_entry(got.get(key), token, vv)
        if hit is not None:
            items = [Recommendation(k, s, r) for k, s, r in hit["items"]]
            result = Result(items, rec_id, hit["model_version"], hit["fallback"], spec["name"], cached=True)
        else:
            version_id, system = _system_for(token)
            items, fallback = _produce(system, subject, state, spec, n, ctx, history, exclude, item, category)
            if fallback:
                version_id = None if system is None or fallback == "error" else version_id
            result = Result(items, rec_id, version_id, fallback, spec["name"])
            if ttl > 0:
                try:
                    entry = {"items": [(r.item, r.score, r.reason) for r in items], "token": token, "vv": vv,
                             "model_version": version_id, "fallback": fallback}
                    shared_cache.set_many({key: entry}, timeout=ttl)
                except Exception:  # noqa: BLE001
                    pass
    except Exception:
        logger.exception("personalization: recommend failed for %s; using the fallback", subject)
        try:
            items = _fallback_items(n, exclude | set(state.purchased), {})
        except Exception:  # noqa: BLE001
            logger.exception("personalization: popularity fallback failed too")
            items = []
        result = Result(items, rec_id, None, "error", spec["name"])
    if explain:
        try:
            explain_items(result.items, state, spec)
        except Exception:  # noqa: BLE001
            logger.exception("personalization: could not explain recommendations")
    log_recommendation(result, subject)
    return result


def _produce(system: Any, subject: str, state: VisitorState, spec: dict[str, Any], n: int, ctx: dict[str, Any],
             history: list[str] | None, exclude: set[str], item: str | None, category: str | None,
             candidates: list[tuple[str, float, str]] | None = None) -> tuple[list[Recommendation], str]:
    """Candidates (live model, else popularity) -> rules -> diversity -> exploration; (items, fallback)."""
    excluded = set(exclude)
    if spec["exclude_purchased"]:
        excluded.update(state.purchased)
    if spec["exclude_in_cart"]:
        excluded.update(state.in_cart)
    if item:
        excluded.add(item)
    pool = max(4 * n, settings.RECOMMENDATION_POOL)
    fallback = ""
    if candidates is None:
        candidates = []
        if system is not None:
            try:
                if item:
                    rows = _similar_rows(system, item, pool + len(excluded))
                    candidates = [(k, float(s), f"similar:{item}") for k, s in rows]
                else:
                    hist = list(state.history) + [h for h in history or () if isinstance(h, str)]
                    candidates = system.recommend([subject], n=pool, histories={subject: hist} if hist else None,
                                                  exclude=excluded or None, context=ctx)[0]
            except Exception:
                logger.exception("personalization: live model failed for %s; using popularity", subject)
                fallback = "error"
                candidates = []
    if not candidates:
        fallback = fallback or "popularity"
        candidates = [(r.item, r.score, r.reason) for r in _popular(pool + len(excluded), excluded, ctx)]
    chosen = apply_rules(system, spec, candidates, n, excluded, category)
    if len(chosen) < n and not fallback:  # strict rules left too few: fill with popular items that pass them
        taken = excluded | {r.item for r in chosen}
        extra = [(r.item, r.score, r.reason) for r in _popular(pool + len(taken), taken, ctx)]
        more = apply_rules(None, {**spec, "pinned": [], "exploration": None}, extra, n - len(chosen), taken, category)
        floor = min((r.score for r in chosen), default=1.0)
        chosen += [Recommendation(r.item, round(floor * 0.5 * r.score, 6), r.reason) for r in more]  # ranked below
    return chosen[:n], fallback


def _passes(spec: dict[str, Any], feat: dict[str, Any], category: str | None) -> bool:
    if not feat.get("available", True):
        return False
    cat = feat.get("category")
    if spec["categories"] and cat not in spec["categories"]:
        return False
    if category and cat != category:
        return False
    price = feat.get("price")
    if spec["price_min"] is not None and (price is None or price < spec["price_min"]):
        return False
    if spec["price_max"] is not None and (price is None or price > spec["price_max"]):
        return False
    if spec["brands"] and feat.get("brand") not in spec["brands"]:
        return False
    return True


def apply_rules(system: Any, spec: dict[str, Any], candidates: Sequence[tuple[str, float, str]], n: int,
                excluded: set[str], category: str | None = None) -> list[Recommendation]:
    """Business rules, diversity and exploration of a slot over scored candidates (best first)."""
    pinned_keys = [k for k in spec["pinned"] if k not in excluded]
    feats = item_features([c[0] for c in candidates] + pinned_keys)
    seen: set[str] = set()
    pinned: list[Recommendation] = []
    for key in pinned_keys:
        feat = feats.get(key)
        if feat is not None and feat.get("available", True) and key not in seen and len(pinned) < n:
            pinned.append(Recommendation(key, 1.0, "pinned"))
            seen.add(key)
    pool: list[tuple[str, float, str]] = []
    for key, score, reason in candidates:
        feat = feats.get(key)
        if key in excluded or key in seen or feat is None or not _passes(spec, feat, category):
            continue
        seen.add(key)
        pool.append((key, float(score), reason))
    if not pool:
        return pinned
    # relevance in [0, 1] (min-max of the model's scores, which may be probabilities, counts or dot products)
    scores = [s for _, s, _ in pool]
    lo, hi = min(scores), max(scores)
    boost = spec["boost"] or {}
    scored = []
    for key, score, reason in pool:
        rel = (score - lo) / (hi - lo) if hi > lo else 1.0
        rel = 0.05 + 0.95 * rel  # the weakest candidate keeps a little relevance for boosts to act on
        factor = float(boost.get(feats[key].get("category"), 1.0))
        scored.append((key, rel * factor, reason))
    scored.sort(key=lambda t: -t[1])
    cats = {k: feats[k].get("category") for k, _, _ in scored}
    counts: dict[Any, int] = {}
    for r in pinned:
        c = feats[r.item].get("category")
        counts[c] = counts.get(c, 0) + 1
    cap = spec["max_per_category"]
    want = n - len(pinned)
    chosen = _select(system, spec, scored, cats, counts, cap, want)
    chosen = _explore(spec, chosen, [t for t in scored if t[0] not in {c[0] for c in chosen}], cats, counts, cap)
    top = max((s for _, s, _ in chosen), default=1.0)
    for r in pinned:  # pinned items come first, so they score highest
        r.score = round(max(1.0, top), 6)
    return pinned + [Recommendation(k, round(float(s), 6), r) for k, s, r in chosen]


def _select(system: Any, spec: dict[str, Any], scored: list[tuple[str, float, str]], cats: dict[str, Any],
            counts: dict[Any, int], cap: int | None, want: int) -> list[tuple[str, float, str]]:
    """Pick ``want`` items: by relevance, maximal marginal relevance or category spread, within the category cap."""
    diversity = spec["diversity"]
    chosen: list[tuple[str, float, str]] = []
    if want <= 0:
        return chosen
    if diversity == "mmr" and system is not None and len(scored) > 1:
        sims = system.item_similarity([k for k, _, _ in scored])
        lam = float(spec["mmr_lambda"])
        remaining = list(range(len(scored)))
        picked: list[int] = []
        while remaining and len(picked) < want:
            best, best_value = None, None
            for i in remaining:
                if cap is not None and counts.get(cats[scored[i][0]], 0) >= cap:
                    continue
                penalty = max((float(sims[i, j]) for j in picked), default=0.0)
                value = lam * scored[i][1] - (1 - lam) * penalty
                if best_value is None or value > best_value:
                    best, best_value = i, value
            if best is None:
                break
            remaining.remove(best)
            picked.append(best)
            c = cats[scored[best][0]]
            counts[c] = counts.get(c, 0) + 1
        return [scored[i] for i in picked]
    remaining = list(scored)
    while remaining and len(chosen) < want:
        if diversity == "category":  # halve an item's relevance for every item of its category already shown
            best = max((t for t in remaining if cap is None or counts.get(cats[t[0]], 0) < cap),
                       key=lambda t: t[1] * 0.5 ** counts.get(cats[t[0]], 0), default=None)
        else:
            best = next((t for t in remaining if cap is None or counts.get(cats[t[0]], 0) < cap), None)
        if best is None:
            break
        remaining.remove(best)
        chosen.append(best)
        counts[cats[best[0]]] = counts.get(cats[best[0]], 0) + 1
    return chosen


_rng = random.Random()


def seed_exploration(seed: int | None) -> None:
    """Make exploration reproducible (tests, simulations); None re-seeds from the OS."""
    _rng.seed(seed)


def _explore(spec: dict[str, Any], chosen: list[tuple[str, float, str]], rest: list[tuple[str, float, str]],
             cats: dict[str, Any], counts: dict[Any, int], cap: int | None) -> list[tuple[str, float, str]]:
    """Give each position, with probability ``exploration_rate``, to a candidate outside the list."""
    method, rate = spec["exploration"], float(spec["exploration_rate"])
    if not method or rate <= 0 or not rest:
        return chosen
    stats = _click_stats() if method == "thompson" else {}
    out = list(chosen)
    for pos in range(len(out)):
        if not rest or _rng.random() >= rate:
            continue
        old_cat = cats[out[pos][0]]
        allowed = [t for t in rest if cap is None or cats[t[0]] == old_cat or counts.get(cats[t[0]], 0) < cap]
        if not allowed:
            continue
        if method == "epsilon":
            pick = _rng.choice(allowed)
        else:  # Thompson: the highest draw from each candidate's Beta posterior of its click rate
            def draw(t: tuple[str, float, str]) -> float:
                shown, clicked = stats.get(t[0], (0, 0))
                return _rng.betavariate(1 + clicked, 1 + max(shown - clicked, 0))

            pick = max(allowed, key=draw)
        rest.remove(pick)
        counts[old_cat] = counts.get(old_cat, 1) - 1
        counts[cats[pick[0]]] = counts.get(cats[pick[0]], 0) + 1
        out[pos] = (pick[0], pick[1], f"exploration:{method}")
    return out


def _click_stats() -> dict[str, tuple[int, int]]:
    """Impressions and clicks per item over the last 30 days (cached 10 minutes) for Thompson sampling."""
    from django.db.models import Count

    from personalization.models import Event

    key = f"{_PREFIX}clickstats:v1"
    try:
        stats = _cache().get(key)
    except Exception:  # noqa: BLE001
        stats = None
    if stats is None:
        since = timezone.now() - timedelta(days=30)
        rows = (Event.objects.filter(occurred_at__gte=since, event_type__in=["impression", "click"])
                .exclude(item_key="").values("item_key", "event_type").annotate(c=Count("id")).order_by())
        raw: dict[str, list[int]] = {}
        for row in rows:
            raw.setdefault(row["item_key"], [0, 0])[0 if row["event_type"] == "impression" else 1] += row["c"]
        stats = {k: (max(v[0], v[1]), v[1]) for k, v in raw.items()}
        try:
            _cache().set(key, stats, timeout=600)
        except Exception:  # noqa: BLE001
            pass
    return stats


# == popularity (no live model) ===================================================================================
def _popular_rows(segment: tuple[str, Any] | None) -> list[tuple[str, int]]:
    from django.db.models import Count

    from personalization.models import Event

    key = f"{_PREFIX}popular:v2:{_safe(f'{segment[0]}={segment[1]}') if segment else 'all'}"
    try:
        popular = _cache().get(key)
    except Exception:  # noqa: BLE001
        popular = None
    if popular is None:
        base = Event.objects.exclude(item_key="").exclude(event_type__in=["impression", "remove_from_cart"])
        if segment is not None:
            name, value = segment
            base = base.filter(occurred_at__hour=int(value)) if name == "hour" else base.filter(
                **{f"context__{name}": value})
        since = timezone.now() - timedelta(days=30)
        rows = base.filter(occurred_at__gte=since).values("item_key").annotate(c=Count("id")).order_by("-c")[:200]
        popular = [(r["item_key"], r["c"]) for r in rows]
        if not popular:  # an imported history may be older than 30 days
            rows = base.values("item_key").annotate(c=Count("id")).order_by("-c")[:200]
            popular = [(r["item_key"], r["c"]) for r in rows]
        try:
            _cache().set(key, popular, timeout=600)
        except Exception:  # noqa: BLE001
            pass
    return popular


def _popular(n: int, exclude: set[str], context: dict[str, Any] | None = None) -> list[Recommendation]:
    """Most interacted-with items of the last 30 days in the visitor's country, device or hour, else overall."""
    context = context or {}
    for name in ("country", "device", "hour"):
        value = context.get(name)
        if value in (None, "") or (name == "hour" and not str(value).isdigit()):
            continue
        if name != "hour" and not _SAFE_KEY.match(str(value)):
            continue
        rows = [(k, c) for k, c in _popular_rows((name, value)) if k not in exclude]
        if len(rows) >= n:
            return [Recommendation(k, float(c), f"popular:{name}={value}") for k, c in rows[:n]]
    return [Recommendation(k, float(c), "popular") for k, c in _popular_rows(None) if k not in exclude][:n]


def _fallback_items(n: int, exclude: set[str], ctx: dict[str, Any]) -> list[Recommendation]:
    return _popular(n, exclude, ctx)


# == explanations =================================================================================================
def explain_items(items: Sequence[Recommendation], state: VisitorState, spec: dict[str, Any]) -> None:
    """Fill ``explanation`` from each item's true reason, naming the history item behind it when there is one."""

    referenced = set()
    for r in items:
        if ":because " in r.reason:
            referenced.add(r.reason.split(":because ", 1)[1])
        elif r.reason.startswith("similar:"):
            referenced.add(r.reason[len("similar:"):])
    display = item_display(referenced | {r.item for r in items}) if items else {}
    boost = spec.get("boost") or {}
    for r in items:
        r.explanation = _explain(r.reason, display, state)
        cat = (display.get(r.item) or {}).get("category")
        if cat in boost and float(boost[cat]) > 1 and not r.reason.startswith(("pinned", "exploration")):
            r.explanation += f" (the shop promotes {cat})"


def _title(key: str, display: dict[str, dict[str, Any]]) -> str:
    return str((display.get(key) or {}).get("title") or key)


def _explain(reason: str, display: dict[str, dict[str, Any]], state: VisitorState) -> str:
    source, _, detail = reason.partition(":")
    if detail.startswith("because "):
        key = detail[len("because "):]
        action = state.actions.get(key, "")
        verb = ACTION_VERB.get(action, "showed interest in")
        cart = " to your cart" if action == "add_to_cart" else ""
        return f"Because you {verb} {_title(key, display)}{cart}"
    if source == "similar":
        return f"Similar to {_title(detail, display)}"
    if source == "pinned":
        return "Pinned by the shop"
    if source == "exploration":
        how = "at random" if detail == "epsilon" else "for its uncertain click rate"
        return f"Exploring: picked {how} among your candidates to learn what you like"
    if source in ("popularity", "popular"):
        name, _, value = detail.partition("=")
        if name == "country":
            return f"Popular in {value}"
        if name == "device":
            return f"Popular on {value}"
        if name == "hour":
            return f"Popular around {int(value):02d}:00"
        return "Popular in the shop"
    if source in ("als", "bpr"):
        return "Liked by shoppers with tastes like yours"
    if source in ("itemknn", "item2vec", "content", "ease"):
        return "Related to items you interacted with"
    return f"Chosen by the {source} model"


# == the recommendation log =======================================================================================
_Served = tuple[str, str, str, "int | None", tuple["Recommendation", ...], str, float]


def _log_row(served: _Served) -> dict[str, Any]:
    rec_id, subject, slot, version, items, fallback, created = served
    return {
        "id": rec_id, "subject": subject[:80], "slot": slot[:64], "model_version_id": version,
        "items": [{"item": r.item, "score": r.score, "reason": r.reason} for r in items],
        "fallback": fallback[:32], "created_at": datetime.fromtimestamp(created, tz=dt_timezone.utc),
    }


#: PostgreSQL: the whole batch as one JSON document, expanded by the server. Django's bulk_create sends one array
#: per column there, and psycopg escapes every quote of the items' JSON with a regular expression in Python: about
#: 0.3 ms of the writer thread's time per row, taken from the request threads (the GIL) of a busy worker.
_LOG_INSERT_SQL = (
    "INSERT INTO {table} (id, subject, slot, model_version_id, items, fallback, created_at) "
    "SELECT id, subject, slot, model_version_id, items, fallback, created_at FROM jsonb_to_recordset(%s::jsonb) "
    "AS row(id text, subject text, slot text, model_version_id bigint, items jsonb, fallback text, "
    "created_at timestamptz) ON CONFLICT (id) DO NOTHING"
)


def _write_logs(served: list[_Served]) -> None:
    from django.db import connections, router

    from personalization.models import RecommendationLog

    db = router.db_for_write(RecommendationLog)
    connection = connections[db]
    if connection.vendor != "postgresql":
        RecommendationLog.objects.using(db).bulk_create([RecommendationLog(**_log_row(s)) for s in served],
                                                        ignore_conflicts=True)
        return
    rows = [_log_row(s) for s in served]
    for row in rows:
        row["created_at"] = row["created_at"].isoformat()
    sql = _LOG_INSERT_SQL.format(table=connection.ops.quote_name(RecommendationLog._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(rows)])


log_writer = BatchingThread("personalization-reclog", _write_logs)
atexit.register(log_writer.flush)


def log_recommendation(result: Result, subject: str) -> None:
    """Record the served list for attribution: in the background (default), after commit (inline), or not.

    The request thread only captures the list; the row is built by the writer (off the request's path)."""
    mode = settings.RECOMMENDATION_LOG_WRITE
    if mode == "off":
        return
    served: _Served = (result.recommendation_id, subject, result.slot, result.model_version, tuple(result.items),
                       result.fallback, time.time())
    try:
        if mode == "inline":
            from django.db import transaction

            transaction.on_commit(lambda: _write_logs([served]))
        else:
            log_writer.submit(served)
    except Exception:  # noqa: BLE001
        logger.exception("personalization: could not log recommendation %s", result.recommendation_id)


# == similar items ================================================================================================
class _SimilarMemo:
    """``system.similar_items`` per (item, n) for the loaded system: it depends on the model alone, so a product
    page does not recompute it for every view. Emptied when the system changes or after SIMILAR_MEMO_MAX rows."""

    def __init__(self) -> None:
        self.system: Any = None
        self.rows: dict[tuple[str, int], list[tuple[str, float]]] = {}
        self.lock = threading.Lock()


_similar_memo = _SimilarMemo()
SIMILAR_MEMO_MAX = 20_000


def _similar_rows(system: Any, item: str, n: int) -> list[tuple[str, float]]:
    memo = _similar_memo
    if memo.system is system:
        rows = memo.rows.get((item, n))
        if rows is not None:
            return list(rows)
    rows = system.similar_items([item], n=n)[0]
    with memo.lock:
        if memo.system is not system or len(memo.rows) >= SIMILAR_MEMO_MAX:
            memo.system, memo.rows = system, {}
        memo.rows[(item, n)] = list(rows)
    return rows


def similar_items(item: str, n: int = 10) -> list[Recommendation]:
    """Available items like ``item`` from the live model; empty when there is no live model or the item is unknown."""
    try:
        _, system = live_system()
        if system is None:
            return []
        rows = _similar_rows(system, item, n)
        return [Recommendation(key, float(score), f"similar:{item}") for key, score in rows]
    except Exception:
        logger.exception("personalization: similar items failed for %s", item)
        return []


# == precomputation ===============================================================================================
def precompute(days: int | None = None, slots: Sequence[str] | None = None, limit: int | None = None,
               batch_size: int | None = None) -> dict[str, int]:
    """Fill the cache for visitors active in the last ``days``: batched scoring, then each slot's rules.

    Entries use the same keys as :func:`recommend` with the slot's default ``n`` and no item/category, so the
    visitors' next requests are cache hits. Returns counts.
    """
    from personalization.models import Event

    days = settings.PRECOMPUTE_DAYS if days is None else days
    limit = settings.PRECOMPUTE_MAX_VISITORS if limit is None else limit
    batch_size = batch_size or settings.PRECOMPUTE_BATCH_SIZE
    token = _live_token()
    version_id, system = _system_for(token)
    if system is None:
        return {"visitors": 0, "entries": 0}
    try:
        _sync_catalog(_cache().get(CATALOG_GEN_KEY))
    except Exception:  # noqa: BLE001
        pass
    specs = [slot_spec(s) for s in (slots or settings.PRECOMPUTE_SLOTS or slot_names() or ["default"])]
    since = timezone.now() - timedelta(days=days)
    recent = (Event.objects.filter(occurred_at__gte=since).exclude(item_key="")
              .values_list("user_id", "visitor_id").order_by("-occurred_at"))
    subjects: list[str] = []
    seen: set[str] = set()
    for user_id, visitor_id in recent.iterator(chunk_size=5000):
        subject = f"u:{user_id}" if user_id else f"v:{visitor_id}"
        if subject not in seen:
            seen.add(subject)
            subjects.append(subject)
            if len(subjects) >= limit:
                break
    entries = 0
    for start in range(0, len(subjects), batch_size):
        batch = subjects[start:start + batch_size]
        versions = _versions(batch)
        states = _states_from_db(batch)
        histories = {s: st.history for s, st in states.items() if st.history}
        pool = max(4 * max(int(sp["n"]) for sp in specs), settings.RECOMMENDATION_POOL)
        rows = system.recommend(batch, n=pool, histories=histories or None)
        to_cache: dict[int, dict[str, Any]] = {}
        for subject, candidates in zip(batch, rows, strict=True):
            vv, ttl = versions[subject]
            state = states[subject]
            to_cache.setdefault(ttl, {})[_state_key(subject)] = (vv, state)
            if not state.history:
                continue  # a cold visitor's list depends on the request's context
            for spec in specs:
                n = int(spec["n"])
                items, fallback = _produce(system, subject, state, spec, n, {}, None, set(), None, None,
                                           candidates=list(candidates))
                key = _rec_key(subject, (spec["name"], n, None, None, None, [], ()))
                to_cache.setdefault(ttl, {})[key] = {"items": [(r.item, r.score, r.reason) for r in items],
                                                     "token": token, "vv": vv,
                                 "model_version": version_id if not fallback else None, "fallback": fallback}
        for ttl, group in to_cache.items():
            try:
                shared_cache.set_many(group, timeout=ttl)
            except Exception:  # noqa: BLE001
                logger.warning("Could not store precomputed recommendations", exc_info=True)
            entries += sum(1 for k in group if k.startswith(f"{_PREFIX}rec:"))
    return {"visitors": len(subjects), "entries": entries}
