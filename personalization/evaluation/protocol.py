"""Offline evaluation protocol: rank for users with test interactions, score on the test window."""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
from scipy import sparse

from . import metrics as m

RANKING_METRICS = {
    "precision": m.precision_at_k,
    "recall": m.recall_at_k,
    "ndcg": m.ndcg_at_k,
    "map": m.map_at_k,
    "hit_rate": m.hit_rate_at_k,
    "mrr": m.mrr_at_k,
}


def sample_users(
    users: np.ndarray, max_users: int | None, random_state: int | np.random.Generator | None = None
) -> np.ndarray:
    """At most ``max_users`` of the distinct ``users`` (sorted): all of them when there are no more (or
    ``max_users`` is None), else a uniform sample without replacement drawn with ``random_state``.

    The sample depends only on the set of users and the seed, not on their order, so two models evaluated on the
    same users with the same seed are scored on the same sample.
    """
    users = np.unique(np.asarray(users))
    if max_users is None or len(users) <= max_users:
        return users
    if max_users < 1:
        raise ValueError(f"max_users must be >= 1 or None, got {max_users}")
    rng = np.random.default_rng(random_state)
    return np.sort(users[rng.choice(len(users), int(max_users), replace=False)])


def evaluate_recommender(
    model,
    train_csr: sparse.csr_matrix,
    test_csr: sparse.csr_matrix,
    k: int | Iterable[int] = (10, 20),
    user_rows: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    batch_size: int = 1000,
    users: np.ndarray | None = None,
    max_users: int | None = None,
    random_state: int | np.random.Generator | None = None,
) -> dict[str, float]:
    """Evaluate a fitted candidate generator on a train/test split.

    Rows of ``train_csr`` and ``test_csr`` are the same users; ``user_rows`` gives each
    row's user index in the model (default: the row itself; ``-1`` for users the model was
    not trained on, scored from their train history). Only users with at least one test
    interaction are ranked; items of their train history are filtered out, as are
    ``exclude``. Test items that were already in the train history stay relevant (as in
    ``implicit.evaluation``), so a split should keep only new interactions in the test
    window when repeat consumption is not to be predicted.

    ``users`` (matrix rows) restricts the evaluation to those users, e.g. a sample shared
    with another model so that the comparison is paired; ``max_users`` caps it with a seeded
    random sample (:func:`sample_users` with ``random_state``). Users are scored
    ``batch_size`` at a time, so memory does not grow with their number.

    Returns ``{"precision@10": ..., "recall@10", "ndcg@10", "map@10", "hit_rate@10",
    "mrr@10", "coverage@10", "novelty@10", "popularity_bias@10", ...,
    "n_users": <users evaluated>, "n_users_total": <users with test interactions>, "seconds": ...}``.
    """
    train_csr = sparse.csr_matrix(train_csr, dtype=np.float32)
    test_csr = sparse.csr_matrix(test_csr, dtype=np.float32)
    if train_csr.shape != test_csr.shape:
        raise ValueError(f"train_csr {train_csr.shape} and test_csr {test_csr.shape} must have the same shape")
    ks = sorted({int(k)} if np.isscalar(k) else {int(x) for x in k})
    if not ks or ks[0] < 1:
        raise ValueError(f"k must be positive, got {k!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_users, n_items = train_csr.shape
    rows = np.arange(n_users) if user_rows is None else np.asarray(user_rows, dtype=np.int64).ravel()
    if len(rows) != n_users:
        raise ValueError(f"user_rows needs one model user index per matrix row ({n_users}), got {len(rows)}")

    start = time.perf_counter()
    eligible = np.flatnonzero(np.diff(test_csr.indptr) > 0)
    chosen = eligible if users is None else np.intersect1d(eligible, np.asarray(users, dtype=np.int64))
    users = sample_users(chosen, max_users, random_state)
    n = ks[-1]
    ranked = np.full((len(users), n), -1, dtype=np.int32)
    for lo in range(0, len(users), batch_size):
        batch = users[lo : lo + batch_size]
        ranked[lo : lo + len(batch)], _ = model.recommend(rows[batch], train_csr[batch], n=n, exclude=exclude)
    relevant = test_csr[users]

    counts = m.item_counts(train_csr)
    result: dict[str, float] = {}
    for kk in ks:
        for name, fn in RANKING_METRICS.items():
            result[f"{name}@{kk}"] = fn(ranked, relevant, kk)
        result[f"coverage@{kk}"] = m.catalog_coverage(ranked, n_items, kk)
        result[f"novelty@{kk}"] = m.novelty(ranked, counts, n_users, kk)
        result[f"popularity_bias@{kk}"] = m.popularity_bias(ranked, counts, kk)
    result["n_users"] = int(len(users))
    result["n_users_total"] = int(len(eligible))
    result["seconds"] = time.perf_counter() - start
    return result
