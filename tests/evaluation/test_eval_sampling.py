"""Evaluating a seeded sample of users: deterministic, capped, the same for every model, close to the full score."""

from __future__ import annotations

import numpy as np
import pytest

from personalization.evaluation import evaluate_recommender, sample_users
from personalization.recommenders import EASERecommender, PopularityRecommender
from tests.evaluation.splits import random_split


class Recording:
    """A model that remembers which user rows it was asked to rank."""

    def __init__(self, model):
        self.model = model
        self.rows: list[int] = []

    def recommend(self, user_rows, user_items, n=10, filter_seen=True, exclude=None):
        self.rows += np.asarray(user_rows).tolist()
        return self.model.recommend(user_rows, user_items, n=n, filter_seen=filter_seen, exclude=exclude)


def test_sample_is_deterministic_capped_and_independent_of_order():
    users = np.array([f"u:{i}" for i in range(500)])
    sample = sample_users(users, 40, random_state=7)

    assert len(sample) == 40 and len(set(sample.tolist())) == 40
    assert set(sample.tolist()) <= set(users.tolist())
    assert list(sample) == sorted(sample)
    assert np.array_equal(sample, sample_users(users[::-1], 40, random_state=7))  # same set, same seed
    assert np.array_equal(sample, sample_users(np.concatenate([users, users[:9]]), 40, random_state=7))
    assert not np.array_equal(sample, sample_users(users, 40, random_state=8))
    # no cap, or a cap above the population: everyone, sorted
    assert np.array_equal(sample_users(users, None), np.sort(users))
    assert np.array_equal(sample_users(users, 10_000, random_state=7), np.sort(users))
    with pytest.raises(ValueError, match="max_users"):
        sample_users(users, 0)


def test_protocol_caps_users_and_scores_every_model_on_the_same_sample():
    train, test = random_split(n_users=300)
    ease, pop = Recording(EASERecommender(l2=10.0).fit(train)), Recording(PopularityRecommender().fit(train))

    a = evaluate_recommender(ease, train, test, k=5, max_users=50, random_state=3, batch_size=16)
    b = evaluate_recommender(pop, train, test, k=5, max_users=50, random_state=3)

    assert a["n_users"] == b["n_users"] == 50 and a["n_users_total"] == b["n_users_total"] == 300
    assert sorted(ease.rows) == sorted(pop.rows) and len(set(ease.rows)) == 50
    again = Recording(ease.model)
    assert evaluate_recommender(again, train, test, k=5, max_users=50, random_state=3) == {
        **a, "seconds": pytest.approx(a["seconds"], abs=10)}
    assert sorted(again.rows) == sorted(ease.rows)


def test_protocol_restricted_to_given_users():
    train, test = random_split()
    model = Recording(EASERecommender(l2=10.0).fit(train))
    test.data[test.indptr[7] : test.indptr[8]] = 0  # user 7 has nothing to predict: left out even if asked
    test.eliminate_zeros()

    result = evaluate_recommender(model, train, test, k=5, users=np.array([3, 7, 11, 140]))

    assert sorted(set(model.rows)) == [3, 11, 140]
    assert result["n_users"] == 3 and result["n_users_total"] == train.shape[0] - 1


def test_metrics_of_a_sample_approximate_the_full_evaluation():
    train, test = random_split(n_users=1500)
    model = EASERecommender(l2=10.0).fit(train)

    full = evaluate_recommender(model, train, test, k=(5, 10))
    capped = evaluate_recommender(model, train, test, k=(5, 10), max_users=400, random_state=0)

    assert capped["n_users"] == 400 and full["n_users"] == capped["n_users_total"] == 1500
    for metric in ("ndcg@5", "precision@5", "recall@10", "map@10", "hit_rate@10"):
        assert capped[metric] == pytest.approx(full[metric], abs=0.05), metric


def test_tuning_scores_every_trial_on_one_capped_sample():
    from personalization.evaluation import tune

    train, test = random_split(n_users=300)
    models = []

    class Fitting(Recording):
        def fit(self, csr):
            self.model.fit(csr)
            models.append(self)
            return self

    result = tune(lambda **p: Fitting(EASERecommender(**p)), {"l2": [1.0, 10.0, 100.0]}, train, test,
                  metric="ndcg@5", method="grid", random_state=0, max_users=40)

    assert [t["metrics"]["n_users"] for t in result.trials] == [40, 40, 40]
    assert all(t["metrics"]["n_users_total"] == 300 for t in result.trials)
    assert len({tuple(sorted(m.rows)) for m in models}) == 1 and len(set(models[0].rows)) == 40
