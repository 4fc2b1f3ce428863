"""The online service: ``recommend()`` and ``similar_items()`` from the live model, with business rules and caching.

One call runs: cache lookup -> candidates and ranking from the live :class:`RecommenderSystem` -> business rules of
the slot (exclusions, availability, filters, boosts, pinned items, per-category caps) -> diversity (maximal marginal
relevance or category spread) -> exploration (epsilon-greedy or Thompson sampling) -> a :class:`Result` carrying a
``recommendation_id`` and the ``model_version``, logged as a ``RecommendationLog`` row off the request path.

This module is the package's door: callers import from here. One job per module:

- ``slots``: the rules of each slot; ``live``: the live model (loaded once, swapped on promotion);
- ``state``: who is asking and what they did; ``items``: catalog features and display fields (in-process table);
- ``orchestration``: ``recommend()`` and its cache; ``rules``: business rules, diversity, exploration;
- ``popular``: popularity without a live model; ``explain``: reasons in words; ``log``: the recommendation log;
- ``similar``: similar items; ``precomputation``: fills the cache for active visitors; ``keys``: shared cache keys;
- ``results``: the returned types; ``forgotten``: people erased on request, hidden from older model versions;
- ``subjects``: what the live model holds about a person (their data export). Cache freshness (visitor versions)
  is ``personalization.freshness``.

Nothing here raises to a caller: on any failure it logs and falls back (live model -> popularity of the visitor's
context -> global popularity -> empty list).
"""

from personalization.serving.forgotten import announce as announce_forgotten
from personalization.serving.forgotten import forget_cached, subject_hash
from personalization.serving.items import item_display, item_features
from personalization.serving.live import live_system, load_problem, publish_live_version, publish_revision
from personalization.serving.log import log_recommendation, log_writer
from personalization.serving.orchestration import recommend
from personalization.serving.precomputation import precompute
from personalization.serving.results import Recommendation, Result
from personalization.serving.rules import seed_exploration
from personalization.serving.similar import similar_items
from personalization.serving.slots import SLOT_DEFAULTS, UnknownSlot, default_slot, slot_names, slot_spec
from personalization.serving.state import subject_of, visitor_state
from personalization.serving.subjects import live_model_rows

__all__ = [
    "SLOT_DEFAULTS",
    "Recommendation",
    "Result",
    "UnknownSlot",
    "announce_forgotten",
    "default_slot",
    "forget_cached",
    "item_display",
    "item_features",
    "live_model_rows",
    "live_system",
    "publish_revision",
    "load_problem",
    "log_recommendation",
    "log_writer",
    "precompute",
    "publish_live_version",
    "recommend",
    "seed_exploration",
    "similar_items",
    "slot_names",
    "slot_spec",
    "subject_hash",
    "subject_of",
    "visitor_state",
]
