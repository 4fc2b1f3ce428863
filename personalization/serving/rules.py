"""Business rules of a slot over scored candidates: exclusions, filters, boosts, pins, caps, diversity, exploration."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from personalization import runtime, shared_cache
from personalization.freshness import PREFIX
from personalization.serving.items import item_features
from personalization.serving.results import Recommendation

_rng = random.Random()


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
    """Business rules, diversity and exploration of a slot over scored candidates (best first).

    Exploration is skipped while staff have paused it on the dashboard (:func:`personalization.runtime.
    exploration_paused`, read through the cache on every call that would explore)."""
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


def seed_exploration(seed: int | None) -> None:
    """Make exploration reproducible (tests, simulations); None re-seeds from the OS."""
    _rng.seed(seed)


def _explore(spec: dict[str, Any], chosen: list[tuple[str, float, str]], rest: list[tuple[str, float, str]],
             cats: dict[str, Any], counts: dict[Any, int], cap: int | None) -> list[tuple[str, float, str]]:
    """Give each position, with probability ``exploration_rate``, to a candidate outside the list."""
    method, rate = spec["exploration"], float(spec["exploration_rate"])
    if not method or rate <= 0 or not rest or runtime.exploration_paused():
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
    from personalization.models import Event

    key = f"{PREFIX}clickstats:v1"
    stats = shared_cache.get(key)
    if stats is None:
        since = timezone.now() - timedelta(days=30)
        rows = (Event.objects.filter(occurred_at__gte=since, event_type__in=["impression", "click"])
                .exclude(item_key="").values("item_key", "event_type").annotate(c=Count("id")).order_by())
        raw: dict[str, list[int]] = {}
        for row in rows:
            raw.setdefault(row["item_key"], [0, 0])[0 if row["event_type"] == "impression" else 1] += row["c"]
        stats = {k: (max(v[0], v[1]), v[1]) for k, v in raw.items()}
        try:
            shared_cache.cache().set(key, stats, timeout=600)
        except Exception:  # noqa: BLE001
            pass
    return stats
