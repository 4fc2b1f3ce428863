"""The default candidate-generator families and event weights, defined once for the app and the pure core.

``personalization.conf`` builds its ``TRAINING["models"]`` and ``EVENT_TYPES`` defaults from these, and
:class:`~personalization.recommenders.system.RecommenderSystem` falls back to them, so a system trained with the
defaults is the one the app trains with its default settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Families fitted when ``models`` is None, with their hyperparameters.
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "itemknn": {"k": 100},
    "transitions": {"k": 100},  # what visitors click next: session lists
    # l2 chosen on the label part (CHOSEN_PARAMS); skipped above max_items (a dense item x item matrix per process)
    "ease": {"max_items": 5000},
    "als": {"factors": 64, "iterations": 15},
    "item2vec": {},
    "content": {},
}

#: Hyperparameters the system chooses itself when a family's spec leaves them out: family -> (parameter, values).
#: Each value is fitted on the fit part and scored alone on the label part's new items (NDCG@10 of warm users), and
#: the best serves in both stages; a system without a label part (no ranker) keeps the class default. EASE's lambda
#: depends on the matrix's scale (event weights, decay, log scaling), which no fixed value follows; its refits share
#: one Gram matrix (an inverse per value). Online Retail (README "What a version is made of"): it picks 1,000-2,000,
#: about +3% NDCG@10 and Recall@20 of the whole system.
CHOSEN_PARAMS: dict[str, tuple[str, tuple[float, ...]]] = {"ease": ("l2", (250.0, 500.0, 1000.0, 2000.0))}

#: Training weight of one event per event type, when ``event_weights`` is None (unknown types weigh 0).
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 4.0,
    "remove_from_cart": -2.0,
    "purchase": 8.0,
    "impression": 0.0,
    "rate": 1.0,
    "dwell": 0.5,
    "search": 0.0,
}


#: Event types that use an item up: an item with one is not recommended to that user again (the others, views and
#: clicks, may come back: see ``RecommenderSystem(repeat=...)``).
DEFAULT_CONSUMED_EVENTS: tuple[str, ...] = ("purchase", "rate")


#: Event types whose weight is multiplied by the event's value: a rating of 5 says more than a rating of 1 (a missing
#: value counts as 1). On MovieLens (relevant = ratings of 4 and 5) it took recommend() from x1.03 to x1.19 NDCG@10 of
#: the best tuned baseline (benchmarks/quality.py).
DEFAULT_VALUE_WEIGHTED_EVENTS: tuple[str, ...] = ("rate",)


def event_weights_or_default(event_weights: Mapping[str, float] | None) -> dict[str, float]:
    """A copy of ``event_weights``, or of :data:`DEFAULT_EVENT_WEIGHTS` when it is None."""
    return dict(DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights)
