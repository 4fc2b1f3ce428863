"""Hyperparameter search: grid covers the grid, random/bayesian respect n_trials, best = max trial."""

from __future__ import annotations

import numpy as np
import pytest

from personalization.evaluation import TuningResult, evaluate_recommender, tune
from personalization.recommenders import EASERecommender, ItemKNNRecommender
from tests.evaluation.splits import random_split


@pytest.fixture(scope="module")
def split():
    train, test = random_split(seed=2, n_users=90)
    return train, test


def check_best(result: TuningResult):
    scores = [t["score"] for t in result.trials]
    assert result.best_score == max(scores)
    best = result.trials[int(np.argmax(scores))]
    assert result.best_params == best["params"]


def test_grid_covers_the_grid(split):
    train, valid = split
    space = {"l2": [1.0, 50.0, 5000.0], "max_items": [100, 200]}
    result = tune(EASERecommender, space, train, valid, metric="ndcg@5", method="grid")
    assert len(result.trials) == 6
    assert {(t["params"]["l2"], t["params"]["max_items"]) for t in result.trials} == {
        (a, b) for a in space["l2"] for b in space["max_items"]
    }
    check_best(result)
    # the score is the validation metric of a model fitted with those params
    model = EASERecommender(**result.best_params).fit(train)
    assert evaluate_recommender(model, train, valid, k=5)["ndcg@5"] == pytest.approx(result.best_score)


def test_random_search_is_seeded(split):
    train, valid = split
    space = {"k": (2, 40), "similarity": ["cosine", "bm25"]}

    def factory(**params):
        return ItemKNNRecommender(num_threads=1, **params)

    a = tune(factory, space, train, valid, metric="recall@10", method="random", n_trials=4, random_state=3)
    b = tune(factory, space, train, valid, metric="recall@10", method="random", n_trials=4, random_state=3)
    assert len(a.trials) == 4
    assert [t["params"] for t in a.trials] == [t["params"] for t in b.trials]
    assert all(2 <= t["params"]["k"] <= 40 for t in a.trials)
    check_best(a)


def test_bayesian_respects_n_trials(split):
    train, valid = split
    space = {"l2": (0.5, 5000.0, "log")}
    result = tune(EASERecommender, space, train, valid, method="bayesian", n_trials=5, random_state=0)
    assert len(result.trials) == 5
    assert all(0.5 <= t["params"]["l2"] <= 5000.0 for t in result.trials)
    check_best(result)
    again = tune(EASERecommender, space, train, valid, method="bayesian", n_trials=5, random_state=0)
    assert [t["params"] for t in again.trials] == [t["params"] for t in result.trials]


def test_time_budget_stops_after_the_first_trial(split):
    train, valid = split
    result = tune(EASERecommender, {"l2": [1.0, 2.0, 3.0]}, train, valid, time_budget_s=0.0)
    assert len(result.trials) == 1


def test_bad_arguments(split):
    train, valid = split
    with pytest.raises(ValueError, match="method"):
        tune(EASERecommender, {"l2": [1.0]}, train, valid, method="annealing")
    with pytest.raises(ValueError, match="list"):
        tune(EASERecommender, {"l2": (1.0, 2.0)}, train, valid, method="grid")
    with pytest.raises(ValueError, match="metric"):
        tune(EASERecommender, {"l2": [1.0]}, train, valid, metric="ndcg")
    with pytest.raises(ValueError, match="unknown metric"):
        tune(EASERecommender, {"l2": [1.0]}, train, valid, metric="foo@5")
