"""Precomputation: fill the cache for recently active visitors, so their next requests are cache hits.

Run by the ``personalization.precompute_recommendations`` task (after a promotion, when configured).

One run per live version at a time, under a lock with a heartbeat (:mod:`personalization.run_locks`): a second
trigger for the same version returns at once, a run that died (a killed worker) frees the lock within its TTL and
the next run reports it (``previous_run_died``), and a run whose version stops being live before it ends stops at
its next batch (``superseded``): the newer version's own run fills the cache for it.

A version whose ranker reads the request's context (``TRAINING["context_features"]``) is skipped: its lists depend
on the hour, day, device and country of the request, which are unknown ahead of it, and serving caches them per
context bucket as they are asked for (``orchestration``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.utils import timezone

from personalization import shared_cache
from personalization.conf import settings
from personalization.freshness import key_versions
from personalization.run_locks import RunLock
from personalization.serving.arms import assignment
from personalization.serving.forgotten import forgotten_among
from personalization.serving.items import sync_catalog
from personalization.serving.keys import CATALOG_GEN_KEY, REC_PREFIX, rec_key, state_key
from personalization.serving.live import live_revision, live_token, system_for
from personalization.serving.orchestration import (
    SPARE_FACTOR,
    arm_key_part,
    candidate_pool,
    excluded_items,
    model_candidates,
    produce,
    serving_system,
    uses_context,
)
from personalization.serving.slots import slot_names, slot_spec
from personalization.serving.state import states_from_db

logger = logging.getLogger("personalization.serving")


def precompute(days: int | None = None, slots: Sequence[str] | None = None, limit: int | None = None,
               batch_size: int | None = None) -> dict[str, int]:
    """Fill the cache for visitors active in the last ``days``: each visitor's candidates, then each slot's rules.

    Entries use the same keys as :func:`personalization.serving.recommend` with the slot's default ``n`` and no
    item/category, so the visitors' next requests are cache hits. Each holds ``SPARE_FACTOR`` times ``n`` items: a
    page's later list, which excludes what its earlier lists showed, is answered from the spare ones. Visitors
    served by a version whose ranker reads the request's context get no entry (see the module docstring).

    Returns counts (``visitors``, ``entries``), plus ``skipped`` when another run fills the cache for the same
    version, ``superseded`` when another version went live meanwhile (the run stopped early) and
    ``previous_run_died`` (its run record) when the run before this one stopped sending heartbeats.
    """
    token = live_token()
    with RunLock(f"precompute:{token}") as lock:
        if not lock.held:
            logger.info("precompute: another run is filling the cache for this version; skipping")
            return {"visitors": 0, "entries": 0, "skipped": "another run is filling the cache for this version"}
        result = _precompute(token, days, slots, limit, batch_size)
        if lock.previous is not None:
            result["previous_run_died"] = lock.previous
        return result


def _precompute(token: str, days: int | None, slots: Sequence[str] | None, limit: int | None,
                batch_size: int | None) -> dict[str, Any]:
    """The body of :func:`precompute` for the live version ``token``, run under its lock."""
    from personalization.models import Event

    days = settings.PRECOMPUTE_DAYS if days is None else days
    limit = settings.PRECOMPUTE_MAX_VISITORS if limit is None else limit
    batch_size = batch_size or settings.PRECOMPUTE_BATCH_SIZE
    revision = live_revision(token)
    version_id, system = system_for(token, revision)
    if system is None:
        return {"visitors": 0, "entries": 0}
    try:
        sync_catalog(shared_cache.cache().get(CATALOG_GEN_KEY))
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
    hidden = forgotten_among(subjects, token)  # erased people are served on demand, as strangers
    subjects = [s for s in subjects if s not in hidden]
    entries = 0
    for start in range(0, len(subjects), batch_size):
        if start and live_token() != token:
            logger.info("precompute: another version went live after %s of %s visitors; stopping", start,
                        len(subjects))
            return {"visitors": start, "entries": entries, "superseded": True}
        batch = subjects[start:start + batch_size]
        versions = key_versions(batch)
        states = states_from_db(batch)
        arms = {(s, spec["name"]): assignment(s, spec["name"]) for s in batch for spec in specs}
        # who is served by which system: the live one, or their A/B arm's version
        served: dict[str, tuple[str, int | None, Any]] = {token: (token, version_id, system)}
        wanted: dict[str, dict[str, set[str]]] = {}  # token -> subject -> the slots that token serves them
        for (subject, slot), arm in arms.items():
            if arm is not None and arm.token not in served:
                served[arm.token] = serving_system(arm, token, revision)
            wanted.setdefault(arm.token if arm is not None else token, {}).setdefault(subject, set()).add(slot)
        lists = {t: _candidate_lists(served[t][2], wanted[t], states, specs) for t in wanted}
        to_cache: dict[int, dict[str, Any]] = {}
        for subject in batch:
            vv, ttl = versions[subject]
            state = states[subject]
            to_cache.setdefault(ttl, {})[state_key(subject)] = (vv, state)
            if not state.history:
                continue  # a cold visitor's list depends on the request's context
            for spec in specs:
                n = int(spec["n"])
                arm = arms[(subject, spec["name"])]
                # a subject in an A/B arm gets its arm's version's list, under its arm's key
                used, used_id, used_system = served[arm.token if arm else token]
                candidates = lists[arm.token if arm else token].get((subject, spec["name"]))
                if candidates is None:
                    continue  # its list depends on the request's context: computed on demand, per context bucket
                items, fallback = produce(used_system, subject, state, spec, SPARE_FACTOR * n, {}, None, set(), None,
                                          None, candidates=candidates)
                if fallback or any(_is_popular(r.reason) for r in items):
                    continue  # the model knew none of their items, or popular items filled it: context-dependent
                key = rec_key(subject, (spec["name"], n, None, None, None, [], (), *arm_key_part(arm)))
                to_cache.setdefault(ttl, {})[key] = {
                    "items": [(r.item, r.score, r.reason) for r in items], "token": used, "vv": vv,
                    "model_version": used_id, "fallback": fallback,
                }
        for ttl, group in to_cache.items():
            try:
                shared_cache.set_many(group, timeout=ttl)
            except Exception:  # noqa: BLE001
                logger.warning("Could not store precomputed recommendations", exc_info=True)
            entries += sum(1 for k in group if k.startswith(REC_PREFIX))
    return {"visitors": len(subjects), "entries": entries}


def _candidate_lists(system: Any, wanted: dict[str, set[str]], states: dict[str, Any],
                     specs: list[dict[str, Any]]) -> dict[tuple[str, str], list[Any]]:
    """(subject, slot name) -> the model's candidates for that slot's list, from the very call a request makes
    (:func:`~personalization.serving.orchestration.model_candidates`: the visitor's exclusions for that slot, its
    repeat setting), so the precomputed list is the one the visitor would get online. One call per visitor and
    distinct exclusion setting among the slots ``wanted`` for them (subject -> slot names); nothing for a model
    whose ranker reads the request's context."""
    subjects = [s for s in wanted if states[s].history]
    if system is None or not subjects or uses_context(system):
        return {}
    settings_of: dict[tuple[bool, bool, bool], list[dict[str, Any]]] = {}
    for spec in specs:
        setting = (bool(spec["exclude_purchased"]), bool(spec["exclude_in_cart"]), bool(spec["exclude_viewed"]))
        settings_of.setdefault(setting, []).append(spec)
    out: dict[tuple[str, str], list[Any]] = {}
    for group in settings_of.values():
        spec = group[0]
        pool = max(candidate_pool(SPARE_FACTOR * int(sp["n"])) for sp in group)
        names = {sp["name"] for sp in group}
        for subject in subjects:
            if not wanted[subject] & names:
                continue  # another version serves this visitor these slots
            state = states[subject]
            try:
                candidates = model_candidates(system, subject, state, spec, excluded_items(spec, state), pool, {})
            except Exception:  # noqa: BLE001
                logger.exception("personalization: live model failed for %s; not precomputed", subject)
                continue
            for sp in group:
                out[(subject, sp["name"])] = list(candidates)
    return out


def _is_popular(reason: str) -> bool:
    """Whether an item filled the list as a popular one (``popular``, ``popular:hour=20``): those depend on the
    request's context (its hour, country, device), unknown ahead of it."""
    return reason == "popular" or reason.startswith("popular:")
