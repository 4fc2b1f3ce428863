"""The ranker's anonymous-visit examples: sessions of two or more events whose last item is new to the session."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalization.recommenders.ranker_data import labelled_sessions


def by_loop(keys, cols):
    """The definition, one session at a time (sessions in sorted key order, events in their order)."""
    out = []
    for _, seq in pd.Series(cols).groupby(keys, sort=True):
        seq = seq.to_numpy()
        if len(seq) >= 2 and seq[-1] not in seq[:-1]:
            out.append((seq[:-1].tolist(), int(seq[-1])))
    return out


def test_vectorised_sessions_match_the_definition():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 2000))
        keys = np.array([f"u:{u}\x1f{s}" for u, s in zip(rng.integers(0, 150, n), rng.integers(0, 12, n),
                                                           strict=True)], dtype=object)
        cols = rng.integers(0, 15, n)
        grouped, starts, ends = labelled_sessions(keys, cols)
        got = [(grouped[a : b - 1].tolist(), int(grouped[b - 1])) for a, b in zip(starts, ends, strict=True)]
        assert got == by_loop(keys, cols)


def test_no_sessions():
    grouped, starts, ends = labelled_sessions(np.array([], dtype=object), np.array([], dtype=np.int64))
    assert len(grouped) == len(starts) == len(ends) == 0
