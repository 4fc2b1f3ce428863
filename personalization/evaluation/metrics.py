"""Ranking and ranker metrics: pure functions on numpy arrays and CSR matrices.

``ranked`` is an int array (users x slots) of item columns, best first, padded with ``-1``
(what :meth:`CandidateGenerator.recommend` returns). ``relevant`` is either a CSR matrix
with one row per row of ``ranked`` (nonzero = relevant, e.g. the test window) or a
sequence of per-user collections of item columns. Relevance is binary.

Each ``<metric>_at_k`` returns the mean over users with at least one relevant item; each
``<metric>_at_k_per_user`` returns one value per row, NaN for users without relevant items.
The definitions match ``implicit.evaluation.ranking_metrics_at_k``: MAP@k divides by
``min(k, |relevant|)``; NDCG@k uses the ideal DCG of ``min(k, |relevant|)`` hits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn import metrics as skm


def _relevant_csr(relevant, n_rows: int) -> sparse.csr_matrix:
    if sparse.issparse(relevant):
        matrix = sparse.csr_matrix(relevant)
    else:
        rows, cols = [], []
        for u, items in enumerate(relevant):
            items = np.fromiter((int(i) for i in items), dtype=np.int64)
            rows.append(np.full(len(items), u, dtype=np.int64))
            cols.append(items)
        rows_a = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        cols_a = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        n_cols = int(cols_a.max()) + 1 if cols_a.size else 1
        matrix = sparse.csr_matrix(
            (np.ones(len(rows_a), dtype=np.float32), (rows_a, cols_a)), shape=(len(relevant), n_cols)
        )
    if matrix.shape[0] != n_rows:
        raise ValueError(f"relevant has {matrix.shape[0]} rows but ranked has {n_rows}")
    matrix = matrix.copy()
    matrix.eliminate_zeros()
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def _hits(ranked, relevant, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean hits (users x k) and the number of relevant items per user."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be 2-D (users x slots), got shape {ranked.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top = ranked[:, :k].astype(np.int64)
    if top.shape[1] < k:  # fewer slots than k: the missing ones are misses
        top = np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=-1)
    rel = _relevant_csr(relevant, top.shape[0])
    n_rel = np.diff(rel.indptr)
    n_cols = max(rel.shape[1], int(top.max()) + 1 if top.size else 1, 1)
    rel_keys = np.repeat(np.arange(rel.shape[0], dtype=np.int64), n_rel) * n_cols + rel.indices
    valid = top >= 0
    keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_cols + np.where(valid, top, 0)
    hits = valid & np.isin(keys, rel_keys)
    # an item listed twice in a ranking counts once (at its first position)
    order = np.argsort(top, axis=1, kind="stable")
    in_order = np.take_along_axis(top, order, axis=1)
    repeated = np.zeros_like(hits)
    repeated[:, 1:] = (in_order[:, 1:] == in_order[:, :-1]) & (in_order[:, 1:] >= 0)
    duplicate = np.zeros_like(hits)
    np.put_along_axis(duplicate, order, repeated, axis=1)
    hits &= ~duplicate
    return hits, n_rel


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _masked(values: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64)
    out[n_rel == 0] = np.nan
    return out


def precision_at_k_per_user(ranked, relevant, k: int = 10) -> np.ndarray:
    """Hits in the top k divided by k."""
    hits, n_rel = _hits(ranked, relevant, k)
    return _masked(hits.sum(axis=1) / k, n_rel)


def recall_at_k_per_user(ranked, relevant, k: int = 10) -> np.ndarray:
    """Hits in the top k divided by the number of relevant items."""
    hits, n_rel = _hits(ranked, relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _masked(hits.sum(axis=1) / n_rel, n_rel)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_at_k_per_user(ranked, relevant, k: int = 10) -> np.ndarray:
    """Binary-relevance DCG@k over the ideal DCG of ``min(k, |relevant|)`` hits."""
    hits, n_rel = _hits(ranked, relevant, k)
    disc = _discounts(k)
    dcg = hits @ disc
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_rel, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _masked(dcg / ideal, n_rel)


def map_at_k_per_user(ranked, relevant, k: int = 10) -> np.ndarray:
    """Average precision at the hit positions, divided by ``min(k, |relevant|)``."""
    hits, n_rel = _hits(ranked, relevant, k)
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _masked((precision_at_i * hits).sum(axis=1) / np.minimum(n_rel, k), n_rel)


def hit_rate_at_k_per_user(ranked, relevant, k: int = 10) -> np.ndarray:
    """1 if any of the top k is relevant, else 0."""
    hits, n_rel = _hits(ranked, relevant, k)
    return _masked(hits.any(axis=1).astype(np.float64), n_rel)


def mrr_at_k_per_user(ranked, relevant, k: int = 10) -> np.ndarray:
    """Reciprocal rank of the first relevant item in the top k (0 if none)."""
    hits, n_rel = _hits(ranked, relevant, k)
    first = np.argmax(hits, axis=1)
    return _masked(np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0), n_rel)


def precision_at_k(ranked, relevant, k: int = 10) -> float:
    """Mean precision@k over users with at least one relevant item."""
    return _mean(precision_at_k_per_user(ranked, relevant, k))


def recall_at_k(ranked, relevant, k: int = 10) -> float:
    """Mean recall@k over users with at least one relevant item."""
    return _mean(recall_at_k_per_user(ranked, relevant, k))


def ndcg_at_k(ranked, relevant, k: int = 10) -> float:
    """Mean NDCG@k over users with at least one relevant item."""
    return _mean(ndcg_at_k_per_user(ranked, relevant, k))


def map_at_k(ranked, relevant, k: int = 10) -> float:
    """Mean average precision@k over users with at least one relevant item."""
    return _mean(map_at_k_per_user(ranked, relevant, k))


def hit_rate_at_k(ranked, relevant, k: int = 10) -> float:
    """Share of users (with relevant items) with at least one hit in the top k."""
    return _mean(hit_rate_at_k_per_user(ranked, relevant, k))


def mrr_at_k(ranked, relevant, k: int = 10) -> float:
    """Mean reciprocal rank@k over users with at least one relevant item."""
    return _mean(mrr_at_k_per_user(ranked, relevant, k))


# -- beyond accuracy ------------------------------------------------------------------------------
def _recommended(ranked, k: int | None) -> np.ndarray:
    ranked = np.asarray(ranked)
    top = ranked if k is None else ranked[:, :k]
    return top[top >= 0].astype(np.int64)


def catalog_coverage(ranked, n_items: int, k: int | None = None) -> float:
    """Share of the ``n_items`` catalogue appearing in at least one top-k list."""
    if n_items <= 0:
        raise ValueError(f"n_items must be > 0, got {n_items}")
    return float(np.unique(_recommended(ranked, k)).size / n_items)


def novelty(ranked, item_counts: Sequence[float] | np.ndarray, n_users: int, k: int | None = None) -> float:
    """Mean self-information ``-log2(p_i)`` of recommended items, ``p_i = count_i / n_users``.

    ``item_counts`` is the number of (training) users who interacted with each item;
    counts below 1 are treated as 1 so never-seen items are maximally novel, not infinite.
    """
    counts = np.asarray(item_counts, dtype=np.float64)
    rec = _recommended(ranked, k)
    if rec.size == 0:
        return float("nan")
    p = np.clip(counts[rec], 1.0, None) / max(n_users, 1)
    return float(np.mean(-np.log2(np.clip(p, None, 1.0))))


def popularity_bias(ranked, item_counts: Sequence[float] | np.ndarray, k: int | None = None) -> float:
    """Mean popularity percentile (0 = least, 1 = most popular item) of recommended items."""
    from scipy.stats import rankdata

    counts = np.asarray(item_counts, dtype=np.float64)
    rec = _recommended(ranked, k)
    if rec.size == 0:
        return float("nan")
    percentile = (rankdata(counts, method="average") - 1) / max(len(counts) - 1, 1)
    return float(np.mean(percentile[rec]))


def item_counts(user_items: sparse.spmatrix) -> np.ndarray:
    """Number of users who interacted with each item (nonzeros per column)."""
    return np.asarray(sparse.csc_matrix(user_items).getnnz(axis=0), dtype=np.float64)


# -- rankers --------------------------------------------------------------------------------------
def roc_auc(y_true, y_score) -> float:
    """ROC AUC (NaN when ``y_true`` holds a single class)."""
    y_true = np.asarray(y_true)
    if np.unique(y_true).size < 2:
        return float("nan")
    return float(skm.roc_auc_score(y_true, y_score))


def log_loss(y_true, y_prob) -> float:
    """Binary cross-entropy of predicted P(positive)."""
    return float(skm.log_loss(np.asarray(y_true), np.clip(np.asarray(y_prob, dtype=np.float64), 0, 1), labels=[0, 1]))
