"""Session-based kNN (V-SKNN): the items of the past visits most similar to the visitor's history.

A visitor's history (decay-weighted toward the last click, :data:`~.histories.HISTORY_DECAY`) is compared with
every stored visit that shares an item: ``sim(h, s) = sum_{i in h & s} w(h, i) * idf(i) / sqrt(|s|)``. The ``k``
most similar visits vote for their items with that similarity: ``score(h, j) = sum_{s in top-k, j in s} sim(h, s)``.
Only the ``sample_size`` most recent visits holding each item are compared, as V-SKNN samples recent sessions:
that bounds the work per request whatever the traffic, and favours what is current.

Hand-written (no maintained library ships a batched, sparse session kNN over CSR matrices): it is a few sparse
products with scipy and a vectorised per-row top-k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from .base import CandidateGenerator, as_csr, csr_from_state, csr_state, entry_rows, scores_from_sparse
from .selection import PRUNED_MAX_ROWS, top_of_sparse


class SessionKNNRecommender(CandidateGenerator):
    """Visits (sessions) as neighbours: what the most similar past visits went on to contain.

    Parameters
    ----------
    k : int
        Neighbour visits whose items are scored.
    sample_size : int
        Per item, only its most recent visits are compared (V-SKNN's recent-session sample).
    max_sessions : int
        The most recent visits kept from training (bounds the artifact).
    idf : bool
        Weight shared items by their inverse visit frequency (a shared rare item says more than a best seller).

    Learned attributes: ``sessions_`` (CSR visits x items, ones), ``inverted_`` (CSR items x visits: the sampled
    recent visits of each item, value ``idf(i) / sqrt(|s|)``), ``n_items_``.
    """

    family = "sknn"

    def __init__(self, k: int = 100, sample_size: int = 1000, max_sessions: int = 200_000, idf: bool = True):
        self.k = k
        self.sample_size = sample_size
        self.max_sessions = max_sessions
        self.idf = idf

    def fit(self, user_items: sparse.csr_matrix, sessions: Sequence[Sequence[int]] = ()) -> SessionKNNRecommender:
        """``sessions``: item columns per visit in time order, oldest visit first (``item2vec.item_sessions``)."""
        if self.k < 1 or self.sample_size < 1 or self.max_sessions < 1:
            raise ValueError("k, sample_size and max_sessions must be >= 1")
        n_items = as_csr(user_items).shape[1]
        kept = list(sessions)[-self.max_sessions:]
        lengths = np.array([len(s) for s in kept], dtype=np.int64)
        cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in kept]) if kept else np.zeros(0, np.int64)
        rows = np.repeat(np.arange(len(kept), dtype=np.int64), lengths)
        visits = sparse.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)),
                                   shape=(len(kept), n_items))
        visits.sum_duplicates()
        visits.data[:] = 1.0
        visits.sort_indices()
        self.sessions_ = visits
        self.inverted_ = self._inverted(visits, n_items)
        self.n_items_ = n_items
        return self

    def _inverted(self, visits: sparse.csr_matrix, n_items: int) -> sparse.csr_matrix:
        """Items x visits: each item's ``sample_size`` most recent visits, valued ``idf(i) / sqrt(|s|)``."""
        by_item = sparse.csr_matrix(visits.T)  # rows = items, columns = visits ascending (oldest first)
        by_item.sort_indices()
        lengths = np.diff(by_item.indptr)
        n_visits = max(visits.shape[0], 1)
        idf = np.log1p(n_visits / np.maximum(lengths, 1)).astype(np.float32) if self.idf else np.ones(n_items,
                                                                                                   np.float32)
        size = np.asarray(visits.sum(axis=1), dtype=np.float32).ravel()
        rows = entry_rows(by_item)
        # keep the last sample_size entries of each row (the most recent visits)
        from_end = by_item.indptr[rows + 1] - np.arange(by_item.nnz)
        keep = from_end <= self.sample_size
        values = idf[rows[keep]] / np.sqrt(np.maximum(size[by_item.indices[keep]], 1.0))
        out = sparse.csr_matrix((values.astype(np.float32), (rows[keep], by_item.indices[keep])),
                                shape=(n_items, visits.shape[0]))
        out.sort_indices()
        return out

    def _neighbour_scores(self, user_items: sparse.csr_matrix) -> sparse.csr_matrix:
        """Users x items: the votes of each history's ``k`` most similar visits (sparse)."""
        sims = sparse.csr_matrix(as_csr(user_items) @ self.inverted_, dtype=np.float32)
        sims.eliminate_zeros()
        lengths = np.diff(sims.indptr)
        if lengths.max(initial=0) > self.k:
            rows = entry_rows(sims)
            order = np.lexsort((-sims.data, rows))
            rank = np.empty(sims.nnz, dtype=np.int64)
            rank[order] = np.arange(sims.nnz) - sims.indptr[rows[order]]
            sims.data[rank >= self.k] = 0.0
            sims.eliminate_zeros()
        return sparse.csr_matrix(sims @ self.sessions_, dtype=np.float32)

    def _score_all(self, user_rows, user_items):
        return scores_from_sparse(self._neighbour_scores(user_items))

    def _propose(self, user_rows, user_items, k, seen, exclude, blocked):
        """A few users (serving): the top-k read from the sparse votes, as item-kNN does."""
        if len(user_rows) > PRUNED_MAX_ROWS:
            return super()._propose(user_rows, user_items, k, seen, exclude, blocked)
        votes = self._neighbour_scores(user_items)
        dense = scores_from_sparse(votes)
        return top_of_sparse(votes, k, seen, exclude, blocked), lambda cols: np.take_along_axis(dense, cols, axis=1)

    def _similar_all(self, item_cols):
        one = sparse.csr_matrix((np.ones(len(item_cols), dtype=np.float32),
                                 (np.arange(len(item_cols)), np.asarray(item_cols, dtype=np.int64))),
                                shape=(len(item_cols), self.n_items_))
        return scores_from_sparse(self._neighbour_scores(one))

    def _get_state(self):
        return {**csr_state("sessions", self.sessions_), **csr_state("inverted", self.inverted_)}

    def _set_state(self, state):
        self.sessions_ = csr_from_state("sessions", state)
        self.inverted_ = csr_from_state("inverted", state)
        self.n_items_ = self.sessions_.shape[1]
