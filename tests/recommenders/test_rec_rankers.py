"""Second-stage rankers on a separable synthetic problem."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from personalization.recommenders import GradientBoostedRanker, MLPRanker, StackedRanker
from personalization.recommenders.rankers import Ranker


def make_problem(n_users=60, rows_per_user=20, seed=0):
    rng = np.random.default_rng(seed)
    n = n_users * rows_per_user
    groups = np.repeat(np.arange(n_users), rows_per_user)
    X = rng.normal(size=(n, 4))
    logits = 3 * X[:, 0] - 2 * X[:, 1] + 0.5 * rng.normal(size=n)
    y = (logits > 0).astype(int)
    X[rng.random(n) < 0.05, 3] = -np.inf  # a candidate generator that could not score
    return X, y, groups


@pytest.fixture(scope="module")
def problem():
    X, y, groups = make_problem()
    Xt, yt, _ = make_problem(n_users=20, seed=1)
    return X, y, groups, Xt, yt


def fast_rankers():
    return [
        GradientBoostedRanker(max_iter=50, n_threads=1, random_state=0),
        MLPRanker(hidden_layer_sizes=(16,), max_iter=200, random_state=0),
    ]


@pytest.mark.parametrize("index", [0, 1])
def test_base_rankers_learn_separable_problem(problem, index, tmp_path):
    X, y, groups, Xt, yt = problem
    ranker = fast_rankers()[index]
    assert ranker.fit(X, y, groups=groups, X_val=Xt, y_val=yt) is ranker
    p = ranker.predict_proba(Xt)
    assert p.shape == (len(yt),) and np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(yt, p) > 0.9
    assert ranker.validation_auc_ > 0.9
    ranker.save(tmp_path / "r.joblib")
    again = type(ranker).load(tmp_path / "r.joblib")
    np.testing.assert_allclose(again.predict_proba(Xt), p)
    with pytest.raises(TypeError):
        StackedRanker.load(tmp_path / "r.joblib")


def test_gbt_group_aware_early_stopping_and_l2(problem):
    X, y, groups, Xt, yt = problem
    a = GradientBoostedRanker(max_iter=300, l2_regularization=1.0, n_threads=1, random_state=0).fit(X, y, groups=groups)
    assert a.n_iter_ < 300
    assert a.model_.l2_regularization == 1.0
    b = GradientBoostedRanker(max_iter=300, l2_regularization=1.0, n_threads=1, random_state=0).fit(X, y, groups=groups)
    np.testing.assert_allclose(a.predict_proba(Xt), b.predict_proba(Xt))


def test_stacked_ranker_uses_out_of_fold_predictions(problem, tmp_path):
    X, y, groups, Xt, yt = problem
    stacked = StackedRanker(fast_rankers(), meta_C=1.0, n_splits=3, random_state=0)
    stacked.fit(X, y, groups=groups)
    assert roc_auc_score(yt, stacked.predict_proba(Xt)) > 0.9
    assert stacked.oof_predictions_.shape == (len(y), 2)
    in_sample = np.column_stack([r.predict_proba(X) for r in stacked.base_rankers_])
    # the meta-learner was trained on out-of-fold predictions, not the refitted models' in-sample ones
    assert not np.allclose(stacked.oof_predictions_, in_sample, atol=1e-3)
    # out-of-fold predictions are less confident than in-sample ones on the training rows
    assert np.abs(stacked.oof_predictions_ - y[:, None]).mean() > np.abs(in_sample - y[:, None]).mean()
    stacked.save(tmp_path / "s.joblib")
    np.testing.assert_allclose(Ranker.load(tmp_path / "s.joblib").predict_proba(Xt), stacked.predict_proba(Xt))


def test_stacked_folds_never_split_a_user(problem, monkeypatch):
    X, y, groups, _, _ = problem
    seen = []

    class Spy(GradientBoostedRanker):
        def fit(self, X, y, groups=None, X_val=None, y_val=None):
            seen.append(None if groups is None else set(np.unique(groups)))
            return super().fit(X, y, groups=groups, X_val=X_val, y_val=y_val)

    StackedRanker([Spy(max_iter=10, n_threads=1)], n_splits=3, meta_penalty="l1").fit(X, y, groups=groups)
    fold_train = seen[:3]
    # each user is held out by exactly one fold, i.e. missing from exactly one fold's training set
    for user in np.unique(groups):
        assert sum(user not in s for s in fold_train) == 1


def test_ranker_errors():
    with pytest.raises(ValueError, match="both"):
        GradientBoostedRanker(n_threads=1).fit(np.zeros((4, 2)), np.ones(4))
    with pytest.raises(ValueError, match="meta_penalty"):
        StackedRanker(fast_rankers(), meta_penalty="elasticnet").fit(*make_problem(10, 5)[:2])
