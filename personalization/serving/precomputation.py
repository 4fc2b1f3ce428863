"""Precomputation: fill the cache for recently active visitors, so their next requests are cache hits.

Run by the ``personalization.precompute_recommendations`` task (after a promotion, when configured).

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
from personalization.serving.arms import Assignment, assignment
from personalization.serving.forgotten import forgotten_among
from personalization.serving.items import sync_catalog
from personalization.serving.keys import CATALOG_GEN_KEY, REC_PREFIX, rec_key, state_key
from personalization.serving.live import live_revision, live_token, system_for
from personalization.serving.orchestration import SPARE_FACTOR, arm_key_part, produce, serving_system, uses_context
from personalization.serving.slots import slot_names, slot_spec
from personalization.serving.state import states_from_db
from personalization.subjects import model_subjects

logger = logging.getLogger("personalization.serving")


def precompute(days: int | None = None, slots: Sequence[str] | None = None, limit: int | None = None,
               batch_size: int | None = None) -> dict[str, int]:
    """Fill the cache for visitors active in the last ``days``: batched scoring, then each slot's rules.

    Entries use the same keys as :func:`personalization.serving.recommend` with the slot's default ``n`` and no
    item/category, so the visitors' next requests are cache hits. Each holds ``SPARE_FACTOR`` times ``n`` items: a
    page's later list, which excludes what its earlier lists showed, is answered from the spare ones. Visitors
    served by a version whose ranker reads the request's context get no entry (see the module docstring). Returns
    counts.
    """
    from personalization.models import Event

    days = settings.PRECOMPUTE_DAYS if days is None else days
    limit = settings.PRECOMPUTE_MAX_VISITORS if limit is None else limit
    batch_size = batch_size or settings.PRECOMPUTE_BATCH_SIZE
    token = live_token()
    version_id, system = system_for(token, live_revision(token))
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
        batch = subjects[start:start + batch_size]
        versions = key_versions(batch)
        states = states_from_db(batch)
        known_as = dict(zip(batch, model_subjects(system, batch), strict=True))  # the artifact's pseudonyms
        histories = {known_as[s]: st.history for s, st in states.items() if st.history}
        pool = max(4 * max(int(sp["n"]) for sp in specs), settings.RECOMMENDATION_POOL)
        live_context = uses_context(system)
        rows = ([[] for _ in batch] if live_context else
                system.recommend([known_as[s] for s in batch], n=pool, histories=histories or None))
        live_rows = dict(zip(batch, rows, strict=True))
        arms = {(s, spec["name"]): assignment(s, spec["name"]) for s in batch for spec in specs}
        by_arm = _arm_candidates(arms, states, token, pool)
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
                used, used_id, used_system, candidates = by_arm.get((subject, arm.token) if arm else None) or (
                    token, version_id, system, live_rows[subject])
                if uses_context(used_system):
                    continue  # its list depends on the request's context: computed on demand, per context bucket
                items, fallback = produce(used_system, subject, state, spec, SPARE_FACTOR * n, {}, None, set(), None,
                                          None, candidates=list(candidates))
                key = rec_key(subject, (spec["name"], n, None, None, None, [], (), *arm_key_part(arm)))
                to_cache.setdefault(ttl, {})[key] = {
                    "items": [(r.item, r.score, r.reason) for r in items], "token": used, "vv": vv,
                    "model_version": used_id if fallback != "error" else None, "fallback": fallback,
                }
        for ttl, group in to_cache.items():
            try:
                shared_cache.set_many(group, timeout=ttl)
            except Exception:  # noqa: BLE001
                logger.warning("Could not store precomputed recommendations", exc_info=True)
            entries += sum(1 for k in group if k.startswith(REC_PREFIX))
    return {"visitors": len(subjects), "entries": entries}


def _arm_candidates(arms: dict[tuple[str, str], Assignment | None], states: dict[str, Any], live: str,
                    pool: int) -> dict[tuple[str, str], tuple[str, int | None, Any, list[Any]]]:
    """(subject, arm token) -> (token used, version id, system, candidates) for subjects whose A/B arm is served by
    a version other than the live one: one batched scoring per such version."""
    wanted: dict[str, tuple[Assignment, list[str]]] = {}
    for (subject, _slot), arm in arms.items():
        if arm is not None and arm.token != live:
            subjects = wanted.setdefault(arm.token, (arm, []))[1]
            if subject not in subjects and states[subject].history:
                subjects.append(subject)
    out: dict[tuple[str, str], tuple[str, int | None, Any, list[Any]]] = {}
    for arm_token, (arm, subjects) in wanted.items():
        used, version_id, system = serving_system(arm, live)
        if system is None or not subjects or uses_context(system):
            continue
        known_as = dict(zip(subjects, model_subjects(system, subjects), strict=True))
        histories = {known_as[s]: states[s].history for s in subjects if states[s].history}
        rows = system.recommend([known_as[s] for s in subjects], n=pool, histories=histories or None)
        for subject, candidates in zip(subjects, rows, strict=True):
            out[(subject, arm_token)] = (used, version_id, system, list(candidates))
    return out
