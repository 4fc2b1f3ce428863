"""The session ranker: visits (no training row, a session history) get their own ranker, known users keep theirs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization.pipeline.interactions import build_interactions
from personalization.recommenders.features import SESSION_COLUMNS, sequential_rules
from personalization.recommenders.ranker_data import session_ranker_data
from personalization.recommenders.system import RecommenderSystem

N_ITEMS = 40
MODELS = {"popularity": {}, "itemknn": {"k": 20}, "transitions": {"k": 20}}
HISTORY = {"v:new": ["product:3", "product:7"]}


def visits(n_visits: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Visits of four views: item ``a``, then ``a + 1``, ``a + 2``, ``a + 3`` (a path through the catalogue), one in
    five going back to ``a`` at the end; a third of the visitors come back later (known users)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-03-01", tz="UTC")
    rows = []
    for s in range(n_visits):
        t0 = start + pd.Timedelta(minutes=10 * s)
        a = int(rng.integers(N_ITEMS))
        clicks = [a, (a + 1) % N_ITEMS, (a + 2) % N_ITEMS, a if rng.random() < 0.2 else (a + 3) % N_ITEMS]
        user = f"v:{s % (2 * n_visits // 3)}"
        for j, item in enumerate(clicks):
            rows.append((user, f"product:{item}", "view", t0 + pd.Timedelta(seconds=30 * j), f"s{s}"))
    return pd.DataFrame(rows, columns=["user", "item", "event", "timestamp", "session"])


@pytest.fixture(scope="module")
def system():
    return RecommenderSystem(models=MODELS, candidates_per_model=15, random_state=0).fit(visits())


class Spy:
    """A ranker that records that it was asked, scoring like the one it wraps."""

    def __init__(self, ranker):
        self.ranker = ranker
        self.calls = 0

    def predict_proba(self, X):
        self.calls += 1
        return self.ranker.predict_proba(X)


def test_training_fits_a_session_ranker_on_every_next_click_of_the_visits(system):
    info = system.metrics_["session_ranker"]
    assert system.session_ranker_ is not None and "skipped" not in info
    # three next clicks per visit of four views
    assert info["session_examples"] == 3 * info["session_visits"]
    names = [system.session_feature_names()[c] for c in system.session_ranker_columns_]
    assert set(names) & set(SESSION_COLUMNS)
    assert not set(SESSION_COLUMNS) & set(system.ranker_feature_names())  # the user ranker has none of them


def test_a_visit_is_ranked_by_the_session_ranker_and_a_known_user_by_the_user_ranker(system):
    user_spy, session_spy = Spy(system.ranker_), Spy(system.session_ranker_)
    ranker, session_ranker = system.ranker_, system.session_ranker_
    system.ranker_, system.session_ranker_ = user_spy, session_spy
    try:
        system.recommend(["v:new"], n=5, histories=HISTORY)
        assert (session_spy.calls, user_spy.calls) == (1, 0)
        system.recommend(["v:1"], n=5)
        system.recommend(["v:2"], n=5, histories={"v:2": ["product:3"]})  # a known user's current session too
        assert (session_spy.calls, user_spy.calls) == (1, 2)
    finally:
        system.ranker_, system.session_ranker_ = ranker, session_ranker


def test_a_visit_follows_the_path_its_clicks_are_on(system):
    keys = [k for k, _, _ in system.recommend(["v:new"], n=3, histories={"v:new": ["product:10", "product:11",
                                                                                    "product:12"]})[0]]
    assert keys[0] == "product:13"  # the next step of the path, not the visit's own items
    assert "product:10" in keys  # the one that visits go back to


def test_a_visit_and_a_visitor_without_history_are_served_in_one_call(system):
    lists = system.recommend(["v:new", "v:1", "v:nobody"], n=4, histories=HISTORY)
    assert [len(lst) for lst in lists] == [4, 4, 4]
    assert lists[2][0][2].startswith("popularity")


def test_the_user_ranker_is_the_same_with_or_without_the_session_ranker(system):
    without = RecommenderSystem(models=MODELS, candidates_per_model=15, random_state=0,
                                session_ranker=False).fit(visits())
    assert without.session_ranker_ is None and without.tables_.rules is None
    assert without.feature_names_ == system.feature_names_
    users = ["v:1", "v:2", "v:3"]
    assert without.recommend(users, n=10) == system.recommend(users, n=10)


def test_training_skips_the_session_ranker_without_enough_visits():
    few = RecommenderSystem(models=MODELS, candidates_per_model=15, random_state=0).fit(visits(n_visits=150))
    assert few.session_ranker_ is None
    assert "next clicks" in few.metrics_["session_ranker"]["skipped"]
    assert few.ranker_ is not None
    assert len(few.recommend(["v:new"], n=5, histories=HISTORY)[0]) == 5  # the user ranker orders the visit


def test_the_session_ranker_is_saved_and_loaded_and_an_older_artifact_has_none(system, tmp_path):
    system.save(tmp_path / "s")
    again = RecommenderSystem.load(tmp_path / "s")
    assert again.session_ranker_ is not None
    assert again.recommend(["v:new"], n=5, histories=HISTORY) == system.recommend(["v:new"], n=5, histories=HISTORY)
    (tmp_path / "s" / "session_ranker.joblib").unlink()  # an artifact written before session rankers
    meta = (tmp_path / "s" / "system.json")
    meta.write_text(meta.read_text().replace('"session_ranker": true', '"session_ranker": false'))
    old = RecommenderSystem.load(tmp_path / "s")
    assert old.session_ranker_ is None and len(old.recommend(["v:new"], n=5, histories=HISTORY)[0]) == 5


def test_explanation_rows_are_those_of_the_ranker_that_ordered_the_list(system):
    from personalization.recommenders.attributions import shap_values

    lists, rows = system.recommend(["v:new", "v:1"], n=5, histories=HISTORY, with_features=True)
    assert system.ranks_as_visit("v:new", HISTORY["v:new"]) and not system.ranks_as_visit("v:1", [])
    assert not system.ranks_as_visit("v:new", [])  # no history: popular items, no ranker
    ranker, names = system.explaining_ranker(session=True)
    assert ranker is system.session_ranker_ and rows[0].shape == (5, len(names))
    assert set(names) & set(SESSION_COLUMNS)
    assert system.explaining_ranker() == (system.ranker_, system.ranker_feature_names())
    assert rows[1].shape == (5, len(system.ranker_feature_names()))
    values, _ = shap_values(ranker, rows[0])
    assert values.shape == rows[0].shape


def test_sequential_rules_weigh_a_click_by_its_distance_and_skip_reloads():
    rules = sequential_rules([[0, 1, 1, 2]], 4).toarray()
    # 0 -> 1 at distance 1 and 2 (1 + 1/2), 0 -> 2 at distance 3 (1/3); rows scaled to their largest entry
    assert rules[0].tolist() == pytest.approx([0.0, 1.0, (1 / 3) / 1.5, 0.0])
    assert rules[1, 1] == 0.0  # a reload is no rule
    assert rules[1, 2] == 1.0 and rules[2].sum() == 0.0


def test_session_examples_are_every_prefix_grouped_by_visit():
    events = visits(n_visits=200)
    matrix = build_interactions(events, {"view": 1.0})
    seen = []

    def candidates(hist, contexts, sequences):
        seen.extend(np.asarray(s).tolist() for s in sequences)
        cands = np.tile(np.arange(matrix.shape[1]), (hist.shape[0], 1))  # every item: the next click is among them
        return cands, np.zeros((cands.size, 3), dtype=np.float32)

    X, y, groups, info = session_ranker_data(matrix, events, {"view": 1.0}, np.random.default_rng(0), candidates)
    assert info["session_examples"] == 600 and info["session_visits"] == 200
    assert sorted({len(s) for s in seen}) == [1, 2, 3]
    # a visit's prefixes share its group: validation splits visits
    assert y.sum() == 600 and len(np.unique(groups)) == 200


def test_a_visits_last_item_features_read_its_last_click_not_its_most_clicked_item(system):
    # product:5 clicked three times weighs more in the decayed history than the last click, product:20
    history = {"v:new": ["product:5", "product:5", "product:5", "product:20"]}
    lists, rows = system.recommend(["v:new"], n=8, histories=history, with_features=True)
    _, names = system.explaining_ranker(session=True)
    assert "itemknn_last_sim" in names
    served = rows[0][:, names.index("itemknn_last_sim")]
    itemknn = system.families_["itemknn"]
    cols = system.matrix_.cols_for(np.array([k for k, _, _ in lists[0]]))
    last, most_clicked = system.matrix_.cols_for(np.array(["product:20", "product:5"]))
    expected = np.asarray(itemknn._similar_all(np.array([last])), dtype=np.float32)[0, cols]
    wrong = np.asarray(itemknn._similar_all(np.array([most_clicked])), dtype=np.float32)[0, cols]
    assert not np.allclose(expected, wrong)
    np.testing.assert_allclose(served, np.where(np.isfinite(expected), expected, np.nan), rtol=1e-6)
