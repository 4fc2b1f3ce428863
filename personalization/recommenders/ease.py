"""EASE: embarrassingly shallow autoencoder (Steck 2019), closed form."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from scipy import linalg, sparse

from .base import CandidateGenerator, as_csr


class EASERecommender(CandidateGenerator):
    """Item-item weights ``B = I - P / diag(P)`` with ``P = (X^T X + l2 I)^-1`` and ``diag(B) = 0``.

    ``score(u) = x_u @ B``, so unknown users (row ``-1``) need only their history row.
    The dense ``n_items x n_items`` inverse costs ``O(n_items^3)`` time and
    ``8 * n_items^2`` bytes: above ``max_items`` items ``fit`` refuses to run.

    Learned attributes: ``B_`` (float32 n_items x n_items), ``n_items_``.
    """

    family = "ease"

    def __init__(self, l2: float = 500.0, max_items: int = 30_000):
        self.l2 = l2
        self.max_items = max_items

    def fit(self, user_items: sparse.csr_matrix) -> EASERecommender:
        self._solve(self._gram(user_items), self.l2, overwrite=True)
        return self

    def fit_each(self, user_items: sparse.csr_matrix, l2s: Sequence[float]) -> Iterator[EASERecommender]:
        """A fitted copy of this model per value of ``l2``, in order, from one Gram matrix: choosing ``l2`` costs
        an inverse per value, not a rebuild of ``X^T X`` each. Each copy is made when the caller asks for it."""
        gram = self._gram(user_items)
        for l2 in l2s:
            model = self.__class__(**{**self.get_params(), "l2": l2})
            model._solve(gram, l2, overwrite=False)
            yield model

    def _gram(self, user_items: sparse.csr_matrix) -> np.ndarray:
        """``X^T X`` (float64, dense), after checking the catalogue fits ``max_items``."""
        user_items = as_csr(user_items)
        n_items = user_items.shape[1]
        if n_items > self.max_items:
            gib = 8 * n_items**2 / 2**30
            raise ValueError(
                f"EASE needs a dense {n_items} x {n_items} matrix (~{gib:.1f} GiB in float64) but max_items is "
                f"{self.max_items}: restrict the catalogue (e.g. to the most popular items), use ALS/item-kNN, "
                "or raise max_items if the machine has the memory"
            )
        x = user_items.astype(np.float64)
        return np.asarray((x.T @ x).toarray(), dtype=np.float64)

    def _solve(self, gram: np.ndarray, l2: float, overwrite: bool) -> None:
        """Set ``B_`` from the Gram matrix and ``l2`` (``overwrite``: ``gram`` may be destroyed)."""
        if not l2 > 0:
            raise ValueError(f"l2 must be > 0 for the Gram matrix to be invertible, got {l2}")
        n_items = gram.shape[0]
        regularized = gram if overwrite else gram.copy()
        regularized[np.diag_indices(n_items)] += l2
        p = linalg.inv(regularized, overwrite_a=True, check_finite=False)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices(n_items)] = 0.0
        self.B_ = np.ascontiguousarray(b, dtype=np.float32)  # C order: sparse @ B_ then needs no copy
        self.n_items_ = n_items

    def _score_all(self, user_rows, user_items):
        return np.asarray(user_items @ self.B_, dtype=np.float32)

    def _similar_all(self, item_cols):
        return np.array(self.B_[item_cols], dtype=np.float32)

    def _get_state(self):
        return {"B": self.B_}

    def _set_state(self, state):
        self.B_ = np.ascontiguousarray(state["B"], dtype=np.float32)
        self.n_items_ = self.B_.shape[0]
