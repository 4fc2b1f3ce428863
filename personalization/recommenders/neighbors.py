"""Item-based k-nearest-neighbours on interaction vectors (wraps ``implicit.nearest_neighbours``)."""

from __future__ import annotations

import warnings

import numpy as np
from implicit.nearest_neighbours import (
    BM25Recommender,
    CosineRecommender,
    TFIDFRecommender,
)
from implicit.utils import ParameterWarning
from scipy import sparse

from .base import (
    CandidateGenerator,
    as_csr,
    csr_from_state,
    csr_state,
    scores_from_sparse,
)
from .selection import PRUNED_MAX_ROWS, top_of_sparse

SIMILARITIES = ("cosine", "bm25", "tfidf")


class ItemKNNRecommender(CandidateGenerator):
    """Item-item kNN: score(u, j) = sum over the user's items i of weight(u, i) * sim(i, j).

    Parameters
    ----------
    k : int
        Neighbours kept per item.
    similarity : {"cosine", "bm25", "tfidf"}
        Item-item weighting, as in ``implicit`` (Cosine/BM25/TFIDF recommenders).
    K1, B : float
        BM25 parameters (used only with ``similarity="bm25"``).
    num_threads : int
        Threads for the neighbour computation (0 = all cores); the result does not depend on it.

    Learned attributes: ``similarity_`` (CSR n_items x n_items, row i = neighbours of i), ``n_items_``.
    Items an user's history does not reach get ``-inf`` (no candidate rather than score 0).
    """

    family = "itemknn"

    def __init__(
        self, k: int = 100, similarity: str = "cosine", K1: float = 1.2, B: float = 0.75, num_threads: int = 0
    ):
        self.k = k
        self.similarity = similarity
        self.K1 = K1
        self.B = B
        self.num_threads = num_threads

    def fit(self, user_items: sparse.csr_matrix) -> ItemKNNRecommender:
        user_items = as_csr(user_items)
        if self.similarity == "cosine":
            model = CosineRecommender(K=self.k, num_threads=self.num_threads)
        elif self.similarity == "bm25":
            model = BM25Recommender(K=self.k, K1=self.K1, B=self.B, num_threads=self.num_threads)
        elif self.similarity == "tfidf":
            model = TFIDFRecommender(K=self.k, num_threads=self.num_threads)
        else:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {self.similarity!r}")
        with warnings.catch_warnings():
            # implicit's weighting hands a COO matrix to its own CSR check
            warnings.simplefilter("ignore", category=ParameterWarning)
            model.fit(user_items, show_progress=False)
        sim = sparse.csr_matrix(model.similarity, dtype=np.float32)
        sim.eliminate_zeros()
        sim.sort_indices()
        self.similarity_ = sim
        self.n_items_ = user_items.shape[1]
        return self

    def _score_all(self, user_rows, user_items):
        return scores_from_sparse(user_items @ self.similarity_)

    def _propose(self, user_rows, user_items, k, seen, exclude, blocked):
        """A few users (serving): the top-k read from the sparse product's entries (the items the history's
        neighbours reach) instead of passes over a dense row; the dense row only answers the score lookups."""
        if len(user_rows) > PRUNED_MAX_ROWS:
            return super()._propose(user_rows, user_items, k, seen, exclude, blocked)
        product = sparse.csr_matrix(as_csr(user_items) @ self.similarity_, dtype=np.float32)
        dense = scores_from_sparse(product)  # a fill and a scatter: cheaper than sorting the product for lookups
        return top_of_sparse(product, k, seen, exclude, blocked), lambda cols: np.take_along_axis(dense, cols, axis=1)

    def _similar_all(self, item_cols):
        return scores_from_sparse(self.similarity_[item_cols])

    def _similar_at(self, item_cols, cols):
        # the stored entries at (item_cols x cols), -inf elsewhere: the rows' entries keyed (row position, column)
        # and looked up with one searchsorted (scipy's two-step fancy indexing cost more than the lookup)
        sim = self.similarity_
        item_cols, cols = np.asarray(item_cols, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        starts, ends = sim.indptr[item_cols], sim.indptr[item_cols + 1]
        lengths = ends - starts
        out = np.full((len(item_cols), len(cols)), -np.inf, dtype=np.float32)
        if not lengths.sum() or not len(cols):
            return out
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        at = offsets + np.arange(lengths.sum())
        n = np.int64(self.n_items_)
        keys = np.repeat(np.arange(len(item_cols), dtype=np.int64), lengths) * n + sim.indices[at]
        wanted = np.arange(len(item_cols), dtype=np.int64)[:, None] * n + cols[None, :]
        pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        hit = keys[pos] == wanted
        out[hit] = np.asarray(sim.data[at], dtype=np.float32)[pos[hit]]
        return out

    def _get_state(self):
        return csr_state("similarity", self.similarity_)

    def _set_state(self, state):
        self.similarity_ = csr_from_state("similarity", state)
        self.n_items_ = self.similarity_.shape[1]
