"""Last-item transitions: what visitors clicked right after each item, for session-aware candidates.

``score(u, j) = sum_i w(u, i) * P(next = j | i)`` over the history's items ``i``: with an ordered (anonymous)
history the weights decay from the last click (:data:`~.histories.HISTORY_DECAY`), so the last click counts most,
the same sequence-aware weighting as V-SKNN. Unlike item-kNN's co-occurrence, the relation is directed and
counts only adjacent clicks, the strongest signal for a session's next click.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from .base import as_csr
from .neighbors import ItemKNNRecommender


class TransitionsRecommender(ItemKNNRecommender):
    """Directed item -> next item transition probabilities, from consecutive clicks of the same visit.

    Parameters
    ----------
    k : int
        Successors kept per item (the most frequent).
    min_count : int
        Transitions seen fewer times are dropped (noise).

    Learned attributes: ``similarity_`` (CSR n_items x n_items, row i = P(next | i) over i's kept successors),
    ``n_items_``. Scoring, proposals and persistence are item-kNN's.
    """

    family = "transitions"

    def __init__(self, k: int = 100, min_count: int = 1):
        self.k = k
        self.min_count = min_count

    def fit(self, user_items: sparse.csr_matrix, sessions: Sequence[Sequence[int]] = ()) -> TransitionsRecommender:
        """``sessions``: item columns per visit in time order (see ``item2vec.item_sessions``)."""
        n_items = as_csr(user_items).shape[1]
        src, dst = [], []
        for seq in sessions:
            seq = np.asarray(seq, dtype=np.int64)
            if len(seq) > 1:
                src.append(seq[:-1])
                dst.append(seq[1:])
        a = np.concatenate(src) if src else np.zeros(0, dtype=np.int64)
        b = np.concatenate(dst) if dst else np.zeros(0, dtype=np.int64)
        moved = a != b  # a reload of the same page is no transition
        counts = sparse.csr_matrix((np.ones(int(moved.sum()), dtype=np.float32), (a[moved], b[moved])),
                                   shape=(n_items, n_items))
        counts.sum_duplicates()
        counts.data[counts.data < self.min_count] = 0
        counts.eliminate_zeros()
        self.similarity_ = _row_top_k(_row_normalized(counts), self.k)
        self.n_items_ = n_items
        return self


def _row_normalized(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.where(totals > 0, 1.0 / np.where(totals > 0, totals, 1.0), 0.0).astype(np.float32)
    return sparse.csr_matrix(sparse.diags(scale) @ counts, dtype=np.float32)


def _row_top_k(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """The ``k`` largest entries of each row, indices sorted."""
    matrix = sparse.csr_matrix(matrix)
    lengths = np.diff(matrix.indptr)
    if lengths.max(initial=0) > k:
        keep = np.ones(matrix.nnz, dtype=bool)
        for r in np.flatnonzero(lengths > k):
            lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
            order = np.argsort(-matrix.data[lo:hi], kind="stable")
            keep[lo + order[k:]] = False
        matrix.data[~keep] = 0
        matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix
