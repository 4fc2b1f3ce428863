"""Thompson sampling over (clicks, impressions) with a control share of uniform random choice.

Pure numpy: the caller passes the arms' statistics and a seeded generator, so a visitor's choice is reproducible
(seeded by visitor, slot and period) and the bandit can be simulated in tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def seeded_rng(*parts: object) -> np.random.Generator:
    """A generator seeded by a stable hash of ``parts`` (the same parts give the same draws in every process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def thompson_scores(stats: Sequence[tuple[int, int]], rng: np.random.Generator) -> np.ndarray:
    """One Beta(1 + clicks, 1 + impressions - clicks) draw per arm."""
    if not len(stats):
        return np.zeros(0)
    clicks = np.array([max(int(c), 0) for c, _ in stats], dtype=float)
    shown = np.array([max(int(i), 0) for _, i in stats], dtype=float)
    clicks = np.minimum(clicks, shown)
    return rng.beta(1.0 + clicks, 1.0 + shown - clicks)


def choose(
    stats: Sequence[tuple[int, int]], rng: np.random.Generator, *, control_share: float = 0.0,
    bonus: Sequence[float] | None = None,
) -> tuple[int, str]:
    """Index of the arm to show and how it was chosen (``"control"`` or ``"thompson"``).

    ``control_share`` of the draws pick an arm uniformly at random (a holdout that keeps measuring every arm and
    gives an unbiased baseline); the rest take the highest Thompson sample plus ``bonus`` (e.g. the visitor's
    affinity for the arm's category).
    """
    n = len(stats)
    if n == 0:
        raise ValueError("choose() needs at least one arm.")
    if rng.random() < min(max(control_share, 0.0), 1.0):
        return int(rng.integers(n)), "control"
    scores = thompson_scores(stats, rng)
    if bonus is not None:
        scores = scores + np.asarray(bonus, dtype=float)
    return int(np.argmax(scores)), "thompson"
