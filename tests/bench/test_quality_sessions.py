"""The quality benchmark's session protocol: every next click of a test session is one prediction, repeats included,
and the last-click figures are scored on the sessions' last clicks alone (``benchmarks/quality.py``)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import quality as Q  # noqa: E402

CUTOFF = pd.Timestamp("2014-04-07", tz="UTC")


def clicks(session: str, items: list[str], start: pd.Timestamp) -> list[dict]:
    return [{"user": session, "item": item, "timestamp": start + pd.Timedelta(minutes=m), "value": np.nan}
            for m, item in enumerate(items)]


@pytest.fixture
def split():
    events = pd.DataFrame(
        clicks("old", ["a", "b"], CUTOFF - pd.Timedelta(hours=5))  # training
        + clicks("s1", ["a", "b", "a", "c"], CUTOFF + pd.Timedelta(hours=1))
        + clicks("s2", ["c", "d"], CUTOFF + pd.Timedelta(hours=2))
        + clicks("single", ["d"], CUTOFF + pd.Timedelta(hours=3))  # one click: nothing to predict
        + clicks("late", ["a", "b"], CUTOFF + pd.Timedelta(days=2))  # after the window
    )
    items = pd.Index(sorted(events["item"].unique()))
    return Q.make_split(events, items, Q.SPECS["yoochoose"], CUTOFF, n_users=10, seed=0), items


def test_every_next_click_of_a_test_session_is_one_prediction(split):
    split, items = split
    assert split.users == ["s1-1", "s1-2", "s1-3", "s2-1"]
    assert split.sessions == ["s1", "s1", "s1", "s2"]
    assert [[items[c] for c in h] for h in split.histories] == [["a"], ["a", "b"], ["a", "b", "a"], ["c"]]
    assert [items[split.relevant[r].indices[0]] for r in range(4)] == ["b", "a", "c", "d"]
    assert split.repeat.tolist() == [False, True, False, False]
    assert split.last.tolist() == [False, False, True, True]
    assert list(split.train["user"].unique()) == ["old"]


def test_scores_split_all_next_clicks_repeats_new_items_and_last_clicks(split):
    split, items = split
    col = items.get_loc
    ranked = np.full((4, Q.K), -1, dtype=np.int64)
    ranked[0, 0] = col("b")  # hit at rank 1
    ranked[1, :2] = [col("c"), col("a")]  # the repeat, at rank 2
    ranked[2, 0] = col("a")  # miss
    ranked[3, 0] = col("d")  # hit at rank 1
    scores = Q.score(Q.SPECS["yoochoose"], split, ranked)
    assert scores["hr@20"] == pytest.approx(3 / 4)
    assert scores["mrr@20"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert scores["hr@20 repeat"] == 1.0 and scores["mrr@20 repeat"] == 0.5
    assert scores["hr@20 new"] == pytest.approx(2 / 3)
    assert scores["hr@20 last"] == pytest.approx(1 / 2) and scores["mrr@20 last"] == pytest.approx(1 / 2)
    assert scores["repeat share"] == pytest.approx(1 / 4)
