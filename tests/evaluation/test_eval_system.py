"""evaluate_system on a seeded sample of users: one sample for the system, its families, another system."""

from __future__ import annotations

import numpy as np
import pytest

from personalization.evaluation.system import evaluate_system, evaluation_users
from personalization.pipeline.split import temporal_split
from personalization.recommenders.system import RecommenderSystem
from tests.recommenders.test_system import make_shop

MODELS = {"als": {"factors": 8, "iterations": 8, "regularization": 0.1}, "itemknn": {"k": 30}, "popularity": {}}


@pytest.fixture(scope="module")
def split():
    events, items, _ = make_shop(n_users=1000, seed=1)
    train, test = temporal_split(events, test_days=10)
    return train, test, items


@pytest.fixture(scope="module")
def system(split):
    train, _, items = split
    return RecommenderSystem(models=MODELS, candidates_per_model=30, random_state=0).fit(train, items)


def test_capped_evaluation_scores_every_model_on_one_seeded_sample(system, split, monkeypatch):
    from personalization.evaluation import protocol

    asked = []
    original = protocol.evaluate_recommender

    def spy(model, train, test, **kwargs):
        result = original(model, train, test, **kwargs)
        asked.append(result["n_users"])
        return result

    monkeypatch.setattr(protocol, "evaluate_recommender", spy)
    capped = evaluate_system(system, split[1], max_users=60, random_state=5)

    names = ["system", *MODELS]
    assert all(capped[n]["n_users"] == 60 for n in names) and asked == [60] * len(names)
    total = capped["system"]["n_users_total"]
    assert total > 60 and all(capped[n]["n_users_total"] == total for n in names)
    assert capped["cold"]["warm_users"] == total and capped["cold"]["sampled_users"] == 60
    assert _no_seconds(evaluate_system(system, split[1], max_users=60, random_state=5)) == _no_seconds(capped)


def test_evaluation_users_is_the_sample_evaluate_scores(system, split):
    sample = evaluation_users(system, split[1], max_users=60, random_state=5)

    assert len(sample) == 60 and list(sample) == sorted(sample) and all(k.startswith("u:") for k in sample)
    assert np.array_equal(sample, evaluation_users(system, split[1], max_users=60, random_state=5))
    by_users = evaluate_system(system, split[1], users=sample)
    by_cap = evaluate_system(system, split[1], max_users=60, random_state=5)
    assert _no_seconds(by_users) == _no_seconds(by_cap)
    # another system (other seed: its own rows and factors) is scored on exactly these users
    other = RecommenderSystem(models=MODELS, candidates_per_model=30, random_state=1).fit(split[0], split[2])
    assert evaluate_system(other, split[1], users=sample)["system"]["n_users"] == 60
    assert evaluate_system(system, split[1], users=list(sample[:10]) + ["u:nobody"])["system"]["n_users"] == 10


def test_metrics_on_a_capped_sample_approximate_the_full_ones(system, split):
    full = evaluate_system(system, split[1], models=["popularity"])
    capped = evaluate_system(system, split[1], models=["popularity"], max_users=250, random_state=0)

    assert full["system"]["n_users"] == capped["system"]["n_users_total"] > 250
    assert capped["system"]["n_users"] == 250
    for name in ("system", "popularity"):
        for metric in ("ndcg@10", "recall@20", "hit_rate@10"):
            assert capped[name][metric] == pytest.approx(full[name][metric], abs=0.05), (name, metric)
    # the ordering of the models is kept
    assert (capped["system"]["ndcg@10"] > capped["popularity"]["ndcg@10"]) == (
        full["system"]["ndcg@10"] > full["popularity"]["ndcg@10"])


def _no_seconds(result):
    return {name: {k: v for k, v in row.items() if k != "seconds"} if isinstance(row, dict) else row
            for name, row in result.items()}
