"""The ranker's anonymous-visit examples: sessions of two or more events whose last item is new to the session, and
the earlier next clicks of those sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalization.recommenders.ranker_data import earlier_clicks, labelled_sessions
from personalization.recommenders.system import HISTORY_SOURCE, RecommenderSystem


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


def earlier_by_loop(keys, cols, times, repeats):
    """The definition of :func:`earlier_clicks`, one session at a time: (history, label) of each click but the
    session's first and last that comes later in time than the click before it (and, unless ``repeats``, is new)."""
    out = []
    frame = pd.DataFrame({"key": keys, "col": cols, "t": times})
    for _, session in frame.groupby("key", sort=True):
        seq, t = session["col"].to_numpy(), session["t"].to_numpy()
        for i in range(1, len(seq) - 1):
            if t[i] > t[i - 1] and (repeats or seq[i] not in seq[:i]):
                out.append((seq[:i].tolist(), int(seq[i])))
    return out


def test_earlier_clicks_match_the_definition():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(1, 1500))
        keys = np.array([f"u:{u}\x1f{s}" for u, s in zip(rng.integers(0, 100, n), rng.integers(0, 8, n),
                                                           strict=True)], dtype=object)
        cols = rng.integers(0, 12, n)
        times = np.sort(rng.integers(0, n // 2 + 1, n))  # ties: lines of one order
        for repeats in (False, True):
            grouped, _, _ = labelled_sessions(keys, cols, repeats=repeats)
            starts, ends = earlier_clicks(keys, cols, times, repeats=repeats)
            got = [(grouped[a : b - 1].tolist(), int(grouped[b - 1])) for a, b in zip(starts, ends, strict=True)]
            assert sorted(got) == sorted(earlier_by_loop(keys, cols, times, repeats))


def returning_mid_session(n_sessions: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Sessions a, b, a, c: shoppers go back to the first item at the third click, then leave with another."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-03-01", tz="UTC")
    rows = []
    for s in range(n_sessions):
        a, b, c = rng.choice(40, 3, replace=False)
        for j, item in enumerate((a, b, a, c)):
            rows.append((f"v:{s}", f"product:{item}", "view", start + pd.Timedelta(minutes=10 * s, seconds=30 * j),
                         f"s{s}"))
    return pd.DataFrame(rows, columns=["user", "item", "event", "timestamp", "session"])


def test_a_return_seen_only_mid_session_is_learnt():
    system = RecommenderSystem(models={"popularity": {}, "itemknn": {"k": 20}}, candidates_per_model=20,
                               random_state=0).fit(returning_mid_session())
    top = system.recommend(["v:new"], n=3, histories={"v:new": ["product:3", "product:7"]})[0][0]
    assert top[0] == "product:3" and top[2] == HISTORY_SOURCE  # no session ends on that return: only its middle says so
    assert system.metrics_["stage1"]["anonymous_users"] > system.metrics_["stage1"]["label_events"] // 2
