"""The orchestration of one ``recommend()`` call: cache lookup -> candidates -> rules -> a logged :class:`Result`.

Results are cached per (visitor, slot, parameters); each entry holds the model version and visitor version it was
computed under and counts only while both are current, so a cache hit is one round trip (live version, catalog
generation, visitor versions, visitor state and the entry in one ``get_many``) and makes no database query.

A call with ``exclude`` (a page's later lists skip what its earlier lists showed) also reads the entry of the same
call without exclusions: a list precomputed for the slot holds spare items past its ``n``
(:data:`SPARE_FACTOR`), so when enough of them are not excluded it answers from that entry, filtered, instead of
scoring again. An entry is never served with an excluded item in it.

A live ranker that reads the request's context (``TRAINING["context_features"]``: hour of day, weekday, device,
country) makes a visitor's list depend on the request: its lists are cached per context bucket
(:func:`~personalization.recommenders.features.context_bucket`), under keys that add the bucket, and never under the
plain keys (which precomputation also leaves alone for such a model); a model without context columns keeps the
keys as they always were.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from personalization import runtime, shared_cache
from personalization.conf import settings
from personalization.freshness import key_version, view_version_key, visitor_version_key
from personalization.recommenders.features import context_bucket
from personalization.serving.arms import Assignment, assignment
from personalization.serving.explain import explain_items
from personalization.serving.forgotten import FORGOTTEN_GEN_KEY, is_forgotten
from personalization.serving.items import sync_catalog
from personalization.serving.keys import CATALOG_GEN_KEY, LIVE_KEY, REVISION_KEY, rec_key, state_key
from personalization.serving.live import live_revision, live_token, loaded_system, system_for, version_system
from personalization.serving.log import log_recommendation
from personalization.serving.popular import EMPTY_POPULAR_SECONDS, popular
from personalization.serving.results import Recommendation, Result
from personalization.serving.rules import apply_rules
from personalization.serving.similar import similar_rows
from personalization.serving.slots import spec_or_default
from personalization.serving.state import VisitorState, subject_of, visitor_state
from personalization.subjects import model_subject
from personalization.tracking.context import request_context

logger = logging.getLogger("personalization.serving")
#: The subject id a forgotten person is scored under: no model version has a row for it.
STRANGER = "v:\x00forgotten"
#: A precomputed list holds this many times its ``n`` items: a call that excludes some of them (a page's later
#: list) is answered from the rest.
SPARE_FACTOR = 2


def _context_of(user_or_visitor: Any, context: dict[str, Any] | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    if hasattr(user_or_visitor, "META"):
        try:
            server = request_context(user_or_visitor)
            ctx.update({k: server[k] for k in ("country", "device") if server.get(k)})
        except Exception:  # noqa: BLE001
            logger.warning("Could not read the request context", exc_info=True)
    ctx.update({k: v for k, v in (context or {}).items() if v not in (None, "")})
    ctx.setdefault("hour", timezone.localtime().hour)
    ctx.setdefault("timestamp", timezone.now())  # the request's time, for a ranker with context features
    return ctx


def uses_context(system: Any) -> bool:
    """Whether ``system``'s ranker reads the request's context: then its lists are cached per context bucket."""
    check = getattr(system, "uses_context", None)
    return bool(check()) if callable(check) else False


def _rec_entry(entry: Any, token: str, vv: Any) -> dict[str, Any] | None:
    """The cached entry when it was computed under the live model ``token`` and the visitor version ``vv``."""
    if isinstance(entry, dict) and entry.get("token") == token and entry.get("vv") == vv:
        return entry
    return None


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
    unexcluded: dict[Any, str]  # with exclusions: the same entries' keys without them (else empty)
    arm: Assignment | None = None  # the subject's arm in an A/B test on this slot
    parts: tuple[Any, ...] = ()  # what every key of the call holds before the segment ...
    tail: tuple[Any, ...] = ()  # ... and after it

    def context_keys(self, segment: Any) -> tuple[str, str | None]:
        """(entry key, the same without exclusions or None) of the list for ``segment`` in the request's context
        bucket: where a model whose ranker reads the context caches it."""
        bucket = ("context", *context_bucket(self.ctx))
        key = rec_key(self.subject, (*self.parts, segment, bucket, *self.tail))
        base = rec_key(self.subject, (*self.parts, segment, bucket, [], *self.tail[1:])) if self.unexcluded else None
        return key, base

    @property
    def cache_keys(self) -> list[str]:
        return [LIVE_KEY, REVISION_KEY, CATALOG_GEN_KEY, FORGOTTEN_GEN_KEY, runtime.RUNTIME_KEY,
                visitor_version_key(self.subject),
                view_version_key(self.subject), state_key(self.subject), *self.keys.values(),
                *self.unexcluded.values()]


def _lookup(user_or_visitor: Any, spec: dict[str, Any], n: int, context: dict[str, Any] | None,
            history: list[str] | None, exclude: set[str], item: str | None, category: str | None) -> _Lookup:
    subject = subject_of(user_or_visitor)
    ctx = _context_of(user_or_visitor, context)
    arm = assignment(subject, spec["name"])
    parts = (spec["name"], n, item, category)
    tail = (sorted(exclude), tuple(history or ()), *arm_key_part(arm))
    cold_segment = (ctx.get("country"), ctx.get("device"), ctx.get("hour"))
    segments = [None] if history else [None, cold_segment]
    keys = {seg: rec_key(subject, (*parts, seg, *tail)) for seg in segments}
    unexcluded = ({seg: rec_key(subject, (*parts, seg, [], *tail[1:])) for seg in segments} if exclude else {})
    return _Lookup(subject, ctx, keys, cold_segment, unexcluded, arm, parts, tail)


def arm_key_part(arm: Assignment | None) -> tuple[str, ...]:
    """What an A/B arm adds to a list's cache key (its experiment, arm and version); nothing outside a test, so
    the keys of lists served without one stay what they were."""
    return (arm.key_part,) if arm is not None else ()


def serving_system(arm: Assignment | None, live: str, revision: int = 0) -> tuple[str, int | None, Any]:
    """(token, version id, system) serving a subject: its arm's version in an A/B test, else the live one (with
    its update ``revision`` applied: updates between retrains touch the live version only).

    An arm whose version cannot be loaded is served by version A, then by the live version (logged): never an
    error for the visitor."""
    if arm is None:
        return (live, *system_for(live, revision))
    for token in dict.fromkeys((arm.token, arm.experiment.token_a, live)):
        version_id, system = system_for(live, revision) if token == live else version_system(token, live=live)
        if system is not None:
            if token != arm.token:
                logger.warning("personalization: version of arm %s of experiment %s cannot be loaded; serving %s",
                               arm.arm, arm.experiment.id, token)
            return token, version_id, system
    return (live, *system_for(live, revision))


def _cached_items(got: dict[str, Any], key: str, base_key: str | None, token: str, vv: Any, n: int,
                  exclude: set[str]) -> tuple[dict[str, Any], list[tuple[str, float, str]]] | None:
    """(entry, its first ``n`` items) answering the call from the cache, or None.

    The call's own entry (``key``), else (with exclusions) the entry without them (``base_key``) when it holds
    ``n`` items that are not excluded (a precomputed list's spare items fill the places of the excluded ones).
    """
    hit = _rec_entry(got.get(key), token, vv)
    if hit is not None:
        return hit, list(hit["items"])[:n]
    base = _rec_entry(got.get(base_key), token, vv) if base_key else None
    if base is None:
        return None
    kept = [row for row in base["items"] if row[0] not in exclude]
    return (base, kept[:n]) if len(kept) >= n else None


def recommend(
    user_or_visitor: Any, n: int | None = None, *, slot: str = "", context: dict[str, Any] | None = None,
    history: list[str] | None = None, exclude: Iterable[str] | None = None, item: str | None = None,
    category: str | None = None, explain: bool = False, log: bool = True,
) -> Result:
    """Top-n recommendations for a request, user, ``u:``/``v:`` subject or raw visitor id, with the slot's rules.

    ``history``: item keys (most recent last) to use in addition to the visitor's stored events; ``exclude``: keys
    never to return; ``item``: "more like this item"; ``category``: only this category; ``explain``: fill each
    item's ``explanation`` and (when the live ranker is gradient-boosted) its ``factors``: the list is then computed
    afresh, not read from the cache, because explaining needs the feature rows the ranker saw. ``log=False``: no
    RecommendationLog row (staff looking at a visitor's list). Never raises: on any failure it logs and returns
    popular items (or an empty list).
    """
    rec_id = uuid.uuid4().hex
    subject = "v:"
    arm: Assignment | None = None
    spec = spec_or_default(slot)
    n = max(1, min(int(n or spec["n"]), 100))
    exclude = {str(k) for k in exclude or ()}
    state = VisitorState()
    try:
        lookup = _lookup(user_or_visitor, spec, n, context, history, exclude, item, category)
        subject, ctx, keys, cold_segment = lookup.subject, lookup.ctx, lookup.keys, lookup.cold_segment
        vv_key, vs_key, vstate_key = visitor_version_key(subject), view_version_key(subject), state_key(subject)
        try:
            got = shared_cache.get_many(lookup.cache_keys, near=True)
        except Exception:  # noqa: BLE001
            got = {}
        live = live_token(got.get(LIVE_KEY))
        arm = lookup.arm
        token = arm.token if arm is not None else live  # the version the subject's lists come from
        sync_catalog(got.get(CATALOG_GEN_KEY))
        vv, ttl = key_version(got.get(vv_key), got.get(vs_key))
        state = visitor_state(subject, vv, ttl=ttl, cached=got.get(vstate_key))
        cold = not state.history and not history  # then the list depends on the request's context
        segment = cold_segment if cold else None
        key = keys[segment]
        cached = None if explain else _cached_items(got, key, lookup.unexcluded.get(segment), token, vv, n, exclude)
        if cached is not None and uses_context(loaded_system(token)):
            cached = None  # only a model without context columns writes the plain keys: not this one's list
        served_by = None
        if cached is None:
            served_by = serving_system(arm, live, live_revision(live, got.get(REVISION_KEY)))
            if uses_context(served_by[2]):
                # its lists depend on the request's context: cached per context bucket, never under the plain key
                key, base_key = lookup.context_keys(segment)
                if not explain:
                    try:
                        near = shared_cache.get_many([k for k in (key, base_key) if k], near=True)
                    except Exception:  # noqa: BLE001
                        near = {}
                    cached = _cached_items(near, key, base_key, token, vv, n, exclude)
        if cached is not None and spec["exploration"] and _explored(cached[1]) and runtime.exploration_paused(
                got.get(runtime.RUNTIME_KEY, None)):
            cached = None  # listed while exploring, which staff have paused since: compute it again without
        if cached is not None:
            hit, rows = cached
            items = [Recommendation(k, s, r) for k, s, r in rows]
            result = Result(items, rec_id, hit["model_version"], hit["fallback"], spec["name"], cached=True)
        else:
            used, version_id, system = served_by or serving_system(arm, live,
                                                                   live_revision(live, got.get(REVISION_KEY)))
            stranger = system is not None and is_forgotten(subject, used, got.get(FORGOTTEN_GEN_KEY))
            features: dict[str, Any] | None = {} if explain else None
            items, fallback = produce(system, subject, state, spec, n, ctx, history, exclude, item, category,
                                      forgotten=stranger, features=features)
            if features:
                who = STRANGER if stranger else model_subject(system, subject)
                _attach_factors(items, system, features, [*state.history, *(history or ())], ctx, who)
            if fallback:
                version_id = None if system is None or fallback == "error" else version_id
            result = Result(items, rec_id, version_id, fallback, spec["name"])
            if not items:  # nothing to show yet (a new shop): try again soon, not after the visitor's whole TTL
                ttl = min(ttl, EMPTY_POPULAR_SECONDS)
            if ttl > 0:
                try:
                    # the token of the version that answered: a list served by a fallback never counts as the
                    # arm's own next time
                    entry = {"items": [(r.item, r.score, r.reason) for r in items], "token": used, "vv": vv,
                             "model_version": version_id, "fallback": fallback}
                    shared_cache.set_many({key: entry}, timeout=ttl)
                except Exception:  # noqa: BLE001
                    pass
    except Exception:
        logger.exception("personalization: recommend failed for %s; using the fallback", subject)
        try:
            items = popular(n, exclude | set(state.purchased), {})
        except Exception:  # noqa: BLE001
            logger.exception("personalization: popularity fallback failed too")
            items = []
        result = Result(items, rec_id, None, "error", spec["name"])
    if arm is not None:
        result.experiment, result.arm = arm.experiment.id, arm.arm
    if explain:
        try:
            explain_items(result.items, state, spec)
        except Exception:  # noqa: BLE001
            logger.exception("personalization: could not explain recommendations")
    if log:
        log_recommendation(result, subject)
    return result


def _attach_factors(items: list[Recommendation], system: Any, features: dict[str, Any], history: list[str],
                    ctx: dict[str, Any], who: str) -> None:
    """SHAP sentences per item (monitoring.explanations) of the ranker that ordered ``who``'s list (the model's
    subject; the session ranker's for a visit); an explanation that fails leaves the list as it is."""
    try:
        from personalization.monitoring.explanations import attach_factors

        visit = getattr(system, "ranks_as_visit", None)
        session = bool(visit(who, [h for h in history if isinstance(h, str)])) if callable(visit) else False
        attach_factors(items, system, features, _sentence_values(history, ctx), session=session)
    except Exception:  # noqa: BLE001
        logger.exception("personalization: could not compute SHAP explanations")


def _sentence_values(history: list[str], ctx: dict[str, Any]) -> dict[str, Any]:
    """Placeholders of the explanation sentences: the title of the visitor's latest item, their country, device,
    hour."""
    from personalization.serving.items import item_display

    out = {k: v for k, v in ctx.items() if k in ("country", "device", "hour") and v not in (None, "")}
    if history:
        last = str(history[-1])
        out["last_item"] = str((item_display([last]).get(last) or {}).get("title") or last)
    return out


def excluded_items(spec: dict[str, Any], state: VisitorState, exclude: Iterable[str] = (),
                   item: str | None = None, history: list[str] | None = None) -> set[str]:
    """What a list of ``spec`` for this visitor never shows: ``exclude``, the item of the page, and (as the slot
    says) their purchases, their cart and what they viewed (with the given ``history``)."""
    excluded = set(exclude)
    if spec["exclude_purchased"]:
        excluded.update(state.purchased)
    if spec["exclude_in_cart"]:
        excluded.update(state.in_cart)
    if item:
        excluded.add(item)
    if spec["exclude_viewed"]:  # also what the live model does not know: recent items and the given history
        excluded.update(state.actions)
        excluded.update(h for h in history or () if isinstance(h, str))
    return excluded


def candidate_pool(n: int) -> int:
    """How many candidates the model proposes for a list of ``n`` (the rules and diversity choose among them)."""
    return max(4 * n, settings.RECOMMENDATION_POOL)


def model_candidates(system: Any, subject: str, state: VisitorState, spec: dict[str, Any], excluded: set[str],
                     pool: int, ctx: dict[str, Any], history: list[str] | None = None, forgotten: bool = False,
                     features: dict[str, Any] | None = None) -> list[tuple[str, float, str]]:
    """The model's ``pool`` best candidates for one visitor's list of ``spec``, without ``excluded``: the one call
    both a request and the precompute make, so a precomputed list is the list the request would get (a batch of
    visitors would not be: its matrix products round differently, and a tree ranker can turn a last-bit difference
    of a feature into another order). ``features``: as in :func:`produce`."""
    hist = list(state.history) + [h for h in history or () if isinstance(h, str)]
    # the artifact's pseudonym of the subject; a forgotten person has no training row any more
    who = STRANGER if forgotten else model_subject(system, subject)
    explaining = {"with_features": True} if features is not None else {}
    answer = system.recommend([who], n=pool, histories={who: hist} if hist else None, exclude=excluded or None,
                              context=ctx, repeat=False if spec["exclude_viewed"] else None, **explaining)
    if features is None:
        return answer[0]
    lists, rows = answer
    if rows[0] is not None:
        features.update({key: row for (key, _, _), row in zip(lists[0], rows[0], strict=True)})
    return lists[0]


def produce(system: Any, subject: str, state: VisitorState, spec: dict[str, Any], n: int, ctx: dict[str, Any],
            history: list[str] | None, exclude: set[str], item: str | None, category: str | None,
            candidates: list[tuple[str, float, str]] | None = None,
            forgotten: bool = False, features: dict[str, Any] | None = None) -> tuple[list[Recommendation], str]:
    """Candidates (live model, else popularity) -> rules -> diversity -> exploration; (items, fallback).

    ``fallback`` is "" when the items were picked for this visitor, "popularity" when popular items answered
    (serving's own without a live model, or the live model's for a visitor it knows nothing about), "error" when
    the live model failed. ``forgotten``: the subject was erased after the model was trained, so the model must
    not use their training row (they are scored like a stranger with the same history). ``features`` (a dict, for
    explanations) receives the ranker's input row of each candidate the live model ordered, by item key."""
    excluded = excluded_items(spec, state, exclude, item, history)
    pool = candidate_pool(n)
    fallback = ""
    if candidates is None:
        candidates = []
        if system is not None:
            try:
                if item:
                    rows = similar_rows(system, item, pool + len(excluded))
                    candidates = [(k, float(s), f"similar:{item}") for k, s in rows]
                else:
                    candidates = model_candidates(system, subject, state, spec, excluded, pool, ctx, history,
                                                  forgotten, features)
            except Exception:
                logger.exception("personalization: live model failed for %s; using popularity", subject)
                fallback = "error"
                candidates = []
    # the live model answers a visitor it knows nothing about (no history, not a training user) with popular items
    label = "popularity" if candidates and all(_is_popularity(c[2]) for c in candidates) else ""
    if not candidates:
        fallback = fallback or "popularity"
        candidates = [(r.item, r.score, r.reason) for r in popular(pool + len(excluded), excluded, ctx)]
    chosen = apply_rules(system, spec, candidates, n, excluded, category)
    if len(chosen) < n and not fallback:  # strict rules left too few: fill with popular items that pass them
        taken = excluded | {r.item for r in chosen}
        extra = [(r.item, r.score, r.reason) for r in popular(pool + len(taken), taken, ctx)]
        more = apply_rules(None, {**spec, "pinned": [], "exploration": None}, extra, n - len(chosen), taken, category)
        floor = min((r.score for r in chosen), default=1.0)
        chosen += [Recommendation(r.item, round(floor * 0.5 * r.score, 6), r.reason) for r in more]  # ranked below
    return chosen[:n], fallback or label


def _explored(rows: list[tuple[str, float, str]]) -> bool:
    """Whether a cached list gave a position to exploration."""
    return any(reason.startswith("exploration:") for _, _, reason in rows)


def _is_popularity(reason: str) -> bool:
    """Whether a candidate's reason says it is popular, not picked for the visitor (``popularity:country=FR``)."""
    return reason == "popularity" or reason.startswith("popularity:")
