"""Content-based recommendations: TF-IDF of item text + one-hot item attributes (and those inputs from a catalog)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from ..pipeline.columns import BRAND, CATEGORY, TEXT
from ..pipeline.interactions import InteractionMatrix
from .base import CandidateGenerator, as_csr, csr_from_state, csr_state, l1_csr_rows, unit_csr_rows


def one_hot_attributes(item_attributes: pd.DataFrame) -> sparse.csr_matrix:
    """One column per (attribute, value) pair; missing values get no column."""
    blocks = []
    for name in item_attributes.columns:
        values = item_attributes[name]
        present = values.notna().to_numpy()
        codes = pd.Categorical(values.astype(object).where(values.notna()).map(str, na_action="ignore")).codes
        rows = np.flatnonzero(present & (codes >= 0))
        n_values = int(codes.max()) + 1 if len(codes) else 0
        blocks.append(
            sparse.csr_matrix(
                (np.ones(len(rows), dtype=np.float32), (rows, codes[rows])),
                shape=(len(item_attributes), max(n_values, 0)),
            )
        )
    if not blocks:
        return sparse.csr_matrix((len(item_attributes), 0), dtype=np.float32)
    return sparse.hstack(blocks, format="csr", dtype=np.float32)


class ContentRecommender(CandidateGenerator):
    """Recommend items whose content resembles the user's history (works for cold items).

    Item vectors are the L2-normalised TF-IDF of ``item_text`` stacked with the
    L2-normalised one-hot ``item_attributes`` (scaled by ``attribute_weight``), then
    L2-normalised again. A user's profile is the confidence-weighted mean of the vectors of
    the items in the history; scores and ``similar_items`` are cosine similarities. Items
    with neither text nor attributes get ``-inf``.

    Learned attributes: ``item_vectors_`` (CSR n_items x n_features), ``n_items_``.
    The fitted vocabulary is not kept: new items need a refit.
    """

    family = "content"

    def __init__(
        self,
        max_features: int | None = 50_000,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: float = 1,
        sublinear_tf: bool = True,
        attribute_weight: float = 1.0,
    ):
        self.max_features = max_features
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf
        self.attribute_weight = attribute_weight

    def fit(
        self,
        user_items: sparse.csr_matrix,
        item_text: list[str] | None = None,
        item_attributes: pd.DataFrame | None = None,
    ) -> ContentRecommender:
        """``item_text`` and/or ``item_attributes`` give one entry/row per item column."""
        user_items = as_csr(user_items)
        n_items = user_items.shape[1]
        if item_text is None and item_attributes is None:
            raise ValueError("ContentRecommender.fit needs item_text and/or item_attributes (one per item column)")
        blocks = []
        if item_text is not None:
            texts = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in item_text]
            if len(texts) != n_items:
                raise ValueError(f"item_text has {len(texts)} entries but user_items has {n_items} item columns")
            vectorizer = TfidfVectorizer(
                max_features=self.max_features,
                ngram_range=tuple(self.ngram_range),
                min_df=self.min_df,
                sublinear_tf=self.sublinear_tf,
                dtype=np.float32,
            )
            try:
                blocks.append(normalize(vectorizer.fit_transform(texts)))
            except ValueError:  # empty vocabulary: every text is empty
                blocks.append(sparse.csr_matrix((n_items, 0), dtype=np.float32))
        if item_attributes is not None:
            if len(item_attributes) != n_items:
                raise ValueError(
                    f"item_attributes has {len(item_attributes)} rows but user_items has {n_items} item columns"
                )
            blocks.append(normalize(one_hot_attributes(item_attributes)) * float(self.attribute_weight))
        vectors = sparse.hstack(blocks, format="csr", dtype=np.float32)
        if vectors.shape[1]:  # blank texts only, no attributes: no item has a vector (scikit-learn refuses 0 columns)
            vectors = normalize(vectors)
        vectors.eliminate_zeros()
        vectors.sort_indices()
        self.item_vectors_ = vectors.astype(np.float32)
        self.n_items_ = n_items
        return self

    def _derived(self) -> tuple[np.ndarray, sparse.csr_matrix]:
        """(bool per item: it has text or attributes, the vectors transposed), computed once per fitted or loaded
        model: a serving request reads them several times."""
        if getattr(self, "_derived_of", None) is not self.item_vectors_:
            self._derived_arrays = (np.diff(self.item_vectors_.indptr) > 0, sparse.csr_matrix(self.item_vectors_.T))
            self._derived_of = self.item_vectors_
        return self._derived_arrays

    def _has_vector(self) -> np.ndarray:
        return self._derived()[0]

    def _cosine(self, queries: sparse.csr_matrix) -> np.ndarray:
        has, transposed = self._derived()
        queries = unit_csr_rows(queries)
        scores = np.asarray((queries @ transposed).toarray(), dtype=np.float32)
        scores[:, ~has] = -np.inf
        scores[np.diff(queries.indptr) == 0, :] = -np.inf
        return scores

    def _similar_at(self, item_cols: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Cosines of the ``item_cols`` with the ``cols`` only (the vectors are unit length since ``fit``)."""
        has = self._has_vector()
        item_cols, cols = np.asarray(item_cols, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        scores = np.asarray((self.item_vectors_[item_cols] @ self.item_vectors_[cols].T).toarray(), dtype=np.float32)
        scores[:, ~has[cols]] = -np.inf
        scores[~has[item_cols], :] = -np.inf
        return scores

    def profile(self, user_items: sparse.csr_matrix) -> sparse.csr_matrix:
        """Weighted mean item vector of each history row (not normalised)."""
        self._check_fitted()
        user_items = as_csr(user_items)
        return sparse.csr_matrix(l1_csr_rows(user_items) @ self.item_vectors_)

    def _score_all(self, user_rows, user_items):
        return self._cosine(self.profile(user_items))

    def _similar_all(self, item_cols):
        return self._cosine(self.item_vectors_[item_cols])

    def _get_state(self):
        return csr_state("item_vectors", self.item_vectors_)

    def _set_state(self, state):
        self.item_vectors_ = csr_from_state("item_vectors", state)
        self.n_items_ = self.item_vectors_.shape[0]


def content_inputs(catalog: pd.DataFrame | None, matrix: InteractionMatrix) -> dict[str, Any] | None:
    """``fit`` keyword arguments (``item_text``, ``item_attributes``) from a catalog indexed by item key, aligned
    with the matrix columns; None when the catalog has neither text (blank titles count as none) nor attributes (the
    family is then skipped)."""
    if catalog is None:
        return None
    aligned = catalog.reindex(matrix.item_ids)
    out: dict[str, Any] = {}
    if TEXT in aligned and aligned[TEXT].fillna("").astype(str).str.strip().ne("").any():
        out["item_text"] = aligned[TEXT].where(aligned[TEXT].notna(), "").astype(str).tolist()
    attrs = [col for col in (CATEGORY, BRAND) if col in aligned and aligned[col].notna().any()]
    if attrs:
        out["item_attributes"] = aligned[attrs].reset_index(drop=True)
    return out or None
