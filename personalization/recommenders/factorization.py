"""Matrix factorisation: implicit ALS and BPR (CPU implementations of ``implicit``).

Training runs with BLAS limited to one thread (threadpoolctl) because implicit's own threads
and a multi-threaded BLAS fight each other; the limit is lifted afterwards, nothing global changes.
"""

from __future__ import annotations

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from scipy import sparse
from sklearn.preprocessing import normalize
from threadpoolctl import ThreadpoolController

from .base import CandidateGenerator, as_csr
from .selection import PRUNED_MAX_ROWS, NormRanking, top_by_norm_bound

_CONTROLLER: ThreadpoolController | None = None


def _one_blas_thread():
    """Context manager limiting BLAS to one thread. The controller (which finds the loaded BLAS libraries by
    scanning the process's shared objects, ~4 ms) is created once; each use then costs microseconds, not a scan
    per call as ``threadpool_limits`` does: that scan was most of the wrapper's overhead over a raw small fit."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def _seed(random_state) -> int:
    """An int seed for implicit from None / int / Generator / RandomState."""
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1))
    return int(np.random.default_rng(random_state).integers(2**31 - 1))


class _FactorModel(CandidateGenerator):
    """Shared scoring for models with ``user_factors_`` / ``item_factors_`` (dot product)."""

    def user_embedding(self, user_items_rows: sparse.csr_matrix) -> np.ndarray:
        """User vectors (float32, rows x dims) for any histories, training users or not."""
        raise NotImplementedError

    def _user_vectors(self, user_rows, user_items) -> np.ndarray:
        vectors = np.empty((len(user_rows), self.user_factors_.shape[1]), dtype=np.float32)
        known = user_rows >= 0
        vectors[known] = self.user_factors_[user_rows[known]]
        if (~known).any():
            vectors[~known] = self.user_embedding(user_items[np.flatnonzero(~known)])
        return vectors

    def _score_all(self, user_rows, user_items):
        return np.asarray(self._user_vectors(user_rows, user_items) @ self.item_factors_.T, dtype=np.float32)

    def _propose(self, user_rows, user_items, k, seen, exclude, blocked):
        """A few users (serving): the exact top-k by the norm bound and the scores at the candidates only, not the
        dense (users x items) product (see :mod:`~personalization.recommenders.selection`)."""
        if len(user_rows) > PRUNED_MAX_ROWS:
            return super()._propose(user_rows, user_items, k, seen, exclude, blocked)
        vectors = self._user_vectors(user_rows, user_items)
        factors = self.item_factors_
        cached = getattr(self, "_norm_ranking", None)
        # built once per fitted or loaded model (~10 ms at 100k items); factors are never changed in place
        if cached is None or cached[0] is not factors:
            cached = (factors, NormRanking.of(factors))
            self._norm_ranking = cached
        ids = top_by_norm_bound(vectors, factors, cached[1], k, seen, exclude, blocked)

        def scores_at(cols: np.ndarray) -> np.ndarray:
            return np.matmul(factors[cols], vectors[:, :, None])[..., 0].astype(np.float32, copy=False)

        return ids, scores_at

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _similar_all(self, item_cols):
        vectors = normalize(self._item_vectors())
        return np.asarray(vectors[item_cols] @ vectors.T, dtype=np.float32)

    def _get_state(self):
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _set_state(self, state):
        self.user_factors_ = np.asarray(state["user_factors"], dtype=np.float32)
        self.item_factors_ = np.asarray(state["item_factors"], dtype=np.float32)
        self.n_users_, self.n_items_ = len(self.user_factors_), len(self.item_factors_)
        self._norm_ranking = None


class ALSRecommender(_FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via ``implicit.cpu.als``.

    Learned attributes: ``user_factors_`` (n_users x factors), ``item_factors_``
    (n_items x factors), ``n_users_``, ``n_items_``. Unknown users (row ``-1``) are solved
    exactly from their history against the fixed item factors (implicit's ``recalculate_user``).
    """

    family = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        use_cg: bool = True,
        num_threads: int = 0,
        random_state: int | None = None,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.use_cg = use_cg
        self.num_threads = num_threads
        self.random_state = random_state

    def _implicit(self) -> AlternatingLeastSquares:
        """implicit's model; call it with BLAS limited to one thread (its constructor warns otherwise)."""
        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            use_cg=self.use_cg,
            num_threads=self.num_threads,
            random_state=_seed(self.random_state),
        )

    def fit(self, user_items: sparse.csr_matrix) -> ALSRecommender:
        user_items = as_csr(user_items)  # no copy when already float32 CSR with sorted indices
        with _one_blas_thread():
            model = self._implicit()
            model.fit(user_items, show_progress=False)
        # implicit's CPU factors are float32 numpy arrays already: asarray keeps them without a copy
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self.n_users_, self.n_items_ = user_items.shape
        self._norm_ranking = None
        self._model = model
        return self

    def _set_state(self, state):
        super()._set_state(state)
        self._model = None

    def user_embedding(self, user_items_rows: sparse.csr_matrix) -> np.ndarray:
        self._check_fitted()
        rows = as_csr(user_items_rows)
        with _one_blas_thread():
            if getattr(self, "_model", None) is None:
                model = self._implicit()
                model.user_factors, model.item_factors = self.user_factors_, self.item_factors_
                self._model = model
            return np.asarray(self._model.recalculate_user(np.arange(rows.shape[0]), rows), dtype=np.float32).reshape(
                rows.shape[0], -1
            )


class BPRRecommender(_FactorModel):
    """Bayesian Personalised Ranking (Rendle et al. 2009) via ``implicit.cpu.bpr``.

    implicit appends a bias column: ``item_factors_[:, -1]`` is the item bias and
    ``user_factors_[:, -1]`` is 1. An unknown user (row ``-1``) is the confidence-weighted
    mean of the factors of the items in the history (bias column kept at 1).
    ``num_threads=1`` (default) keeps SGD deterministic for a given ``random_state``.
    """

    family = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        verify_negative_samples: bool = True,
        num_threads: int = 1,
        random_state: int | None = None,
    ):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.verify_negative_samples = verify_negative_samples
        self.num_threads = num_threads
        self.random_state = random_state

    def fit(self, user_items: sparse.csr_matrix) -> BPRRecommender:
        user_items = as_csr(user_items)
        with _one_blas_thread():
            model = BayesianPersonalizedRanking(
                factors=self.factors,
                learning_rate=self.learning_rate,
                regularization=self.regularization,
                iterations=self.iterations,
                num_threads=self.num_threads,
                verify_negative_samples=self.verify_negative_samples,
                random_state=_seed(self.random_state),
            )
            model.fit(user_items, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self.n_users_, self.n_items_ = user_items.shape
        self._norm_ranking = None
        return self

    def _item_vectors(self):
        return self.item_factors_[:, :-1]

    def user_embedding(self, user_items_rows: sparse.csr_matrix) -> np.ndarray:
        self._check_fitted()
        rows = normalize(as_csr(user_items_rows), norm="l1")
        vectors = np.asarray(rows @ self.item_factors_, dtype=np.float32).reshape(rows.shape[0], -1)
        vectors[:, -1] = 1.0
        return vectors
