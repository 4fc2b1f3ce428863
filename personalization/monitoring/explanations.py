"""Why an item was recommended, in words a shopper understands: the ranker's SHAP values turned into sentences.

For a served list, the live system hands over the ranker's input row of each item (``RecommenderSystem.recommend``
with ``with_features=True``); :func:`~personalization.recommenders.attributions.shap_values` tells how much each
feature raised the item's score; the features that raised it most become sentences through ONE table,
:data:`FEATURE_SENTENCES` (feature-name pattern -> sentence template). Features sharing a sentence add up (every
popularity feature says "Popular right now"), so an item gets at most ``INSIGHTS["explain_features"]`` distinct
sentences. A feature no pattern matches falls back to :data:`GENERIC_SENTENCE`; a site adds or overrides patterns
with ``PERSONALIZATION["INSIGHTS"]["sentences"]`` (tried first).

Faces: ``explain=1`` on the recommendations API and ``serving.recommend(..., explain=True)`` (each item's
``factors``), the ``{% explain_recommendation item %}`` tag, and the admin "why" page; this module imports nothing
of serving (serving calls it). The per-version summary
(mean |SHAP| per feature) and the bias report are read with :func:`shap_summary` and :func:`bias_report`.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from personalization.conf import settings

logger = logging.getLogger("personalization.monitoring")

#: Feature-name pattern (``fnmatch``, first match wins) -> sentence, or None for a feature that is never a reason.
#: ``{last_item}`` is the title of the visitor's latest item, ``{country}``, ``{device}`` and ``{hour}`` come from
#: the request's context. The opt-in context group (``TRAINING["context_features"]``) says where the item is more
#: popular than usual; the names the ranker may gain later (hour, weekday, device, country, season) have sentences.
FEATURE_SENTENCES: tuple[tuple[str, str | None], ...] = (
    ("*_last_sim", "Goes with {last_item}"),
    ("hist_*", "You looked at this recently"),
    ("popularity_*", "Popular right now"),
    ("item_pop_*", "Popular right now"),
    ("item_users_log", "Popular right now"),
    ("item_trend", "Trending this week"),
    ("item_conversion", "Often bought by the shoppers who look at it"),
    ("itemknn_*", "Bought with items you viewed"),
    ("ease_*", "Bought with items you viewed"),
    ("transitions_*", "Often viewed next after items you viewed"),
    ("item2vec_*", "Often browsed together with items you viewed"),
    ("content_*", "Similar to items you viewed"),
    ("als_*", "Liked by shoppers with tastes like yours"),
    ("bpr_*", "Liked by shoppers with tastes like yours"),
    ("cat_*", "From a category you like"),
    ("price_ratio", "In your usual price range"),
    ("price", "At a price that suits you"),
    ("item_price_band", "At a price that suits you"),
    ("available", "In stock now"),
    ("n_sources", "Several of our recommenders picked it for you"),
    ("best_list_pos", "High on our list for you"),
    ("item_hour_lift", "Popular at this time of day"),
    ("item_weekend_lift", "Popular on this day of the week"),
    ("item_device_lift", "Popular on {device}"),
    ("item_country_lift", "Popular in {country}"),
    ("hour*", "Popular at this time of day"),
    ("weekday*", "Popular on this day of the week"),
    ("device*", "Popular on {device}"),
    ("country*", "Popular in {country}"),
    ("season*", "In season right now"),
    # the visitor's own figures are the same for every item of their list: they say how sure the ranker is about
    # the visitor, not why this item, so they are no sentence
    ("user_*", None),
    ("ctx_*", None),  # the request's own context: the same for every item too
    ("history_len", None),
    ("anonymous", None),
)
#: The sentence of a feature no pattern matches.
GENERIC_SENTENCE = "Matches what you have shown interest in"
#: Placeholder values when the request does not give them.
PLACEHOLDER_DEFAULTS = {"last_item": "what you viewed last", "country": "your country", "device": "your device",
                        "hour": "this hour"}


def sentence_table() -> list[tuple[str, str | None]]:
    """The site's patterns (``INSIGHTS["sentences"]``) followed by :data:`FEATURE_SENTENCES`."""
    return [*dict(settings.INSIGHTS.get("sentences") or {}).items(), *FEATURE_SENTENCES]


@lru_cache(maxsize=4096)
def _template_of(feature: str, table: tuple[tuple[str, str | None], ...]) -> str | None:
    """The template of the first pattern of ``table`` matching ``feature``; the generic sentence when none does."""
    for pattern, template in table:
        if fnmatch.fnmatchcase(feature, pattern):
            return template
    return GENERIC_SENTENCE


def sentence_for(feature: str, values: Mapping[str, Any] | None = None,
                 table: Sequence[tuple[str, str | None]] | None = None) -> str:
    """The sentence of ``feature`` with its placeholders filled from ``values`` (else neutral words); "" for a
    feature that is never a reason (the table maps it to None)."""
    template = _template_of(feature, tuple(table if table is not None else sentence_table()))
    if template is None:
        return ""
    if "{" not in template:
        return template
    filled = {**PLACEHOLDER_DEFAULTS, **{k: v for k, v in (values or {}).items() if v not in (None, "")}}
    try:
        return str(template).format(**filled)
    except (KeyError, IndexError, ValueError):
        logger.warning("personalization: sentence %r for %s has an unknown placeholder", template, feature)
        return GENERIC_SENTENCE


def factors_from_shap(names: Sequence[str], shap_row: np.ndarray, k: int,
                      values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The ``k`` sentences whose features raised the score most: ``[{"sentence", "contribution" (log-odds, the sum of
    its features' positive SHAP values), "features" (largest first)}]``, largest first."""
    table = tuple(sentence_table())
    grouped: dict[str, dict[str, Any]] = {}
    for j in np.argsort(-np.asarray(shap_row), kind="stable"):
        value = float(shap_row[j])
        if not value > 0:
            break
        sentence = sentence_for(str(names[j]), values, table)
        if not sentence:
            continue
        entry = grouped.setdefault(sentence, {"sentence": sentence, "contribution": 0.0, "features": []})
        entry["contribution"] += value
        entry["features"].append(str(names[j]))
    ranked = sorted(grouped.values(), key=lambda e: -e["contribution"])[:k]
    for entry in ranked:
        entry["contribution"] = round(entry["contribution"], 4)
    return ranked


def explain_rows(system: Any, rows: np.ndarray, values: Mapping[str, Any] | None = None,
                 k: int | None = None, session: bool = False) -> list[list[dict[str, Any]]] | None:
    """The factors of each ranker input row of ``system`` (None when its ranker has no tree explainer);
    ``session``: rows of a visit the session ranker ordered (its own columns)."""
    from personalization.recommenders.attributions import shap_values

    explaining = getattr(system, "explaining_ranker", None)  # a system of an older release: the user ranker only
    ranker, names = explaining(session) if callable(explaining) else (getattr(system, "ranker_", None), None)
    if ranker is None or not len(rows):
        return None
    got = shap_values(ranker, np.asarray(rows))
    if got is None:
        return None
    shap, _ = got
    names = names if names is not None else system.ranker_feature_names()
    k = int(settings.INSIGHTS["explain_features"] if k is None else k)
    return [factors_from_shap(names, row, k, values) for row in shap]


def attach_factors(items: Sequence[Any], system: Any, features: Mapping[str, np.ndarray],
                   values: Mapping[str, Any] | None = None, session: bool = False) -> None:
    """Fill each item's ``factors`` from its ranker row in ``features`` (item key -> row; ``session``: rows of the
    session ranker); items the ranker did not order (pinned, exploration, popular fill-ins) keep none: their source
    reason says why they are there."""
    keyed = [r for r in items if r.item in features]
    if not keyed:
        return
    explained = explain_rows(system, np.stack([features[r.item] for r in keyed]), values, session=session)
    if explained is None:
        return
    for r, factors in zip(keyed, explained, strict=True):
        r.factors = factors


# -- per-version insight: what the admin and the dashboard read --------------------------------------------------
def shap_summary(version: Any) -> dict[str, Any] | None:
    """A version's mean |SHAP| per ranker feature (``{"features": {name: value}, "rows", "base_value"}``, largest
    first), or None when training did not compute it (no gradient-boosted ranker, an older version, an error)."""
    summary = (getattr(version, "insights", None) or {}).get("shap")
    if not isinstance(summary, dict) or not summary.get("features"):
        return None
    # PostgreSQL's jsonb keeps no key order: sort again
    features = sorted(summary["features"].items(), key=lambda kv: (-(kv[1] or 0.0), kv[0]))
    return {**summary, "features": dict(features)}


def bias_report(version: Any) -> dict[str, Any] | None:
    """A version's bias report with its flagged segments: ``{"users", "quality", "exposure", "warnings": [...]}``
    (see :func:`personalization.evaluation.bias.low_segments`), ``{"unevaluated": why}``, or None when absent."""
    from personalization.evaluation.bias import low_segments

    report = (getattr(version, "insights", None) or {}).get("bias")
    if not isinstance(report, dict):
        return None
    if "quality" not in report:
        return dict(report)
    conf = settings.INSIGHTS
    quality = dict(report["quality"])
    quality["segments"] = {  # PostgreSQL's jsonb keeps no key order: the largest segments first again
        dim: dict(sorted(per.items(), key=lambda kv: (-(kv[1].get("users") or 0), kv[0])))
        for dim, per in (quality.get("segments") or {}).items()}
    return {**report, "quality": quality,
            "warnings": low_segments(quality, conf["low_quality_ratio"], conf["min_segment_users"])}

