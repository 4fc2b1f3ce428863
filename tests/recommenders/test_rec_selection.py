"""Exact top-k for served visitors without a dense score row: the norm bound (factor models) and the sparse
product (item-kNN) choose exactly what dense scoring + ``top_n`` chooses."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from personalization.recommenders import FAMILIES, selection
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


class NeverMultiplied:
    """Stands for the factor matrix where a scan the bound stops never needs the full product."""

    def __matmul__(self, other):
        raise AssertionError("the bound did not stop the scan: every item was scored")


def test_norm_bound_finds_exactly_the_dense_top_k_from_a_prefix_of_the_catalog():
    n_items, k = 60_000, 70
    factors = skewed_factors(n_items, 32, seed=1)
    users = np.random.default_rng(2).normal(size=(8, 32)).astype(np.float32)
    seen = history(8, n_items, 300, seed=3)
    exclude = np.random.default_rng(4).choice(n_items, 500, replace=False)
    ranking = NormRanking.of(factors)
    assert len(ranking.head) < n_items

    got = top_by_norm_bound(users, NeverMultiplied(), ranking, k, seen, exclude, None)

    assert np.array_equal(got, dense_top(users @ factors.T, k, seen, exclude))


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


@pytest.mark.parametrize("case", ["similar lengths", "negative scores", "zero vector"])
def test_norm_bound_falls_back_to_one_product_when_it_cannot_stop(monkeypatch, case):
    """Beyond the contiguous head the whole catalog is scored at once (no gathers, no sort of every item)."""
    monkeypatch.setattr(selection, "HEAD_ROWS", 256)
    rng = np.random.default_rng(12)
    factors = rng.normal(size=(6_000, 16)).astype(np.float32)
    if case == "similar lengths":
        factors /= np.linalg.norm(factors, axis=1, keepdims=True)
    users = rng.normal(size=(3, 16)).astype(np.float32)
    if case == "negative scores":
        factors = np.abs(factors)
        users = -np.abs(users)
    if case == "zero vector":
        users[1] = 0.0
    seen = history(3, 6_000, 40, seed=13)
    ranking = NormRanking.of(factors)
    assert len(ranking.head) == 375  # 1/16 of the catalog

    got = top_by_norm_bound(users, factors, ranking, 50, seen, np.arange(5), None)

    expected = dense_top(users @ factors.T, 50, seen, np.arange(5))
    rows = [0, 2] if case == "zero vector" else [0, 1, 2]
    assert np.array_equal(got[rows], expected[rows])
    if case == "zero vector":  # every item ties at 0: the smallest unseen, unexcluded columns
        allowed = np.setdiff1d(np.arange(5, 6_000), seen[1].indices)
        assert got[1].tolist() == allowed[:50].tolist()


def test_seen_columns_beyond_the_catalog_are_ignored_as_top_n_does():
    factors = skewed_factors(300, 4, seed=14)
    users = np.random.default_rng(15).normal(size=(1, 4)).astype(np.float32)
    seen = sparse.csr_matrix(([1.0, 1.0], ([0, 0], [3, 450])), shape=(1, 500))
    got = top_by_norm_bound(users, factors, NormRanking.of(factors), 10, seen, None, None)
    assert np.array_equal(got, dense_top(users @ factors.T, 10, seen, None))
    scores = sparse.csr_matrix(np.arange(1, 301, dtype=np.float32)[None, :])
    assert top_of_sparse(scores, 3, seen, None, None).tolist() == [[299, 298, 297]]


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


def test_best_of_breaks_a_large_tie_by_the_smallest_columns():
    cols = np.random.default_rng(16).permutation(10_000)
    scores = np.zeros(10_000, dtype=np.float32)
    scores[cols == 777] = 1.0
    assert best_of(cols, scores, 4).tolist() == [777, 0, 1, 2]


@pytest.mark.parametrize("family", ["als", "bpr"])
def test_factor_models_serve_a_visitor_as_their_dense_scores_rank_the_catalog(family):
    """The served path (a few rows) of a fitted model gives the dense path's items, known and unknown visitors,
    on a catalog large enough for the bound to stop early (BPR: a bias column, scores of either sign)."""
    rng = np.random.default_rng(11)
    n_users, n_items = 300, 20_000
    popular = rng.zipf(1.3, size=9_000) % n_items
    interactions = sparse.csr_matrix((np.ones(9_000, np.float32), (rng.integers(0, n_users, 9_000), popular)),
                                     shape=(n_users, n_items))
    model = FAMILIES[family](factors=16, iterations=5 if family == "als" else 20, random_state=0).fit(interactions)
    rows = np.array([0, 5, -1])
    x = interactions[[0, 5, 7]]
    ids, scores_at = model._propose(rows, x, 50, x, np.array([1, 2]), None)
    dense = model._score_all(rows, x)
    expected = dense_top(dense, 50, x, np.array([1, 2]))
    # the same ranking; a matrix-vector product may round the last bit differently from the dense product
    assert np.allclose(np.take_along_axis(dense, ids, axis=1), np.take_along_axis(dense, expected, axis=1),
                       rtol=1e-6, atol=0)
    assert np.mean(ids == expected) > 0.95
    assert np.allclose(scores_at(ids), np.take_along_axis(dense, ids, axis=1), rtol=1e-5, atol=1e-7)


def test_a_refitted_or_reloaded_model_ranks_its_own_factors(tmp_path):
    first, second = (sparse.random(50, 3_000, density=0.02, random_state=s, format="csr", dtype=np.float32)
                     for s in (1, 2))
    model = ALSRecommender(factors=8, iterations=3, random_state=0).fit(first)
    x = first[[0]]
    model._propose(np.array([0]), x, 10, None, None, None)
    model.fit(second)
    ids, _ = model._propose(np.array([0]), second[[0]], 10, None, None, None)
    assert np.array_equal(ids, dense_top(model._score_all(np.array([0]), second[[0]]), 10, None, None))
    model.save(tmp_path / "m.npz")
    loaded = ALSRecommender.load(tmp_path / "m.npz")
    assert np.array_equal(loaded._propose(np.array([0]), second[[0]], 10, None, None, None)[0], ids)
