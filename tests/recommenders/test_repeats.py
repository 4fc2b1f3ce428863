"""Repeat-aware lists: viewed items may come back when the ranker says so; consumed ones never do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization.recommenders.ranker_data import labelled_sessions
from personalization.recommenders.system import HISTORY_SOURCE, RecommenderSystem

N_ITEMS = 60
MODELS = {"popularity": {}, "itemknn": {"k": 30}}


def revisiting_sessions(n_sessions: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Anonymous sessions of views where the last click usually returns to the item viewed two clicks before
    (shoppers comparing two products), and sometimes a purchase of the first item."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-03-01", tz="UTC")
    rows = []
    for s in range(n_sessions):
        t0 = start + pd.Timedelta(minutes=10 * s)
        a, b = rng.choice(N_ITEMS, 2, replace=False)
        clicks = [a, b, a] if rng.random() < 0.8 else [a, b, (b + 1) % N_ITEMS]
        for j, item in enumerate(clicks):
            rows.append((f"v:{s}", f"product:{item}", "view", t0 + pd.Timedelta(seconds=30 * j), f"s{s}"))
        if s % 3 == 0:
            rows.append((f"v:{s}", f"product:{a}", "purchase", t0 + pd.Timedelta(minutes=2), f"s{s}"))
    return pd.DataFrame(rows, columns=["user", "item", "event", "timestamp", "session"])


@pytest.fixture(scope="module")
def sessions_system():
    return RecommenderSystem(models=MODELS, candidates_per_model=20, random_state=0).fit(revisiting_sessions())


def test_a_viewed_item_comes_back_first_when_shoppers_return_to_it(sessions_system):
    recs = sessions_system.recommend(["v:new"], n=5, histories={"v:new": ["product:3", "product:7"]})[0]
    assert recs[0][0] == "product:3"  # the item before last: where these shoppers go back to
    assert recs[0][2] == HISTORY_SOURCE
    assert "product:7" in [k for k, _, _ in recs]


def test_repeat_false_never_recommends_the_history(sessions_system):
    system = RecommenderSystem(models=MODELS, candidates_per_model=20, random_state=0, repeat=False)
    system.fit(revisiting_sessions())
    keys = [k for k, _, _ in system.recommend(["v:new"], n=10, histories={"v:new": ["product:3", "product:7"]})[0]]
    assert len(keys) == 10 and not {"product:3", "product:7"} & set(keys)


def test_excluded_history_items_stay_out(sessions_system):
    keys = [k for k, _, _ in sessions_system.recommend(["v:new"], n=10, histories={"v:new": ["product:3", "product:7"]},
                                                      exclude={"product:3"})[0]]
    assert "product:3" not in keys and "product:7" in keys


def test_consumed_items_of_a_known_user_never_come_back(sessions_system):
    events = revisiting_sessions()
    bought = events.loc[events["event"] == "purchase"]
    users = bought["user"].unique()[:50].tolist()
    recs = sessions_system.recommend(users, n=10)
    came_back = 0
    for user, rec in zip(users, recs, strict=True):
        keys = {k for k, _, _ in rec}
        assert not keys & set(bought.loc[bought["user"] == user, "item"])
        viewed = set(events.loc[(events["user"] == user) & (events["event"] == "view"), "item"])
        came_back += bool(keys & viewed)
    assert came_back > 0  # the viewed-only second item may come back


def test_a_system_saved_before_repeat_aware_lists_keeps_filtering_the_history(sessions_system, tmp_path):
    sessions_system.save(tmp_path / "s")
    old = RecommenderSystem.load(tmp_path / "s")
    old.tables_.consumed_indptr = old.tables_.consumed_indices = None  # what an older artifact loads as
    keys = [k for k, _, _ in old.recommend(["v:new"], n=10, histories={"v:new": ["product:3", "product:7"]})[0]]
    assert not {"product:3", "product:7"} & set(keys)
    again = RecommenderSystem.load(tmp_path / "s")
    assert again.recommend(["v:new"], n=1, histories={"v:new": ["product:3", "product:7"]})[0][0][0] == "product:3"


def test_sessions_whose_last_click_repeats_teach_the_ranker_only_when_repeat_aware():
    keys = np.array(["a", "a", "a", "b", "b", "c", "c"])
    cols = np.array([1, 2, 1, 4, 5, 7, 7])
    _, starts, _ = labelled_sessions(keys, cols)
    assert len(starts) == 1  # b only: a and c end on an item they saw
    _, starts, ends = labelled_sessions(keys, cols, repeats=True)
    assert (ends - starts).tolist() == [3, 2, 2]
