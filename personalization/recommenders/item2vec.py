"""Item2vec: gensim Word2Vec trained on sequences of item columns (sessions, cut from the events)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from gensim.models import Word2Vec
from scipy import sparse

from ..pipeline.columns import ITEM, SESSION, TIMESTAMP, USER
from ..pipeline.interactions import InteractionMatrix
from ..pipeline.split import sessionize
from .base import CandidateGenerator, as_csr, l1_csr_rows, top_n, unit_rows


class Item2VecRecommender(CandidateGenerator):
    """Skip-gram (or CBOW) item embeddings learned from item co-occurrence in sessions.

    ``fit(user_items, sessions)`` trains on ``sessions`` (lists of item columns in visit
    order); without sessions each user's items, ordered by column, form one sequence.
    Training uses ``workers=1`` so a given ``random_state`` gives the same vectors.
    ``sample`` is Word2Vec's down-sampling of frequent tokens: on a small catalogue every
    item is "frequent", so use ``sample=0`` there.

    A history row is embedded as the confidence-weighted mean of its item vectors; an
    ordered session (:meth:`session_vector`) weights the item at distance ``d`` from the
    end by ``recency_decay ** d``. Scores are cosine similarities. Items never seen in
    training have no vector and score ``-inf``.

    Learned attributes: ``item_vectors_`` (float32 n_items x vector_size, zeros where
    missing), ``has_vector_`` (bool, n_items), ``n_items_``.
    """

    family = "item2vec"

    def __init__(
        self,
        vector_size: int = 64,
        window: int = 5,
        min_count: int = 1,
        epochs: int = 10,
        negative: int = 5,
        sg: int = 1,
        sample: float = 1e-3,
        recency_decay: float = 0.9,
        random_state: int | None = None,
    ):
        self.vector_size = vector_size
        self.window = window
        self.min_count = min_count
        self.epochs = epochs
        self.negative = negative
        self.sg = sg
        self.sample = sample
        self.recency_decay = recency_decay
        self.random_state = random_state

    def fit(self, user_items: sparse.csr_matrix, sessions: list[list[int]] | None = None) -> Item2VecRecommender:
        user_items = as_csr(user_items)
        n_items = user_items.shape[1]
        if sessions is None:
            sequences = [
                [str(c) for c in user_items.indices[user_items.indptr[u] : user_items.indptr[u + 1]]]
                for u in range(user_items.shape[0])
            ]
        else:
            sequences = []
            for session in sessions:
                cols = np.asarray(session, dtype=np.int64)
                if cols.size and (cols.min() < 0 or cols.max() >= n_items):
                    raise ValueError(f"sessions must contain item columns in [0, {n_items})")
                sequences.append([str(c) for c in cols])
        sequences = [s for s in sequences if s]
        seed = int(np.random.default_rng(self.random_state).integers(2**31 - 1))
        vectors = np.zeros((n_items, self.vector_size), dtype=np.float32)
        has_vector = np.zeros(n_items, dtype=bool)
        if sequences:
            gensim_logger = logging.getLogger("gensim")
            level = gensim_logger.level
            gensim_logger.setLevel(logging.WARNING)
            try:
                model = Word2Vec(
                    sentences=sequences,
                    vector_size=self.vector_size,
                    window=self.window,
                    min_count=self.min_count,
                    epochs=self.epochs,
                    negative=self.negative,
                    sg=self.sg,
                    sample=self.sample,
                    workers=1,
                    seed=seed,
                )
            finally:
                gensim_logger.setLevel(level)
            keys = np.array([int(k) for k in model.wv.index_to_key], dtype=np.int64)
            vectors[keys] = model.wv.vectors
            has_vector[keys] = True
        self.item_vectors_ = vectors
        self.has_vector_ = has_vector
        self.n_items_ = n_items
        return self

    def _unit_vectors(self) -> np.ndarray:
        """The item vectors scaled to length 1 (zero rows stay zero), computed once per fitted or loaded model: a
        serving request reads them several times (its candidates, the last-item features, the reasons)."""
        if getattr(self, "_unit_of", None) is not self.item_vectors_:
            self._unit = unit_rows(self.item_vectors_)
            self._unit_of = self.item_vectors_
        return self._unit

    def _cosine(self, queries: np.ndarray) -> np.ndarray:
        queries = unit_rows(np.asarray(queries, dtype=np.float32))
        scores = np.asarray(queries @ self._unit_vectors().T, dtype=np.float32)
        scores[:, ~self.has_vector_] = -np.inf
        scores[~queries.any(axis=1), :] = -np.inf
        return scores

    def _similar_at(self, item_cols: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Cosines of the ``item_cols`` with the ``cols`` only, not with the whole catalog."""
        unit = self._unit_vectors()
        item_cols, cols = np.asarray(item_cols, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        scores = np.asarray(unit[item_cols] @ unit[cols].T, dtype=np.float32)
        scores[:, ~self.has_vector_[cols]] = -np.inf
        scores[~self.has_vector_[item_cols], :] = -np.inf
        return scores

    def history_vector(self, user_items: sparse.csr_matrix) -> np.ndarray:
        """Confidence-weighted mean vector of each history row (zeros when no item has a vector)."""
        self._check_fitted()
        rows = as_csr(user_items)
        with_vectors = sparse.csr_matrix((np.where(self.has_vector_[rows.indices], rows.data, 0.0), rows.indices,
                                          rows.indptr), shape=rows.shape, dtype=np.float32)
        return np.asarray(l1_csr_rows(with_vectors) @ self.item_vectors_, dtype=np.float32)

    def session_vector(self, item_cols: np.ndarray) -> np.ndarray:
        """Recency-weighted mean vector of an ordered session (last item = most recent)."""
        self._check_fitted()
        cols = np.asarray(item_cols, dtype=np.int64).ravel()
        cols = cols[(cols >= 0) & (cols < self.n_items_)]
        cols = cols[self.has_vector_[cols]] if cols.size else cols
        if cols.size == 0:
            return np.zeros(self.vector_size, dtype=np.float32)
        weights = float(self.recency_decay) ** np.arange(len(cols) - 1, -1, -1, dtype=np.float64)
        return (weights @ self.item_vectors_[cols] / weights.sum()).astype(np.float32)

    def recommend_session(
        self, item_cols: np.ndarray, n: int = 10, filter_seen: bool = True, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` for an anonymous visitor's ordered session (1-D ids and scores)."""
        scores = self._cosine(self.session_vector(item_cols)[None, :])
        cols = np.asarray(item_cols, dtype=np.int64).ravel()
        if filter_seen:
            cols = cols[(cols >= 0) & (cols < self.n_items_)]
            exclude = cols if exclude is None else np.concatenate([cols, np.asarray(exclude, dtype=np.int64)])
        ids, out = top_n(scores, n, exclude=exclude)
        return ids[0], out[0]

    def _score_all(self, user_rows, user_items):
        return self._cosine(self.history_vector(user_items))

    def _similar_all(self, item_cols):
        return self._cosine(self.item_vectors_[item_cols])

    def _get_state(self):
        return {"item_vectors": self.item_vectors_, "has_vector": self.has_vector_}

    def _set_state(self, state):
        self.item_vectors_ = np.asarray(state["item_vectors"], dtype=np.float32)
        self.has_vector_ = np.asarray(state["has_vector"], dtype=bool)
        self.n_items_ = len(self.item_vectors_)


def item_sessions(events: pd.DataFrame, matrix: InteractionMatrix) -> list[list[int]]:
    """``fit``'s ``sessions``: item columns per visit in time order (the session column, else 30-minute inactivity
    sessions); visits with fewer than two known items are dropped."""
    frame = events[[USER, ITEM, TIMESTAMP] + ([SESSION] if SESSION in events.columns else [])]
    if SESSION not in frame.columns or frame[SESSION].isna().any():
        frame = sessionize(frame.drop(columns=[SESSION], errors="ignore"))
    cols = matrix.cols_for(frame[ITEM].to_numpy())
    keys = frame[USER].astype(str) + "\x1f" + frame[SESSION].astype(str)
    codes, _ = pd.factorize(keys)
    order = np.lexsort((frame[TIMESTAMP].to_numpy(), codes))
    codes, cols = codes[order], cols[order]
    keep = cols >= 0
    codes, cols = codes[keep], cols[keep]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    return [s.tolist() for s in np.split(cols, bounds) if len(s) > 1]
