"""Second-stage rankers: P(positive outcome | user, candidate features).

All rankers share ``fit(X, y, groups=None, X_val=None, y_val=None) -> self`` and
``predict_proba(X) -> 1-D P(positive)``. ``groups`` (one user id per row) keeps a user's
rows on one side of every internal split so validation never sees a training user's rows.

Persistence uses joblib (pickle). Ranker artifacts are trusted files written by our own
training service; they are never loaded from user input (uploads, request data).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext

import joblib
import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
from threadpoolctl import threadpool_limits


def _check_xy(X, y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(int).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be 2-D with one row per label: X {X.shape}, y {y.shape}")
    if len(np.unique(y)) < 2:
        raise ValueError("y needs both positive (1) and negative (0) rows to train a ranker")
    return X, y


def _clean(X) -> np.ndarray:
    """Candidate-generator scores use -inf for 'cannot score': treat non-finite values as missing (NaN)."""
    X = np.array(X, dtype=np.float64)
    X[~np.isfinite(X)] = np.nan
    return X


def _fill_values(X: np.ndarray) -> np.ndarray:
    """Per-column value standing for 'missing': one below the smallest finite value (0 if none)."""
    with np.errstate(all="ignore"):
        low = np.nanmin(np.where(np.isnan(X), np.inf, X), axis=0) if X.size else np.zeros(X.shape[1])
    return np.where(np.isfinite(low), low - 1.0, 0.0)


def _filled(X: np.ndarray, fill: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(X), fill[None, :], X)


class Ranker(BaseEstimator, ABC):
    """Base class: sklearn-style binary ranker with joblib persistence."""

    @abstractmethod
    def fit(self, X, y, groups=None, X_val=None, y_val=None) -> Ranker:
        """Train; return self."""

    @abstractmethod
    def predict_proba(self, X) -> np.ndarray:
        """P(positive) for each row (1-D)."""

    def _record_validation(self, X_val, y_val) -> None:
        if X_val is not None and y_val is not None and len(np.unique(y_val)) == 2:
            self.validation_auc_ = float(roc_auc_score(y_val, self.predict_proba(X_val)))

    def save(self, path) -> None:
        """Write the fitted ranker with joblib (a trusted artifact: never load files from users)."""
        joblib.dump(self, path)

    @classmethod
    def load(cls, path) -> Ranker:
        """Read a ranker written by :meth:`save`. Only for our own artifacts: joblib runs pickle."""
        model = joblib.load(path)
        if not isinstance(model, cls):
            raise TypeError(f"{path!s} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def _group_validation_split(X, y, groups, fraction, random_state):
    """A validation split that keeps each group (user) on one side."""
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=random_state)
    train, val = next(splitter.split(X, y, groups))
    if len(np.unique(y[train])) < 2 or len(np.unique(y[val])) < 2:
        return None
    return train, val


class _TreeWalker:
    """All trees of a fitted binary ``HistGradientBoostingClassifier`` as flat arrays, walked level by level.

    Why: sklearn's ``predict_proba`` runs one compiled loop per tree, with Python and OpenMP set-up around each
    (~5-10 us), so a served batch (~200 candidate rows of one visitor) through 100-300 trees spends most of its
    ~1.5-4 ms in per-tree overhead. Here every (tree, row) pair takes one vectorized step per depth level instead.
    Hand-written numpy because no library does this without heavy dependencies (treelite, numba, ONNX runtimes).

    The result is bit-identical to sklearn's: the same ``x <= num_threshold`` comparisons on the same float64
    values, leaf values summed onto the baseline in tree order, and sklearn's own loss turning raw scores into
    probabilities. Build with :meth:`build`, which returns ``None`` for models it does not cover (categorical
    splits, several trees per iteration, unexpected thresholds); those keep sklearn's own prediction.

    Layout: nodes are renumbered so each split's children sit side by side (left, left + 1) and
    ``next = first_child[node] + (x > threshold)``; a leaf is its own first child with threshold +inf, so pairs
    already at a leaf stay there. Missing values need no test per step: each feature comes twice, missing as
    -inf (for splits sending missing values left) and as +inf (sending them right; a +inf threshold, sklearn's
    split between values and missing, becomes the largest float). That holds because the ranker's input
    has no infinities: :func:`_clean` turned them into NaN, exactly what sklearn is given. Pairs at leaves are dropped
    at levels chosen from the training counts (when the expected share still walking has halved).
    """

    #: (tree, row) pairs walked at once: a served batch of ~200 rows x 300 trees is one chunk; larger batches go
    #: chunk by chunk, so the working arrays stay in cache (measured: 2**16-2**17 pairs is fastest).
    CHUNK_PAIRS = 1 << 16
    #: Drop finished pairs when the expected share of pairs still walking has fallen to this share of the last drop.
    COMPACT_RATIO = 0.5

    def __init__(
        self,
        model: HistGradientBoostingClassifier,
        arrays: dict[str, np.ndarray],
        depth: int,
        compact_levels: frozenset[int],
    ):
        self.model = model
        self.n_features = int(model.n_features_in_)
        self.n_trees = len(arrays["roots"])
        self.depth = depth
        self.compact_levels = compact_levels
        self.feature = arrays["feature"]  # index into the doubled row: f, or n_features + f when missing go right
        self.threshold = arrays["threshold"]
        self.first_child = arrays["first_child"]
        self.internal = arrays["internal"]
        self.value = arrays["value"]
        self.roots = arrays["roots"]

    @classmethod
    def build(cls, model: HistGradientBoostingClassifier) -> _TreeWalker | None:
        """The walker for ``model``, or ``None`` when only sklearn's own prediction is right for it."""
        predictors = getattr(model, "_predictors", None)
        if (
            not predictors
            or getattr(model, "n_trees_per_iteration_", None) != 1
            or getattr(model, "_preprocessor", None) is not None
            or any(len(iteration) != 1 for iteration in predictors)
            or np.shape(model._baseline_prediction) != (1, 1)
        ):
            return None
        nodes = [iteration[0].nodes for iteration in predictors]
        sizes = np.array([len(n) for n in nodes], dtype=np.intp)
        flat = np.concatenate(nodes)
        leaf = flat["is_leaf"].astype(bool)
        threshold = flat["num_threshold"].astype(np.float64)
        full_binary = len(flat) == 2 * np.count_nonzero(~leaf) + len(nodes)
        if not full_binary or flat["is_categorical"][~leaf].any() or np.isnan(threshold[~leaf]).any():
            return None
        n_features = int(model.n_features_in_)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        tree_of = np.repeat(np.arange(len(nodes)), sizes)
        # new numbering: roots 0..T-1, then the children of the k-th split at T + 2k (left) and T + 2k + 1 (right)
        splits = np.flatnonzero(~leaf)
        new = np.empty(len(flat), dtype=np.intp)
        new[starts] = np.arange(len(nodes))
        left = starts[tree_of[splits]] + flat["left"][splits].astype(np.intp)
        right = starts[tree_of[splits]] + flat["right"][splits].astype(np.intp)
        new[left] = len(nodes) + 2 * np.arange(len(splits))
        new[right] = new[left] + 1
        first_child = new.copy()  # leaves: themselves
        first_child[splits] = new[left]
        missing_right = flat["missing_go_to_left"] == 0
        feature = np.where(leaf, 0, flat["feature_idx"].astype(np.intp) + n_features * missing_right)
        if feature.size and (feature.min() < 0 or feature.max() >= 2 * n_features):
            return None
        threshold = np.where(leaf, np.inf, np.where(threshold == np.inf, np.finfo(np.float64).max, threshold))
        arrays = {}
        for name, values in (
            ("feature", feature),
            ("threshold", threshold),
            ("first_child", first_child),
            ("internal", ~leaf),
            ("value", flat["value"].astype(np.float64)),
        ):
            arrays[name] = np.empty_like(values)
            arrays[name][new] = values
        arrays["roots"] = np.arange(len(nodes), dtype=np.intp)
        depth = int(flat["depth"].max())
        return cls(model, arrays, depth, cls._compact_levels(flat, leaf, tree_of, starts, depth))

    @classmethod
    def _compact_levels(cls, flat, leaf, tree_of, starts, depth: int) -> frozenset[int]:
        """Levels before which finished pairs are dropped, from the training rows' way through the trees."""
        roots = np.maximum(flat["count"][starts].astype(np.float64), 1.0)
        walking = np.zeros(depth + 1)
        share = flat["count"][~leaf] / roots[tree_of[~leaf]]
        np.add.at(walking, flat["depth"][~leaf].astype(np.intp), share)
        walking /= len(starts)
        levels, last = [], 1.0
        for level in range(1, depth):
            if walking[level] <= cls.COMPACT_RATIO * last:
                levels.append(level)
                last = walking[level]
        return frozenset(levels)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(positive) for cleaned float64 rows ``X`` (no infinities), exactly as the model's ``predict_proba``."""
        step = max(1, self.CHUNK_PAIRS // self.n_trees)
        raw = np.concatenate([self._raw(X[start : start + step]) for start in range(0, len(X), step)])
        return self.model._loss.predict_proba(raw)[:, 1]

    def _raw(self, X: np.ndarray) -> np.ndarray:
        n_rows, n_trees = len(X), self.n_trees
        missing = np.isnan(X)
        row_values = np.concatenate([np.where(missing, -np.inf, X), np.where(missing, np.inf, X)], axis=1).ravel()
        # pair p = tree * n_rows + row
        row_start = np.tile(np.arange(n_rows, dtype=np.intp) * (2 * self.n_features), n_trees)
        node = np.repeat(self.roots, n_rows)
        final = pairs = None
        for level in range(self.depth):
            if level in self.compact_levels:
                if pairs is None:
                    final = node
                    pairs = keep = np.flatnonzero(np.take(self.internal, node))
                else:
                    final[pairs] = node
                    keep = np.flatnonzero(np.take(self.internal, node))
                    pairs = np.take(pairs, keep)
                if not len(keep):
                    break
                node, row_start = np.take(node, keep), np.take(row_start, keep)
            at = np.take(self.feature, node)
            at += row_start
            right = np.take(row_values, at) > np.take(self.threshold, node)
            node = np.take(self.first_child, node)
            node += right
        if pairs is None:
            final = node
        elif len(pairs):
            final[pairs] = node
        # sklearn adds the trees one by one onto zeros + baseline: a cumulative sum keeps that order (a plain sum
        # may add pairwise and differ in the last bit)
        leaves = np.empty((n_trees + 1, n_rows))
        leaves[0] = np.zeros(1) + self.model._baseline_prediction[0, 0]
        leaves[1:] = np.take(self.value, final).reshape(n_trees, n_rows)
        return np.cumsum(leaves, axis=0)[-1]


class GradientBoostedRanker(Ranker):
    """Histogram gradient-boosted trees (sklearn ``HistGradientBoostingClassifier``).

    Early stopping monitors ``X_val``/``y_val`` when given; otherwise, with ``groups``, a
    group-aware ``validation_fraction`` split; otherwise sklearn's own row split.
    ``l2_regularization`` penalises leaf values. Non-finite features (``-inf`` = "cannot
    score") are passed as missing values, which the trees handle natively. ``n_threads``
    caps the OpenMP threads (small training sets are faster with 1). ``predict_proba`` scores batches up to
    ``WALK_MAX_ROWS`` rows with :class:`_TreeWalker` (bit-identical to sklearn, without its per-tree overhead).
    Learned: ``model_``, ``n_iter_``.
    """

    #: Largest batch (rows) scored by :class:`_TreeWalker` when sklearn would predict on one OpenMP thread (as in
    #: serving and training: ``threads.RANKER_THREADS``), and when it would use several. Larger batches go to
    #: sklearn's ``predict_proba``. Measured with 100 and 300 trees (rows where both take as long): one thread
    #: ~20k-30k rows (the walker is 1.3-2.4x faster below 5k), two threads 1k-5k rows; more threads lower it towards
    #: ~400 rows, where sklearn's per-tree set-up still outweighs its parallel walk.
    WALK_MAX_ROWS = 20_000
    WALK_MAX_ROWS_THREADED = 500

    def __init__(
        self,
        learning_rate: float = 0.1,
        max_iter: int = 200,
        max_leaf_nodes: int = 31,
        max_depth: int | None = None,
        min_samples_leaf: int = 20,
        l2_regularization: float = 0.0,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        class_weight: str | None = None,
        n_threads: int | None = None,
        random_state: int | None = None,
    ):
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, X, y, groups=None, X_val=None, y_val=None) -> GradientBoostedRanker:
        X, y = _check_xy(_clean(X), y)
        rng = np.random.default_rng(self.random_state)
        seed = int(rng.integers(2**31 - 1))
        if X_val is not None and y_val is not None:
            X_val, y_val = _clean(X_val), np.asarray(y_val).astype(int).ravel()
        elif self.early_stopping and groups is not None:
            split = _group_validation_split(X, y, np.asarray(groups), self.validation_fraction, seed)
            if split is not None:
                train, val = split
                X, y, X_val, y_val = X[train], y[train], X[val], y[val]
        has_val = X_val is not None and y_val is not None
        model = HistGradientBoostingClassifier(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            early_stopping=self.early_stopping,
            validation_fraction=None if has_val else self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            class_weight=self.class_weight,
            random_state=seed,
        )
        with self._threads():
            if has_val:
                model.fit(X, y, X_val=X_val, y_val=y_val)
            else:
                model.fit(X, y)
        self.model_ = model
        self.n_iter_ = int(model.n_iter_)
        self.n_features_in_ = X.shape[1]
        self._record_validation(X_val, y_val)
        return self

    def _threads(self):
        return threadpool_limits(self.n_threads, "openmp") if self.n_threads else nullcontext()

    def predict_proba(self, X) -> np.ndarray:
        X = _clean(X)
        if X.ndim == 2 and 0 < len(X) <= self._walk_max_rows():
            walker = self._walker()
            if walker is not None and X.shape[1] == walker.n_features:
                return walker.predict_proba(X)
        with self._threads():
            return self.model_.predict_proba(X)[:, 1]

    def _walk_max_rows(self) -> int:
        # the thread count sklearn's predict_proba would use (threadpoolctl limits included; ~1 us)
        threads = _openmp_effective_n_threads(self.n_threads)
        return self.WALK_MAX_ROWS if threads == 1 else self.WALK_MAX_ROWS_THREADED

    def _walker(self) -> _TreeWalker | None:
        """The model's vectorized predictor, built on first use (and after loading: it is never pickled)."""
        cached = self.__dict__.get("_walker_cache")
        if cached is None or cached[0] is not self.model_:
            # a race between threads only builds it twice; each result is complete before it is stored
            cached = (self.model_, _TreeWalker.build(self.model_))
            self._walker_cache = cached
        return cached[1]

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # Python 3.11 hands over __dict__ itself: copy before removing
        state.pop("_walker_cache", None)
        state.pop("_shap_cache", None)  # attributions.explainer_for: rebuilt on first use
        return state


class MLPRanker(Ranker):
    """Multi-layer perceptron (``StandardScaler`` -> ``MLPClassifier``) with early stopping.

    ``alpha`` is the L2 penalty. Missing/non-finite features (e.g. ``-inf`` "cannot score")
    become one below the column's smallest training value. sklearn's MLP early stopping uses its own internal
    ``validation_fraction`` split; ``X_val``/``y_val`` are only used to report
    ``validation_auc_``. Learned: ``model_`` (the Pipeline).
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (64, 32),
        alpha: float = 1e-4,
        learning_rate_init: float = 1e-3,
        max_iter: int = 200,
        batch_size: int | str = "auto",
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        random_state: int | None = None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state

    def fit(self, X, y, groups=None, X_val=None, y_val=None) -> MLPRanker:
        X, y = _check_xy(_clean(X), y)
        self.fill_values_ = _fill_values(X)
        X = _filled(X, self.fill_values_)
        seed = int(np.random.default_rng(self.random_state).integers(2**31 - 1))
        self.model_ = Pipeline(
            [
                ("scale", StandardScaler()),
                (
                    "mlp",
                    MLPClassifier(
                        hidden_layer_sizes=tuple(self.hidden_layer_sizes),
                        alpha=self.alpha,
                        learning_rate_init=self.learning_rate_init,
                        max_iter=self.max_iter,
                        batch_size=self.batch_size,
                        early_stopping=self.early_stopping,
                        validation_fraction=self.validation_fraction,
                        n_iter_no_change=self.n_iter_no_change,
                        random_state=seed,
                    ),
                ),
            ]
        ).fit(X, y)
        self.n_features_in_ = X.shape[1]
        if X_val is not None:
            self._record_validation(X_val, np.asarray(y_val).astype(int).ravel())
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.model_.predict_proba(_filled(_clean(X), self.fill_values_))[:, 1]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class StackedRanker(Ranker):
    """Logistic-regression meta-learner over out-of-fold predictions of base rankers.

    For each of ``n_splits`` folds (``GroupKFold`` on ``groups`` so a user's rows never
    straddle folds; ``StratifiedKFold`` when no groups are given) every base ranker is
    cloned, fitted on the other folds and predicts the held-out fold. The meta-learner
    (``LogisticRegression(C=meta_C)`` with an L2 or L1 penalty) learns on the logits of
    those out-of-fold predictions, then the base rankers are refitted on all rows.

    Learned: ``base_rankers_`` (refitted clones), ``meta_`` and ``oof_predictions_``
    (rows x base rankers, the meta-learner's training features).
    """

    def __init__(
        self,
        base_rankers: list[Ranker] | None = None,
        meta_C: float = 1.0,
        meta_penalty: str = "l2",
        n_splits: int = 5,
        random_state: int | None = None,
    ):
        self.base_rankers = base_rankers
        self.meta_C = meta_C
        self.meta_penalty = meta_penalty
        self.n_splits = n_splits
        self.random_state = random_state

    def _bases(self) -> list[Ranker]:
        if self.base_rankers is None:
            return [GradientBoostedRanker(), MLPRanker()]
        if not self.base_rankers:
            raise ValueError("StackedRanker needs at least one base ranker")
        return list(self.base_rankers)

    def _meta(self) -> LogisticRegression:
        if self.meta_penalty == "l2":
            return LogisticRegression(C=self.meta_C, l1_ratio=0.0, solver="lbfgs", max_iter=1000)
        if self.meta_penalty == "l1":
            return LogisticRegression(C=self.meta_C, l1_ratio=1.0, solver="liblinear", max_iter=1000)
        raise ValueError(f"meta_penalty must be 'l2' or 'l1', got {self.meta_penalty!r}")

    def _meta_features(self, X) -> np.ndarray:
        return _logit(np.column_stack([r.predict_proba(X) for r in self.base_rankers_]))

    def fit(self, X, y, groups=None, X_val=None, y_val=None) -> StackedRanker:
        X, y = _check_xy(_clean(X), y)
        bases = self._bases()
        meta = self._meta()
        rng = np.random.default_rng(self.random_state)
        if groups is not None:
            groups = np.asarray(groups)
            if len(np.unique(groups)) < self.n_splits:
                raise ValueError(f"need at least n_splits={self.n_splits} distinct groups (users) to stack")
            folds = GroupKFold(n_splits=self.n_splits).split(X, y, groups)
        else:
            seed = int(rng.integers(2**31 - 1))
            folds = StratifiedKFold(n_splits=self.n_splits, shuffle=True, random_state=seed).split(X, y)
        oof = np.zeros((len(y), len(bases)), dtype=np.float64)
        for train, held in folds:
            for j, base in enumerate(bases):
                model = clone(base)
                model.fit(X[train], y[train], groups=None if groups is None else groups[train])
                oof[held, j] = model.predict_proba(X[held])
        self.oof_predictions_ = oof
        self.meta_ = meta.fit(_logit(oof), y)
        self.base_rankers_ = [clone(b).fit(X, y, groups=groups, X_val=X_val, y_val=y_val) for b in bases]
        self.n_features_in_ = X.shape[1]
        if X_val is not None:
            self._record_validation(_clean(X_val), np.asarray(y_val).astype(int).ravel())
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.meta_.predict_proba(self._meta_features(_clean(X)))[:, 1]
