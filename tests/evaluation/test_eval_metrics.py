"""Ranking metrics against hand-computed cases and against implicit.evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from implicit.evaluation import ranking_metrics_at_k
from scipy import sparse

from personalization.evaluation import (
    catalog_coverage,
    evaluate_recommender,
    hit_rate_at_k,
    log_loss,
    map_at_k,
    map_at_k_per_user,
    mrr_at_k,
    ndcg_at_k,
    ndcg_at_k_per_user,
    novelty,
    popularity_bias,
    precision_at_k,
    recall_at_k,
    recall_at_k_per_user,
    roc_auc,
)
from personalization.recommenders import ALSRecommender, EASERecommender
from tests.evaluation.splits import random_split

RANKED = np.array([[3, 1, 7, 2, 9], [0, 1, 2, 3, 4], [5, -1, -1, -1, -1]])
RELEVANT = [{1, 2, 5}, set(), {5}]


def test_hand_computed_case():
    # user 0: hits at ranks 2 and 4 of 5, three relevant items; user 1 has nothing relevant
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx((2 / 5 + 1 / 5) / 2)
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx((2 / 3 + 1) / 2)
    per_user = ndcg_at_k_per_user(RANKED, RELEVANT, 5)
    assert round(per_user[0], 6) == 0.498189  # (1/log2 3 + 1/log2 5) / (1 + 1/log2 3 + 1/2)
    assert math.isnan(per_user[1]) and per_user[2] == 1.0
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx((0.49818925746641285 + 1) / 2, abs=1e-9)
    np.testing.assert_allclose(map_at_k_per_user(RANKED, RELEVANT, 5), [(1 / 2 + 2 / 4) / 3, np.nan, 1.0])
    assert map_at_k(RANKED, RELEVANT, 5) == pytest.approx((1 / 3 + 1) / 2)
    assert mrr_at_k(RANKED, RELEVANT, 5) == pytest.approx((1 / 2 + 1) / 2)
    assert hit_rate_at_k(RANKED, RELEVANT, 5) == 1.0
    assert hit_rate_at_k(RANKED, RELEVANT, 1) == 0.5
    # k = 2 truncates: user 0 has one hit at rank 2, ideal DCG of two hits
    assert ndcg_at_k_per_user(RANKED, RELEVANT, 2)[0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_csr_and_sets_agree_and_duplicates_count_once():
    rel = sparse.csr_matrix(([1.0, 1.0, 1.0, 1.0], ([0, 0, 0, 2], [1, 2, 5, 5])), shape=(3, 10))
    for fn in (precision_at_k, recall_at_k, ndcg_at_k, map_at_k, mrr_at_k):
        assert fn(RANKED, rel, 5) == pytest.approx(fn(RANKED, RELEVANT, 5))
    np.testing.assert_allclose(recall_at_k_per_user(np.array([[1, 1, 1]]), [{1, 2}], 3), [0.5])
    # fewer slots than k are misses
    assert precision_at_k(np.array([[1]]), [{1}], 4) == 0.25


def test_beyond_accuracy_metrics():
    ranked = np.array([[0, 1, -1], [0, 2, 3]])
    assert catalog_coverage(ranked, n_items=8) == 4 / 8
    assert catalog_coverage(ranked, n_items=8, k=1) == 1 / 8
    counts = np.array([8, 4, 2, 1, 0, 0, 0, 0], dtype=float)
    # -log2(p) with p = count / 8 users: 0, 1, 3 bits for items 0, 1, 3 and item 2 -> 2 bits
    assert novelty(ranked, counts, n_users=8) == pytest.approx((0 + 1 + 0 + 2 + 3) / 5)
    assert novelty(np.array([[4]]), counts, n_users=8) == pytest.approx(3.0)  # unseen: count 1
    # percentiles: items 4-7 tie at the bottom; item 0 is the most popular (1.0)
    assert popularity_bias(np.array([[0]]), counts) == 1.0
    assert popularity_bias(np.array([[0, 3]]), counts) == pytest.approx((1.0 + 4 / 7) / 2)
    assert math.isnan(novelty(np.array([[-1]]), counts, 8))


def test_ranker_metric_wrappers():
    assert roc_auc([0, 1, 1, 0], [0.1, 0.8, 0.7, 0.3]) == 1.0
    assert math.isnan(roc_auc([1, 1], [0.1, 0.2]))
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))


class ImplicitAdapter:
    """Lets implicit.evaluation drive one of our models."""

    def __init__(self, model):
        self.model = model

    def recommend(self, userid, user_items, N=10, filter_already_liked_items=True, **_):
        return self.model.recommend(np.asarray(userid), user_items, n=N, filter_seen=filter_already_liked_items)


@pytest.mark.parametrize(
    "model", [ALSRecommender(factors=8, regularization=1.0, iterations=10, random_state=0), EASERecommender(l2=10.0)]
)
def test_protocol_agrees_with_implicit_ranking_metrics(model):
    train, test = random_split()
    model.fit(train)
    k = 5  # every test user has >= k relevant items, so implicit's micro precision equals ours
    ours = evaluate_recommender(model, train, test, k=(k, 10), batch_size=37)
    theirs = ranking_metrics_at_k(ImplicitAdapter(model), train, test, K=k, show_progress=False)
    assert ours["precision@5"] == pytest.approx(theirs["precision"], abs=1e-9)
    assert ours["ndcg@5"] == pytest.approx(theirs["ndcg"], abs=1e-6)
    assert ours["map@5"] == pytest.approx(theirs["map"], abs=1e-6)
    assert ours["n_users"] == train.shape[0]
    assert ours["precision@5"] > 0.25  # the model learned the three groups (best possible: 5/11)
    assert {"recall@10", "hit_rate@10", "mrr@10", "coverage@10", "novelty@10", "popularity_bias@10"} <= set(ours)


def test_protocol_unknown_users_and_exclude():
    train, test = random_split(seed=1)
    model = EASERecommender(l2=10.0).fit(train)
    known = evaluate_recommender(model, train, test, k=5)
    unknown = evaluate_recommender(model, train, test, k=5, user_rows=np.full(train.shape[0], -1))
    assert unknown["ndcg@5"] == pytest.approx(known["ndcg@5"])  # EASE only needs the history row
    excluded = evaluate_recommender(model, train, test, k=5, exclude=np.arange(0, 60, 2))
    assert excluded["coverage@5"] <= 0.5
    with pytest.raises(ValueError, match="same shape"):
        evaluate_recommender(model, train, test[:, :10])
