"""GradientBoostedRanker's vectorized tree walk: the same scores as sklearn's predict_proba, bit for bit."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from personalization.recommenders import GradientBoostedRanker
from personalization.recommenders.rankers import _clean, _TreeWalker


def make_rows(n, seed):
    """Rows with missing values, +-inf ("cannot score"), a constant and a few-valued feature."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 7))
    X[:, 4] = 3.0
    X[:, 5] = rng.integers(0, 4, n)
    X[rng.random(X.shape) < 0.05] = np.nan
    X[rng.random(X.shape) < 0.02] = -np.inf
    X[rng.random(X.shape) < 0.01] = np.inf
    return X


def make_problem(n=3000, seed=0):
    X = make_rows(n, seed)
    rng = np.random.default_rng(seed + 100)
    v = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)
    y = (v[:, 0] + v[:, 1] * v[:, 2] - 0.5 * v[:, 5] + 0.5 * rng.normal(size=n) > -1).astype(int)
    # a missing value that tells: splits on "missing or not" (+inf thresholds) and both missing directions
    X[(y == 1) & (rng.random(n) < 0.4), 3] = np.nan
    return X, y


def sklearn_scores(ranker, X):
    with threadpool_limits(1, "openmp"):
        return ranker.model_.predict_proba(_clean(X))[:, 1]


def walked_scores(ranker, X, monkeypatch):
    """``ranker.predict_proba(X)``, failing if it asks sklearn."""
    with monkeypatch.context() as m:
        m.setattr(HistGradientBoostingClassifier, "predict_proba", lambda *a, **k: pytest.fail("sklearn was asked"))
        return ranker.predict_proba(X)


SETTINGS = [
    {"max_iter": 60, "early_stopping": False},
    {"max_iter": 40, "max_depth": 3, "early_stopping": False},
    {"max_iter": 30, "max_depth": 1, "early_stopping": False},
    {"max_iter": 50, "max_leaf_nodes": 5, "early_stopping": False},
    {"max_iter": 25, "max_leaf_nodes": 63, "min_samples_leaf": 5, "early_stopping": False},
    {"max_iter": 300, "early_stopping": True, "n_iter_no_change": 5, "learning_rate": 0.3},
]


@pytest.fixture(scope="module")
def problem():
    return make_problem()


@pytest.fixture(scope="module", params=range(len(SETTINGS)))
def fitted(request, problem):
    X, y = problem
    return GradientBoostedRanker(**SETTINGS[request.param], n_threads=1, random_state=0).fit(X, y)


@pytest.mark.parametrize("n_rows", [1, 2, 1000])
def test_walker_gives_sklearns_scores(fitted, n_rows, monkeypatch):
    X = make_rows(n_rows, seed=7 + n_rows)
    assert fitted._walker() is not None
    got = walked_scores(fitted, X, monkeypatch)
    expected = sklearn_scores(fitted, X)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.argsort(-got, kind="stable"), np.argsort(-expected, kind="stable"))
    assert got.shape == (n_rows,) and got.dtype == np.float64


def test_walker_matches_on_thresholds_exactly(fitted, monkeypatch):
    """Values equal to a split threshold go left (``x <= threshold``), as in sklearn."""
    nodes = np.concatenate([p[0].nodes for p in fitted.model_._predictors])
    splits = nodes[(nodes["is_leaf"] == 0) & np.isfinite(nodes["num_threshold"])]
    X = make_rows(len(splits), seed=3)
    for i, node in enumerate(splits):
        X[i, node["feature_idx"]] = node["num_threshold"]
        X[i, (node["feature_idx"] + 1) % X.shape[1]] = splits["num_threshold"][(i + 1) % len(splits)]
    np.testing.assert_array_equal(walked_scores(fitted, X, monkeypatch), sklearn_scores(fitted, X))


def test_problem_covers_missing_splits_and_early_stopping(problem):
    """The fixtures really have "missing or not" splits (+inf thresholds), both missing directions, early stops."""
    X, y = problem
    ranker = GradientBoostedRanker(max_iter=60, early_stopping=False, n_threads=1, random_state=0).fit(X, y)
    nodes = np.concatenate([p[0].nodes for p in ranker.model_._predictors])
    splits = nodes[nodes["is_leaf"] == 0]
    assert np.isinf(splits["num_threshold"]).any()
    assert set(np.unique(splits["missing_go_to_left"])) == {0, 1}
    stopped = GradientBoostedRanker(**SETTINGS[-1], n_threads=1, random_state=0).fit(X, y)
    assert stopped.n_iter_ < 300


def test_trees_without_splits(monkeypatch):
    """A model whose trees are single leaves (nothing to split on) scores its baseline."""
    rng = np.random.default_rng(1)
    X = np.full((200, 3), 1.0)
    y = (rng.random(200) < 0.3).astype(int)
    ranker = GradientBoostedRanker(max_iter=5, early_stopping=False, n_threads=1).fit(X, y)
    assert ranker._walker().depth == 0
    Xq = make_rows(10, seed=2)[:, :3]
    np.testing.assert_array_equal(walked_scores(ranker, Xq, monkeypatch), sklearn_scores(ranker, Xq))


def test_joblib_round_trip_rebuilds_the_walker(fitted, tmp_path, monkeypatch):
    X = make_rows(300, seed=11)
    before = walked_scores(fitted, X, monkeypatch)
    walker = fitted._walker()
    assert "_walker_cache" in fitted.__dict__
    fitted.save(tmp_path / "ranker.joblib")
    assert fitted._walker() is walker  # saving leaves the live ranker's walker in place
    raw = pickle.dumps(fitted)
    assert b"_walker_cache" not in raw and b"_TreeWalker" not in raw
    assert b"_TreeWalker" not in (tmp_path / "ranker.joblib").read_bytes()
    loaded = GradientBoostedRanker.load(tmp_path / "ranker.joblib")
    assert "_walker_cache" not in loaded.__dict__
    again = walked_scores(loaded, X, monkeypatch)
    np.testing.assert_array_equal(again, before)
    np.testing.assert_array_equal(again, sklearn_scores(loaded, X))
    assert "_walker_cache" in loaded.__dict__
    assert "_walker_cache" not in joblib.load(tmp_path / "ranker.joblib").__dict__


def test_refit_and_replaced_model_rebuild_the_walker(problem, monkeypatch):
    X, y = problem
    ranker = GradientBoostedRanker(max_iter=20, early_stopping=False, n_threads=1, random_state=0).fit(X, y)
    Xq = make_rows(50, seed=5)
    first = walked_scores(ranker, Xq, monkeypatch)
    ranker.set_params(max_iter=35).fit(X[::2], y[::2])
    assert ranker._walker().n_trees == 35
    second = walked_scores(ranker, Xq, monkeypatch)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, sklearn_scores(ranker, Xq))


def test_categorical_splits_fall_back_to_sklearn(monkeypatch):
    rng = np.random.default_rng(4)
    n = 2000
    X = np.column_stack([rng.integers(0, 6, n), rng.normal(size=n)]).astype(np.float64)
    y = (np.isin(X[:, 0], [1, 4]) ^ (X[:, 1] > 1)).astype(int)
    model = HistGradientBoostingClassifier(max_iter=20, categorical_features=[0], random_state=0).fit(X, y)
    assert any(p[0].nodes["is_categorical"].any() for p in model._predictors)
    ranker = GradientBoostedRanker(n_threads=1)
    ranker.model_, ranker.n_features_in_ = model, 2
    assert _TreeWalker.build(model) is None
    Xq = np.column_stack([rng.integers(-1, 8, 300), rng.normal(size=300)]).astype(np.float64)
    Xq[::7, 0] = np.nan
    np.testing.assert_array_equal(ranker.predict_proba(Xq), model.predict_proba(Xq)[:, 1])


def test_categorical_splits_without_preprocessor_fall_back():
    """Even a categorical split the walker could reach without sklearn's preprocessing is left to sklearn."""
    X, y = make_problem(n=500)
    ranker = GradientBoostedRanker(max_iter=3, early_stopping=False, n_threads=1).fit(X, y)
    nodes = ranker.model_._predictors[1][0].nodes
    nodes["is_categorical"][np.flatnonzero(nodes["is_leaf"] == 0)[-1]] = 1
    assert _TreeWalker.build(ranker.model_) is None


def test_several_trees_per_iteration_fall_back(problem):
    X, y = problem
    y3 = y + (np.nan_to_num(X[:, 0]) > 1)  # three classes: one tree per class and iteration
    ranker = GradientBoostedRanker(max_iter=10, early_stopping=False, n_threads=1, random_state=0).fit(X, y3)
    assert _TreeWalker.build(ranker.model_) is None
    Xq = make_rows(40, seed=6)
    np.testing.assert_array_equal(ranker.predict_proba(Xq), sklearn_scores(ranker, Xq))


def test_large_batches_and_threads_choose_sklearn(fitted, monkeypatch):
    with threadpool_limits(1, "openmp"):
        assert GradientBoostedRanker()._walk_max_rows() == GradientBoostedRanker.WALK_MAX_ROWS
    assert GradientBoostedRanker(n_threads=1)._walk_max_rows() == GradientBoostedRanker.WALK_MAX_ROWS
    assert GradientBoostedRanker(n_threads=2)._walk_max_rows() == GradientBoostedRanker.WALK_MAX_ROWS_THREADED
    X = make_rows(120, seed=9)
    walked = walked_scores(fitted, X, monkeypatch)
    asked = []
    real = HistGradientBoostingClassifier.predict_proba

    def counted(model, X):
        asked.append(len(X))
        return real(model, X)

    monkeypatch.setattr(HistGradientBoostingClassifier, "predict_proba", counted)
    monkeypatch.setattr(GradientBoostedRanker, "WALK_MAX_ROWS", 100)
    np.testing.assert_array_equal(fitted.predict_proba(X), walked)
    assert asked == [120]
    fitted.predict_proba(X[:100])
    assert asked == [120]


def test_bad_input_keeps_sklearns_errors(fitted):
    with pytest.raises(ValueError, match="features"):
        fitted.predict_proba(np.zeros((3, 2)))
    with pytest.raises(ValueError):
        fitted.predict_proba(np.zeros((0, 7)))
    with pytest.raises(ValueError):
        fitted.predict_proba(np.zeros(7))


def test_chunked_batches(fitted, monkeypatch):
    """Batches larger than one chunk of (tree, row) pairs are walked chunk by chunk."""
    monkeypatch.setattr(_TreeWalker, "CHUNK_PAIRS", 1000)
    X = make_rows(257, seed=12)
    np.testing.assert_array_equal(walked_scores(fitted, X, monkeypatch), sklearn_scores(fitted, X))
