"""The contract every candidate generator follows (it mirrors ``implicit``).

Users and items are the row and column indices of a scipy CSR ``user_items`` matrix
(users x items, float32 confidence weights). The key <-> index mapping lives in the
pipeline, never in a model.

A subclass implements:

- ``fit(user_items, ...) -> self`` setting learned attributes (names end in ``_``) and
  ``n_items_`` (and ``n_users_`` when it keeps per-user state);
- ``_score_all(user_rows, user_items) -> float32 (len(user_rows), n_items_)``: dense
  scores of every item, ``-inf`` where the model cannot score an item;
- ``_similar_all(item_cols) -> float32 (len(item_cols), n_items_)``: dense similarities;
- ``_get_state() -> dict[str, ndarray]`` and ``_set_state(state)`` for ``save``/``load``.

Everything else (batching, seen/exclude filtering, top-n, padding, persistence) is shared.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator

from .selection import excluded_mask, row_mask

#: Upper bound on the number of dense float32 scores built at once (users x items) in one chunk.
MAX_DENSE_SCORES = 20_000_000

_CLASS_KEY = "__class__"
_PARAMS_KEY = "__params__"


#: Catalogs from this size select a row's top items through a sampled threshold (see :func:`_top_unordered`).
SAMPLED_SELECTION_MIN_ITEMS = 16_384
_SAMPLE_SIZE = 4096


def _top_unordered(row: np.ndarray, m: int) -> np.ndarray:
    """Columns of the ``m`` largest values of one row, in no order (ties at the boundary: any of them).

    ``np.argpartition`` over a 100k-item row costs about 1 ms, the bulk of serving one visitor. A threshold taken
    from a strided sample (a few thousand values) keeps only the values above it, a few hundred, to partition:
    every value below the threshold is below at least ``m`` survivors, so the result is exact; when too few values
    survive (skewed rows), the whole row is partitioned as before. numpy has no top-k primitive, hence this.
    """
    n_items = row.size
    stride = max(1, n_items // _SAMPLE_SIZE)
    sample = row[::stride]
    # aim for about 4 m survivors: the sample's (4 m / stride)-th largest value
    rank = min(sample.size - 1, (4 * m) // stride + 1)
    threshold = np.partition(sample, sample.size - 1 - rank)[sample.size - 1 - rank]
    # mostly -inf (sparse scores, masked items): the finite values are the survivors
    survivors = np.flatnonzero(row >= threshold) if threshold > -np.inf else np.flatnonzero(row > -np.inf)
    if m <= survivors.size <= n_items // 8:
        return survivors[np.argpartition(-row[survivors], m - 1)[:m]]
    if survivors.size < m and threshold == -np.inf:  # fewer than m finite values: the rest are -inf fillers
        fillers = np.setdiff1d(np.arange(m + survivors.size), survivors, assume_unique=True)[:m - survivors.size]
        return np.concatenate([survivors, fillers])
    return np.argpartition(-row, m - 1)[:m]


def top_n(
    scores: np.ndarray,
    n: int,
    seen: sparse.csr_matrix | None = None,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``n`` best columns of each row of ``scores``, best first.

    ``scores`` (float, 2-D) is modified in place: the items of ``seen`` (a CSR matrix with
    one row per score row) and the columns in ``exclude`` are set to ``-inf`` first. NaN
    scores count as ``-inf``. Slots without a finite-or-positive-infinite score are padded
    with id ``-1`` and score ``-inf``. Uses ``np.argpartition`` so the cost is linear in the
    number of items plus ``n log n`` per row.

    Returns ``(ids int32 (rows, n), scores float32 (rows, n))``.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (users x items), got shape {scores.shape}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rows, n_items = scores.shape
    if scores.dtype.kind == "f":
        np.copyto(scores, -np.inf, where=np.isnan(scores))  # NaN counts as -inf (nan_to_num is ~5x slower)
    if seen is not None:
        seen = sparse.csr_matrix(seen)
        if seen.shape[0] != rows:
            raise ValueError(f"seen has {seen.shape[0]} rows but there are {rows} score rows")
        row_idx = np.repeat(np.arange(rows), np.diff(seen.indptr))
        cols = seen.indices
        keep = cols < n_items
        scores[row_idx[keep], cols[keep]] = -np.inf
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64).ravel()
        exclude = exclude[(exclude >= 0) & (exclude < n_items)]
        if exclude.size:
            scores[:, exclude] = -np.inf

    ids = np.full((rows, n), -1, dtype=np.int32)
    out = np.full((rows, n), -np.inf, dtype=np.float32)
    m = min(n, n_items)
    if m == 0 or rows == 0:
        return ids, out
    if m < n_items and n_items >= SAMPLED_SELECTION_MIN_ITEMS and m * 64 <= n_items and rows <= 256:
        part = np.stack([_top_unordered(row, m) for row in scores])
    elif m < n_items:
        part = np.argpartition(-scores, m - 1, axis=1)[:, :m]
    else:
        part = np.broadcast_to(np.arange(n_items), (rows, n_items)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    # stable sort on (-score, column) so ties are broken by the smaller column, reproducibly
    order = np.lexsort((part, -part_scores), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    best_scores = np.take_along_axis(part_scores, order, axis=1)
    valid = best_scores > -np.inf
    ids[:, :m] = np.where(valid, best, -1)
    out[:, :m] = np.where(valid, best_scores, -np.inf)
    return ids, out


def draw_seed(rng: np.random.Generator) -> int:
    """An int seed drawn from ``rng`` for a sub-estimator or a sampler of its own."""
    return int(rng.integers(2**31 - 1))


def score_chunks(total: int, n_items: int, cap: int = 1000):
    """Slices of ``total`` rows small enough that ~8 dense score arrays of ``n_items`` stay within
    :data:`MAX_DENSE_SCORES`, at most ``cap`` rows each."""
    step = max(1, min(cap, MAX_DENSE_SCORES // max(8 * n_items, 1)))
    for start in range(0, total, step):
        yield slice(start, min(total, start + step))


def entry_rows(csr: sparse.csr_matrix) -> np.ndarray:
    """The row of every stored entry of ``csr`` (aligned with ``csr.data``)."""
    return np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))


def row_sums(indptr: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Per-row sums of CSR ``data`` as scipy's ``sum(axis=1)`` computes them (``np.add.reduceat``, float32)."""
    out = np.zeros(len(indptr) - 1, dtype=np.float32)
    nonempty = np.diff(indptr) > 0
    if nonempty.any():
        out[nonempty] = np.add.reduceat(np.asarray(data, dtype=np.float32), indptr[:-1][nonempty])
    return out


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows of a dense float matrix scaled to length 1 (zero rows stay zero): what sklearn's ``normalize`` gives,
    without its input validation, which costs more than the arithmetic on a serving request's few rows."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64)).astype(np.float32)
    return X / np.where(norms > 0, norms, 1.0)[:, None]


def _divided_rows(X: sparse.csr_matrix, by: np.ndarray) -> sparse.csr_matrix:
    """Each row of float32 CSR ``X`` divided by its entry of ``by`` (rows where it is 0 become 0)."""
    scale = np.where(by > 0, 1.0 / np.where(by > 0, by, 1.0), 0.0).astype(np.float32)
    return sparse.csr_matrix((X.data * np.repeat(scale, np.diff(X.indptr)), X.indices, X.indptr), shape=X.shape)


def unit_csr_rows(X: sparse.csr_matrix) -> sparse.csr_matrix:
    """Rows of a float32 CSR matrix scaled to length 1 (empty rows stay empty), as :func:`unit_rows` for sparse."""
    X = sparse.csr_matrix(X, dtype=np.float32)
    return _divided_rows(X, np.sqrt(row_sums(X.indptr, X.data * X.data)))


def l1_csr_rows(X: sparse.csr_matrix) -> sparse.csr_matrix:
    """Rows of a float32 CSR matrix scaled to absolute sum 1 (weights of a weighted mean; empty rows stay empty):
    sklearn's ``normalize(norm="l1")`` without its input validation."""
    X = sparse.csr_matrix(X, dtype=np.float32)
    return _divided_rows(X, row_sums(X.indptr, np.abs(X.data)))


def as_csr(user_items: Any, dtype=np.float32) -> sparse.csr_matrix:
    """Return ``user_items`` as a CSR matrix of ``dtype`` with sorted indices and no explicit zeros."""
    if not sparse.issparse(user_items):
        raise TypeError(f"user_items must be a scipy sparse matrix (users x items), got {type(user_items).__name__}")
    matrix = sparse.csr_matrix(user_items, dtype=dtype)
    if not matrix.has_sorted_indices:
        matrix = matrix.copy()
        matrix.sort_indices()
    return matrix


def _json_param(name: str, value: Any) -> Any:
    if name == "random_state" and not (value is None or isinstance(value, (int, np.integer))):
        return None  # a Generator/RandomState cannot be stored: the loaded model is already fitted
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    return value


class CandidateGenerator(BaseEstimator, ABC):
    """Abstract candidate generator: fit on a CSR matrix, recommend in batches, persist as npz."""

    #: name used by :data:`personalization.recommenders.FAMILIES`
    family: str = ""

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def fit(self, user_items: sparse.csr_matrix, *args, **kwargs) -> CandidateGenerator:
        """Learn from ``user_items`` (users x items CSR) and return ``self``."""

    @abstractmethod
    def _score_all(self, user_rows: np.ndarray, user_items: sparse.csr_matrix) -> np.ndarray:
        """Dense float32 scores (len(user_rows), n_items_); ``-inf`` = cannot score."""

    @abstractmethod
    def _similar_all(self, item_cols: np.ndarray) -> np.ndarray:
        """Dense float32 similarities (len(item_cols), n_items_); ``-inf`` = unrelated."""

    @abstractmethod
    def _get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays to store in the npz artifact."""

    @abstractmethod
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore learned attributes from ``_get_state()`` output."""

    # -- shared -------------------------------------------------------------------------------
    def _propose(self, user_rows: np.ndarray, user_items: sparse.csr_matrix, k: int,
                 seen: sparse.csr_matrix | None, exclude: np.ndarray | None,
                 blocked: np.ndarray | None) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """This family's top-``k`` items per user and its scores at any columns, for the system's candidates.

        Returns ``(ids int32 (users, k), scores_at)``: ids best first, never an item of ``seen`` (CSR, one row per
        user) or ``exclude``, ``-1`` padding, nothing for the ``blocked`` users (bool mask); ``scores_at(cols)``
        gives the float32 scores at (users x width) columns (``-inf`` where the family cannot score). The default
        builds ``_score_all``'s dense (users x items) block; a family whose scores are the same for every user
        overrides :meth:`_ranking` and reads only the head of one ranking.
        """
        ranking = self._ranking()
        if ranking is not None:
            order, ordered, by_column = ranking
            return ranked_top(order, ordered, len(user_rows), k, seen, exclude, blocked), lambda c: by_column[c]
        dense = np.asarray(self._score_all(user_rows, user_items), dtype=np.float32)
        proposed = dense.copy()  # top_n masks in place; the features read the unmasked scores
        if blocked is not None and blocked.any():
            proposed[blocked] = -np.inf
        ids, _ = top_n(proposed, k, seen=seen, exclude=exclude)
        return ids, lambda cols: np.take_along_axis(dense, cols, axis=1)

    def _ranking(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """When every user gets the same scores: :func:`ranking_of` them (cached by the family), else None."""
        return None

    def _similar_at(self, item_cols: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``_similar_all(item_cols)[:, cols]`` as float32; families with a cheaper way (sparse or stored
        similarities) override it without building the dense (len(item_cols), n_items) block."""
        return np.asarray(self._similar_all(item_cols), dtype=np.float32)[:, cols]

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(user_items) first")

    def _check_query(self, user_rows, user_items) -> tuple[np.ndarray, sparse.csr_matrix]:
        self._check_fitted()
        user_rows = np.asarray(user_rows, dtype=np.int64).ravel()
        user_items = as_csr(user_items)
        if user_items.shape[0] != len(user_rows):
            raise ValueError(
                f"user_items must have one row per entry of user_rows: got {user_items.shape[0]} rows "
                f"for {len(user_rows)} user rows"
            )
        if user_items.shape[1] != self.n_items_:
            raise ValueError(
                f"user_items has {user_items.shape[1]} columns but the model was fitted on {self.n_items_} items"
            )
        n_users = getattr(self, "n_users_", None)
        if user_rows.size and (user_rows.min() < -1 or (n_users is not None and user_rows.max() >= n_users)):
            raise IndexError(
                f"user_rows must be training user rows in [0, {n_users}) or -1 for a user unknown at fit "
                "time (scored from the history row alone)"
            )
        return user_rows, user_items

    def _chunks(self, total: int):
        step = max(1, MAX_DENSE_SCORES // max(1, self.n_items_))
        for start in range(0, total, step):
            yield slice(start, min(total, start + step))

    def recommend(
        self,
        user_rows: np.ndarray,
        user_items: sparse.csr_matrix,
        n: int = 10,
        filter_seen: bool = True,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for a batch of users.

        ``user_items`` holds one history row per entry of ``user_rows``; a user row of ``-1``
        means "not a training user: compute from the history row alone". Items in
        ``exclude`` are never returned, nor (with ``filter_seen``) items of the history.
        Returns ``(ids int32, scores float32)`` of shape ``(len(user_rows), n)``, padded
        with ``-1`` / ``-inf``.
        """
        user_rows, user_items = self._check_query(user_rows, user_items)
        ids = np.full((len(user_rows), n), -1, dtype=np.int32)
        scores = np.full((len(user_rows), n), -np.inf, dtype=np.float32)
        for chunk in self._chunks(len(user_rows)):
            dense = self._score_all(user_rows[chunk], user_items[chunk])
            ids[chunk], scores[chunk] = top_n(
                dense, n, seen=user_items[chunk] if filter_seen else None, exclude=exclude
            )
        return ids, scores

    def score_items(self, user_rows: np.ndarray, user_items: sparse.csr_matrix, item_cols: np.ndarray) -> np.ndarray:
        """Scores (float32, shape of ``item_cols``) of given candidates ``item_cols`` (users x k).

        Candidate ids of ``-1`` (padding) and items the model cannot score get ``-inf``.
        """
        user_rows, user_items = self._check_query(user_rows, user_items)
        item_cols = np.asarray(item_cols, dtype=np.int64)
        if item_cols.ndim != 2 or item_cols.shape[0] != len(user_rows):
            raise ValueError(
                f"item_cols must have shape (len(user_rows), k) = ({len(user_rows)}, k), got {item_cols.shape}"
            )
        out = np.full(item_cols.shape, -np.inf, dtype=np.float32)
        valid = (item_cols >= 0) & (item_cols < self.n_items_)
        safe = np.where(valid, item_cols, 0)
        for chunk in self._chunks(len(user_rows)):
            dense = self._score_all(user_rows[chunk], user_items[chunk])
            out[chunk] = np.where(valid[chunk], np.take_along_axis(dense, safe[chunk], axis=1), -np.inf)
        return out

    def similar_items(self, item_cols: np.ndarray, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to each of ``item_cols``, never the item itself."""
        self._check_fitted()
        item_cols = np.asarray(item_cols, dtype=np.int64).ravel()
        if item_cols.size and (item_cols.min() < 0 or item_cols.max() >= self.n_items_):
            raise IndexError(f"item_cols must be item columns in [0, {self.n_items_})")
        ids = np.full((len(item_cols), n), -1, dtype=np.int32)
        scores = np.full((len(item_cols), n), -np.inf, dtype=np.float32)
        for chunk in self._chunks(len(item_cols)):
            cols = item_cols[chunk]
            dense = np.array(self._similar_all(cols), dtype=np.float32)
            dense[np.arange(len(cols)), cols] = -np.inf
            ids[chunk], scores[chunk] = top_n(dense, n)
        return ids, scores

    # -- persistence --------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write hyperparameters (JSON) and learned arrays to an ``.npz`` file (no pickle)."""
        self._check_fitted()
        params = {k: _json_param(k, v) for k, v in self.get_params(deep=False).items()}
        state = self._get_state()
        clash = {_CLASS_KEY, _PARAMS_KEY} & set(state)
        if clash:
            raise ValueError(f"reserved keys in state: {clash}")
        np.savez(
            path,
            **{_CLASS_KEY: np.array(type(self).__name__), _PARAMS_KEY: np.array(json.dumps(params))},
            **state,
        )

    @classmethod
    def load(cls, path) -> CandidateGenerator:
        """Read a model written by :meth:`save` (``allow_pickle=False``).

        Called on :class:`CandidateGenerator` itself, the stored class name chooses the family.
        """
        if (
            isinstance(path, (str, os.PathLike))
            and not os.path.exists(path)
            and os.path.exists(f"{os.fspath(path)}.npz")
        ):
            path = f"{os.fspath(path)}.npz"
        with np.load(path, allow_pickle=False) as data:
            name = str(data[_CLASS_KEY])
            params = json.loads(str(data[_PARAMS_KEY]))
            state = {k: data[k] for k in data.files if k not in (_CLASS_KEY, _PARAMS_KEY)}
        target = cls
        if name != cls.__name__:
            target = _find_subclass(CandidateGenerator, name)
            if target is None or not issubclass(target, cls):
                raise ValueError(f"{path!s} holds a {name}, not a {cls.__name__}")
        defaults = target().get_params(deep=False)
        for key, value in params.items():
            if isinstance(defaults.get(key), tuple) and isinstance(value, list):
                params[key] = tuple(value)
        model = target(**params)
        model._set_state(state)
        return model


def _find_subclass(base: type, name: str) -> type | None:
    if base.__name__ == name:
        return base
    # make sure every family module is imported so its class is known
    from . import FAMILIES  # noqa: F401

    for sub in base.__subclasses__():
        found = _find_subclass(sub, name)
        if found is not None:
            return found
    return None


def csr_state(prefix: str, matrix: sparse.csr_matrix) -> dict[str, np.ndarray]:
    """Arrays describing a CSR matrix, for ``_get_state``."""
    matrix = sparse.csr_matrix(matrix)
    return {
        f"{prefix}_data": matrix.data,
        f"{prefix}_indices": matrix.indices,
        f"{prefix}_indptr": matrix.indptr,
        f"{prefix}_shape": np.array(matrix.shape, dtype=np.int64),
    }


def csr_from_state(prefix: str, state: dict[str, np.ndarray]) -> sparse.csr_matrix:
    """Inverse of :func:`csr_state`."""
    return sparse.csr_matrix(
        (state[f"{prefix}_data"], state[f"{prefix}_indices"], state[f"{prefix}_indptr"]),
        shape=tuple(int(x) for x in state[f"{prefix}_shape"]),
    )


def ranking_of(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns by descending score (ties: smaller column first; NaN as ``-inf``), their float32 scores, and the
    float32 scores by column (what ``_score_all`` gives every user)."""
    by_column = np.asarray(scores, dtype=np.float32)
    ranked = np.where(np.isnan(by_column), -np.inf, by_column)
    order = np.lexsort((np.arange(len(ranked)), -ranked))
    return order, ranked[order], by_column


def ranked_top(order: np.ndarray, ordered: np.ndarray, n_rows: int, k: int, seen: sparse.csr_matrix | None,
               exclude: np.ndarray | None, blocked: np.ndarray | None) -> np.ndarray:
    """Per row, the first ``k`` columns of a shared ranking that the row has not seen and that are not excluded.

    :func:`top_n` of the dense scores, without them: it reads about ``k`` plus the row's history from the head of
    the ranking instead of passing over every item four times. (numpy has no "first k not in a set" primitive.)"""
    n_items = len(order)
    ids = np.full((n_rows, k), -1, dtype=np.int32)
    if k == 0 or n_rows == 0:
        return ids
    finite = int(np.searchsorted(-ordered, np.inf))  # the ranking ends with the -inf scores
    excluded = excluded_mask(n_items, exclude)
    for r in range(n_rows):
        if blocked is not None and blocked[r]:
            continue
        skip, n_seen = row_mask(excluded, seen, r)
        size = min(finite, k + n_seen + 64)
        while True:
            head = order[:size]
            keep = head[~skip[head]]
            if len(keep) >= k or size >= finite:
                break
            size = min(finite, 4 * size)
        ids[r, : min(k, len(keep))] = keep[:k]
    return ids


def scores_from_sparse(matrix: sparse.spmatrix) -> np.ndarray:
    """Dense float32 copy of a sparse score matrix with structural zeros set to ``-inf``."""
    matrix = sparse.csr_matrix(matrix, dtype=np.float32)
    dense = np.full(matrix.shape, -np.inf, dtype=np.float32)
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    dense[rows, matrix.indices] = matrix.data
    return dense
