"""What serving returns: a :class:`Result` (one served list) of :class:`Recommendation` items."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recommendation:
    item: str
    score: float
    reason: str = ""  # how it was produced, e.g. "itemknn:because product:12", "pinned", "popular:country=FR"
    explanation: str = ""  # the reason in words (``explain=True``), e.g. "Because you viewed Blue mug"
    # explain=True and a gradient-boosted ranker ordered it: the features that raised its score, as sentences
    # ([{"sentence", "contribution", "features"}], monitoring.explanations)
    factors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Result:
    items: list[Recommendation]
    recommendation_id: str
    model_version: int | None
    fallback: str = ""  # "" when picked for the visitor; "popularity" (popular items answered) or "error"
    slot: str = ""
    cached: bool = False
    experiment: int | None = None  # the A/B test the subject is in, and its arm ("A" or "B")
    arm: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def keys(self) -> list[str]:
        return [r.item for r in self.items]
