"""Exact top-k for served visitors without a dense score row: the norm bound (factor models) and the sparse
product (item-kNN) choose exactly what dense scoring + ``top_n`` chooses."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from personalization.recommenders import selection
from personalization.recommenders.base import top_n
from personalization.recommenders.factorization import ALSRecommender
from personalization.recommenders.selection import NormRanking, best_of, top_by_norm_bound, top_of_sparse


def skewed_factors(n_items: int, dims: int, seed: int) -> np.ndarray:
    """Item vectors whose lengths span orders of magnitude, as implicit-feedback factors do (and some zero)."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n_items, dims)).astype(np.float32)
    factors *= (rng.pareto(1.5, size=n_items) + 0.01).astype(np.float32)[:, None]
    factors[rng.choice(n_items, n_items // 10, replace=False)] = 0.0
    return factors


def history(rows: int, n_items: int, per_row: int, seed: int) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    cols = np.concatenate([rng.choice(n_items, per_row, replace=False) for _ in range(rows)])
    return sparse.csr_matrix((np.ones(len(cols), np.float32), (np.repeat(np.arange(rows), per_row), cols)),
                             shape=(rows, n_items))


def dense_top(scores: np.ndarray, k: int, seen, exclude) -> np.ndarray:
    return top_n(np.array(scores, dtype=np.float32), k, seen=seen, exclude=exclude)[0]


def test_norm_bound_finds_exactly_the_dense_top_k_and_scores_few_items(monkeypatch):
    n_items, k = 60_000, 70
    factors = skewed_factors(n_items, 32, seed=1)
    users = np.random.default_rng(2).normal(size=(8, 32)).astype(np.float32)
    seen = history(8, n_items, 300, seed=3)
    exclude = np.random.default_rng(4).choice(n_items, 500, replace=False)
    ranking = NormRanking.of(factors)
    scored = []
    original = NormRanking.scores
    monkeypatch.setattr(NormRanking, "scores", lambda self, f, u, a, b: scored.append(b - a) or original(
        self, f, u, a, b))

    got = top_by_norm_bound(users, factors, ranking, k, seen, exclude, None)

    assert np.array_equal(got, dense_top(users @ factors.T, k, seen, exclude))
    assert sum(scored) < n_items * len(users) / 4, "the bound never stopped the scan early"


def test_norm_bound_scans_everything_when_the_bound_cannot_help():
    """Negative best scores (a visitor unlike every item) and a zero vector: no early stop, still the right items."""
    factors = np.abs(np.random.default_rng(5).normal(size=(5_000, 8))).astype(np.float32) + 0.01
    users = np.stack([-np.ones(8, np.float32), np.zeros(8, np.float32)])
    got = top_by_norm_bound(users, factors, NormRanking.of(factors), 20, None, None, None)
    assert np.array_equal(got[0], dense_top(users[:1] @ factors.T, 20, None, None)[0])
    assert len(set(got[1].tolist())) == 20 and (got[1] >= 0).all()  # all tie at 0: any 20 distinct items


def test_norm_bound_pads_when_fewer_items_can_be_proposed_and_skips_blocked_rows():
    factors = skewed_factors(50, 4, seed=6)
    users = np.random.default_rng(7).normal(size=(2, 4)).astype(np.float32)
    seen = history(2, 50, 20, seed=8)
    got = top_by_norm_bound(users, factors, NormRanking.of(factors), 40, seen, np.arange(10), np.array([False, True]))
    expected = dense_top(users[:1] @ factors.T, 40, seen[0], np.arange(10))[0]
    assert np.array_equal(got[0], expected)
    assert (got[0][got[0] >= 0]).size == np.count_nonzero(expected >= 0) <= 30
    assert (got[1] == -1).all()


def test_norm_bound_reads_beyond_the_contiguous_head(monkeypatch):
    monkeypatch.setattr(selection, "HEAD_ROWS", 64)
    factors = skewed_factors(3_000, 8, seed=9)
    users = np.random.default_rng(10).normal(size=(3, 8)).astype(np.float32)
    ranking = NormRanking.of(factors)
    assert len(ranking.head) < len(factors)
    for start, stop in [(0, 10), (100, 400), (50, 3_000)]:
        assert np.allclose(ranking.scores(factors, users[0], start, stop),
                           factors[ranking.order[start:stop]] @ users[0])
    got = top_by_norm_bound(users, factors, ranking, 500, None, None, None)
    assert np.array_equal(got, dense_top(users @ factors.T, 500, None, None))


def test_top_of_sparse_reads_the_stored_entries_ties_to_the_smaller_column():
    scores = sparse.csr_matrix(np.array([
        [0, 3, 0, 3, 1, 3, 0, 2],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [5, 0, 4, 0, 0, 0, 0, 1],
    ], dtype=np.float32))
    seen = sparse.csr_matrix(([1.0], ([0], [3])), shape=(3, 8))
    got = top_of_sparse(scores, 3, seen, np.array([7]), np.array([False, False, True]))
    assert got.tolist() == [[1, 5, 4], [-1, -1, -1], [-1, -1, -1]]  # 3 seen, 7 excluded; absent entries never


@pytest.mark.parametrize("k", [1, 3, 10])
def test_best_of_orders_by_score_then_column(k):
    cols = np.array([9, 2, 7, 4, 5, 1])
    scores = np.array([1.0, 2.0, 2.0, -np.inf, np.nan, 0.5], dtype=np.float32)
    assert best_of(cols, scores, k).tolist() == [2, 7, 9, 1][:k]


def test_als_serves_a_visitor_as_its_dense_scores_rank_the_catalog():
    """The served path (a few rows) of a fitted ALS gives the dense path's items, known and unknown visitors."""
    rng = np.random.default_rng(11)
    n_users, n_items = 300, 20_000
    popular = rng.zipf(1.3, size=9_000) % n_items
    interactions = sparse.csr_matrix((np.ones(9_000, np.float32), (rng.integers(0, n_users, 9_000), popular)),
                                     shape=(n_users, n_items))
    model = ALSRecommender(factors=16, iterations=5, random_state=0).fit(interactions)
    rows = np.array([0, 5, -1])
    x = interactions[[0, 5, 7]]
    ids, scores_at = model._propose(rows, x, 50, x, np.array([1, 2]), None)
    dense = model._score_all(rows, x)
    assert np.array_equal(ids, dense_top(dense, 50, x, np.array([1, 2])))
    assert np.allclose(scores_at(np.where(ids >= 0, ids, 0)), np.take_along_axis(dense, ids, axis=1), rtol=1e-5)
