"""The trained recommender *system*: candidate generators + a learned re-ranker, behind item keys.

:class:`RecommenderSystem` is the one object the app trains, stores, serves and promotes. It is a two-stage
recommender:

1. **Candidates.** Every configured family (``FAMILIES``: popularity, item-kNN, content, ALS, BPR, item2vec, EASE)
   proposes its top ``candidates_per_model`` items for a user; the union (minus seen / excluded / unavailable items)
   is the candidate set.
2. **Ranking.** Each (user, candidate) pair gets features: every family's score for the pair, its rank and gap to
   the user's best candidate under that family, how many families proposed it; the user's RFM
   (:func:`~personalization.pipeline.features.user_features`); the item's popularity windows, trend, conversion and
   price band (:func:`~personalization.pipeline.features.item_features_frame`); the user's affinity to the item's
   category (:func:`~personalization.pipeline.features.user_category_affinity`) and price ratio. A ranker
   (:mod:`~personalization.recommenders.rankers`) predicts P(user interacts with the item) and orders the list.

Training without leakage (:meth:`RecommenderSystem.fit`): the training events are split in time; the candidate
generators and the feature tables are fitted on the earlier *fit part* only, the ranker learns which candidates the
users then interacted with in the later *label part*. Users of the label part unknown to the fit part (anonymous
sessions) contribute too: all but their last label event form a history, the last one is the label, exactly how an
anonymous visitor is served. Finally the generators and tables are refitted on all training events for serving.

Serving (:meth:`RecommenderSystem.recommend`) maps item keys and subject ids to matrix rows and columns through
``matrix_`` (the :class:`~personalization.pipeline.interactions.InteractionMatrix`): known users are scored from
their training rows; unknown users with a history (item keys, most recent last) from that history alone
(user row ``-1`` in the candidate-generator contract); users with nothing get popular items of their context
segment (``country``/``device``). Every item comes with the true source of its candidacy, e.g.
``"itemknn:because product:12"``, ``"als"`` or ``"popularity:country=FR"``.

Artifacts (:meth:`RecommenderSystem.save`) are npz (``allow_pickle=False``) and JSON, except the ranker, which is a
joblib pickle: artifacts are only ever written by our own training service and never loaded from user input.

Pure numpy/scipy/pandas/scikit-learn: no Django.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator

from ..pipeline._util import indexed_by_item, utc_series
from ..pipeline.columns import (
    AVAILABLE,
    BRAND,
    CATEGORY,
    COUNTRY,
    DEVICE,
    EVENT,
    ITEM,
    PRICE,
    SESSION,
    TEXT,
    TIMESTAMP,
    USER,
)
from ..pipeline.features import item_features_frame, user_category_affinity, user_features
from ..pipeline.interactions import InteractionMatrix, build_interactions
from ..pipeline.split import sessionize
from .base import MAX_DENSE_SCORES, CandidateGenerator, top_n

#: Families fitted when ``models`` is None, with their hyperparameters.
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "als": {"factors": 64, "regularization": 0.05, "iterations": 15},
    "itemknn": {"k": 100, "similarity": "cosine"},
    "item2vec": {"vector_size": 32, "window": 3, "epochs": 5},
    "popularity": {},
    "content": {},
    "ease": {"l2": 500.0},
}

#: Training weight per event type when ``event_weights`` is None (mirrors ``conf.DEFAULT_EVENT_TYPES``).
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 4.0,
    "remove_from_cart": -2.0,
    "purchase": 8.0,
    "rate": 1.0,
    "dwell": 0.5,
}

#: Families that can propose candidates from an anonymous history alone (plus popularity to fill).
HISTORY_FAMILIES = ("itemknn", "item2vec", "content", "ease", "popularity")
#: Families whose candidates can be explained by one item of the history ("because <item>").
BECAUSE_FAMILIES = ("itemknn", "ease", "item2vec", "content")
#: Weight of the item ``d`` steps before the end of an anonymous history (the last item weighs 1).
HISTORY_DECAY = 0.8
#: Ranker training: at most this many users of the label part, and this many negative candidates per user.
MAX_RANKER_USERS = 6000
MAX_NEGATIVES_PER_USER = 50
#: Share of the ranker's users held out (user-disjoint) for early stopping.
RANKER_VALIDATION_FRACTION = 0.15
#: OpenMP threads of the ranker: one, because scikit-learn's OpenMP loops slow down by an order of magnitude when
#: the cores are shared (web workers, Celery), and a served batch is small anyway.
RANKER_THREADS = 1

_USER_COLUMNS = ["user_recency_days", "user_frequency", "user_active_days", "user_distinct_items", "user_monetary"]
_ITEM_COLUMNS = ["item_pop_7d", "item_pop_30d", "item_pop_90d", "item_trend", "item_conversion", PRICE,
                 "item_price_band", AVAILABLE, "item_text_len"]
_CATEGORY_COLUMNS = ["cat_recency_days", "cat_frequency", "cat_monetary"]
_FORMAT = 1


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


_CONTROLLER = None


def _ranker_threads():
    """Context manager limiting OpenMP to :data:`RANKER_THREADS` (a cached controller: ~0.05 ms per use)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=RANKER_THREADS, user_api="openmp")


#: Batches up to this many users are scored with one BLAS/OpenMP thread: a served request multiplies one user vector
#: by the item factors, which OpenBLAS splits over threads; on shared cores waking them costs ~10 ms, the work ~0.1.
#: One thread gives bit-identical results. Larger (training, evaluation, precompute) batches keep every thread.
SERVING_BATCH_THREADS_MAX_USERS = 64


def _serving_threads(n_users: int):
    """One BLAS and OpenMP thread for small batches (see :data:`SERVING_BATCH_THREADS_MAX_USERS`)."""
    if n_users > SERVING_BATCH_THREADS_MAX_USERS:
        return nullcontext()
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


@dataclass
class _Tables:
    """Feature lookups of one fitted stage, as arrays aligned with the matrix rows / columns."""

    user: np.ndarray  # float32 (n_users, len(_USER_COLUMNS))
    item: np.ndarray  # float32 (n_items, len(_ITEM_COLUMNS) + 1): + log1p of the matrix column sum
    item_category: np.ndarray  # int32 (n_items,), -1 = no category
    categories: np.ndarray  # str (n_categories,)
    category_keys: np.ndarray  # int64 sorted: user_row * n_categories + category code
    category_values: np.ndarray  # float32 (len(keys), len(_CATEGORY_COLUMNS))
    unavailable: np.ndarray  # bool (n_items,)

    def state(self) -> dict[str, np.ndarray]:
        return {f"tables_{k}": getattr(self, k) for k in self.__dataclass_fields__}

    @cached_property
    def category_onehot(self) -> sparse.csr_matrix:
        """Item -> category indicator, (n_items, n_categories): built once, not per scored batch (at 100k items
        building it took most of a single visitor's feature time)."""
        has = self.item_category >= 0
        return sparse.csr_matrix(
            (np.ones(int(has.sum()), dtype=np.float32), (np.flatnonzero(has), self.item_category[has])),
            shape=(len(self.item_category), len(self.categories)),
        )

    @cached_property
    def price_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """(1.0 where the item has a price, the price or 0.0), float32 per item: built once."""
        price = self.item[:, _ITEM_COLUMNS.index(PRICE)]
        has_price = np.isfinite(price)
        return has_price.astype(np.float32), np.where(has_price, price, 0.0).astype(np.float32)

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> _Tables:
        return cls(**{k: state[f"tables_{k}"] for k in cls.__dataclass_fields__})


@dataclass
class _Stage:
    """One fitted set of candidate generators with its id maps and feature tables."""

    matrix: InteractionMatrix
    families: dict[str, CandidateGenerator]
    tables: _Tables


@dataclass
class _Batch:
    """Candidates of a batch of users and everything the ranker and the reasons need."""

    cands: np.ndarray  # int64 (users, width) item columns, -1 = padding
    features: np.ndarray  # float32 (users * width, n_features)
    sources: np.ndarray  # int16 (users, width): index of the family whose own list ranked it best
    source_pos: np.ndarray  # float32 (users, width): that position (0 = its top item)
    base: np.ndarray  # float32 (users, width): fallback order without a ranker (reciprocal-rank fusion)


class RecommenderSystem(BaseEstimator):
    """Two-stage recommender over item keys (see the module docstring).

    Parameters
    ----------
    models : dict of family name -> hyperparameters, or None
        Candidate generators to fit (names of ``personalization.recommenders.FAMILIES``); None means
        :data:`DEFAULT_MODELS`. ``content`` is skipped when no item catalog with text or attributes is given.
        A ``random_state`` is filled in for families that take one.
    ranker : {"gbdt", "mlp", "stacked", None}
        Second stage. None keeps the candidate order of reciprocal-rank fusion of the families' lists.
    event_weights : dict of event type -> weight, or None
        Interaction weights (``build_interactions``); None means :data:`DEFAULT_EVENT_WEIGHTS`. An event with a
        positive weight in the label part is a positive label for the ranker.
    half_life_days : float or None
        Time decay of interaction weights.
    scaling : {"none", "log", "bm25"}
        Confidence scaling of the interaction matrix.
    candidates_per_model : int
        Items each family proposes before re-ranking.
    label_days : float or None
        Length of the label part at the end of the training events; None = the last 20% of the time span.
    ranker_params : dict or None
        Extra hyperparameters of the ranker class.
    blend : float in [0, 1]
        Weight of the ranker in the final order: each candidate scores ``blend * p + (1 - blend) * a``, where ``p``
        and ``a`` are its percentile ranks (per user, among the candidates) under the ranker and under the
        ``anchor``. 1 (the default) is the ranker alone; 0 is the anchor's order over the candidate set. A ranker
        trained on few label-part users can rank worse than the strongest family: choose ``blend`` on a
        validation window.
    anchor : str or None
        Score the ranker is blended with: a fitted family's name (e.g. ``"ease"``) or None for reciprocal-rank
        fusion of the families' lists (also the order used when there is no ranker, or a family is missing).
    random_state : int, Generator or None
        Resolved in ``fit``.

    Learned attributes: ``matrix_`` (InteractionMatrix, id <-> index maps of all training events), ``families_``
    (fitted generators by name), ``ranker_`` (or None), ``feature_names_``, ``cutoff_`` (start of the label part),
    ``trained_until_``, ``metrics_`` (per-stage sizes, timings, candidate recall, ranker validation AUC).
    """

    def __init__(
        self,
        models: Mapping[str, Mapping[str, Any]] | None = None,
        ranker: str | None = "gbdt",
        event_weights: Mapping[str, float] | None = None,
        half_life_days: float | None = None,
        scaling: str = "none",
        candidates_per_model: int = 50,
        label_days: float | None = None,
        ranker_params: Mapping[str, Any] | None = None,
        random_state: int | np.random.Generator | None = None,
        blend: float = 1.0,
        anchor: str | None = None,
    ):
        self.models = models
        self.ranker = ranker
        self.event_weights = event_weights
        self.half_life_days = half_life_days
        self.scaling = scaling
        self.candidates_per_model = candidates_per_model
        self.label_days = label_days
        self.ranker_params = ranker_params
        self.random_state = random_state
        self.blend = blend
        self.anchor = anchor

    # == fitting ======================================================================================
    def _model_specs(self) -> dict[str, dict[str, Any]]:
        from . import FAMILIES

        specs = {k: dict(v or {}) for k, v in (DEFAULT_MODELS if self.models is None else self.models).items()}
        if not specs:
            raise ValueError("models is empty: give at least one candidate-generator family, e.g. {'popularity': {}}")
        unknown = sorted(set(specs) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown model famil{'y' if len(unknown) == 1 else 'ies'} {unknown}: choose from "
                             f"{sorted(FAMILIES)}")
        return specs

    def _weights(self) -> dict[str, float]:
        return dict(DEFAULT_EVENT_WEIGHTS if self.event_weights is None else self.event_weights)

    def fit(
        self,
        events: pd.DataFrame,
        items: pd.DataFrame | None = None,
        progress: Callable[[str, float], None] | None = None,
    ) -> RecommenderSystem:
        """Train both stages on ``events`` (columns of ``pipeline.columns``) and the optional ``items`` catalog.

        ``progress(stage, fraction)`` is called along the way; the last call is ``("done", 1.0)``.
        """
        started = time.perf_counter()
        timings: dict[str, float] = {}
        clock = {"stage": None, "at": started}

        def report(stage: str, fraction: float) -> None:
            now = time.perf_counter()
            if clock["stage"] is not None:
                timings[clock["stage"]] = round(timings.get(clock["stage"], 0.0) + now - clock["at"], 2)
            clock.update(stage=stage, at=now)
            if progress is not None:
                progress(stage, fraction)

        specs = self._model_specs()
        if self.ranker not in ("gbdt", "mlp", "stacked", None):
            raise ValueError(f"ranker must be 'gbdt', 'mlp', 'stacked' or None, got {self.ranker!r}")
        if self.candidates_per_model < 1:
            raise ValueError(f"candidates_per_model must be >= 1, got {self.candidates_per_model}")
        if not 0.0 <= float(self.blend) <= 1.0:
            raise ValueError(f"blend must be between 0 (anchor only) and 1 (ranker only), got {self.blend}")
        if self.anchor is not None and self.anchor not in specs:
            raise ValueError(f"anchor must be None (rank fusion) or one of the fitted families {sorted(specs)}, "
                             f"got {self.anchor!r}")
        missing = [c for c in (USER, ITEM, EVENT, TIMESTAMP) if c not in events.columns]
        if missing:
            raise ValueError(f"events lack column(s) {missing}; expected {USER}, {ITEM}, {EVENT}, {TIMESTAMP}")
        rng = np.random.default_rng(self.random_state)
        weights = self._weights()
        events = events.loc[events[USER].notna() & events[ITEM].notna()].copy()
        events[USER] = events[USER].astype(str)
        events[ITEM] = events[ITEM].astype(str)
        events[TIMESTAMP] = utc_series(events[TIMESTAMP])
        events = events.loc[events[TIMESTAMP].notna()].sort_values(TIMESTAMP, kind="stable")
        positive = events[EVENT].map(lambda t: float(weights.get(t, 0.0)) > 0).to_numpy(dtype=bool)
        if not positive.any():
            raise ValueError(f"no event has a positive weight: event types {sorted(events[EVENT].unique())[:10]} vs "
                             f"event_weights {weights}")
        catalog = indexed_by_item(items, ITEM) if items is not None and len(items) else None
        item_ids = np.unique(np.concatenate([
            events.loc[positive, ITEM].unique().astype(str),
            catalog.index.to_numpy(dtype=str) if catalog is not None else np.zeros(0, dtype=str),
        ]))
        metrics: dict[str, Any] = {"events": int(len(events)), "items": int(len(item_ids))}

        # (a) time split: generators and tables on the fit part, ranker labels from the label part
        report("split", 0.0)
        ts = events[TIMESTAMP]
        first, last = ts.iloc[0], ts.iloc[-1]
        span = last - first
        label_span = pd.Timedelta(days=self.label_days) if self.label_days is not None else span * 0.2
        cutoff = last - label_span
        fit_part = events.loc[(ts < cutoff).to_numpy()]
        label_part = events.loc[(ts >= cutoff).to_numpy()]
        self.ranker_ = None
        feature_names = None
        if self.ranker is not None and len(fit_part) and len(label_part):
            stage = self._fit_stage(fit_part, catalog, item_ids, specs, cutoff, rng, report, "stage1", 0.02, 0.4)
            metrics["stage1"] = {"events": int(len(fit_part)), "users": int(stage.matrix.shape[0]),
                                 "label_events": int(len(label_part)), "cutoff": cutoff.isoformat()}
            report("ranker_data", 0.4)
            X, y, groups, info = self._ranker_data(stage, label_part, weights, rng)
            metrics["stage1"].update(info)
            feature_names = self._feature_names(list(stage.families))
            report("ranker", 0.5)
            if len(y) and 0 < y.sum() < len(y):
                self.ranker_, metrics["ranker"] = self._fit_ranker(X, y, groups, rng)
            else:
                metrics["ranker"] = {"skipped": "no positive (or no negative) candidate in the label part"}
        # (b) refit on everything for serving
        stage = self._fit_stage(events, catalog, item_ids, specs, last, rng, report, "stage2", 0.6, 0.98)
        self.matrix_ = stage.matrix
        self.families_ = stage.families
        self.tables_ = stage.tables
        self.feature_names_ = self._feature_names(list(stage.families))
        if feature_names is not None and feature_names != self.feature_names_:
            # a family failed in one stage only: the ranker's features no longer line up
            self.ranker_ = None
            metrics["ranker"] = {"skipped": "families differ between the two stages"}
        self.cutoff_ = cutoff
        self.trained_until_ = last
        metrics["stage2"] = {"events": int(len(events)), "users": int(self.matrix_.shape[0]),
                             "items": int(self.matrix_.shape[1]), "families": list(self.families_)}
        report("done", 1.0)
        metrics["seconds"] = round(time.perf_counter() - started, 2)
        metrics["stage_seconds"] = timings
        self.metrics_ = _json_safe(metrics)
        return self

    def _fit_stage(self, events, catalog, item_ids, specs, now, rng, report, name, start, end) -> _Stage:
        from . import FAMILIES

        weights = self._weights()
        matrix = build_interactions(events, weights, self.half_life_days, now=now, scaling=self.scaling,
                                    item_ids=item_ids)
        csr = matrix.csr
        families: dict[str, CandidateGenerator] = {}
        step = (end - start) / (len(specs) + 1)
        for i, (family, params) in enumerate(specs.items()):
            report(f"{name}:{family}", start + i * step)
            cls = FAMILIES[family]
            params = dict(params)
            if "random_state" in cls().get_params() and params.get("random_state") is None:
                params["random_state"] = _seed(rng)
            model = cls(**params)
            if family == "content":
                content = self._content_inputs(catalog, matrix)
                if content is None:
                    continue
                model.fit(csr, **content)
            elif family == "item2vec":
                model.fit(csr, sessions=self._sessions(events, matrix))
            elif family == "popularity":
                self._fit_popularity(model, events, matrix, now)
            else:
                model.fit(csr)
            families[family] = model
        report(f"{name}:features", start + len(specs) * step)
        tables = self._tables(events, catalog, matrix, now, weights)
        return _Stage(matrix, families, tables)

    @staticmethod
    def _content_inputs(catalog: pd.DataFrame | None, matrix: InteractionMatrix) -> dict[str, Any] | None:
        if catalog is None:
            return None
        aligned = catalog.reindex(matrix.item_ids)
        out: dict[str, Any] = {}
        if TEXT in aligned and aligned[TEXT].notna().any():
            out["item_text"] = aligned[TEXT].where(aligned[TEXT].notna(), "").astype(str).tolist()
        attrs = [c for c in (CATEGORY, BRAND) if c in aligned and aligned[c].notna().any()]
        if attrs:
            out["item_attributes"] = aligned[attrs].reset_index(drop=True)
        return out or None

    @staticmethod
    def _sessions(events: pd.DataFrame, matrix: InteractionMatrix) -> list[list[int]]:
        """Item columns per visit in time order (the session column, else 30-minute inactivity sessions)."""
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

    @staticmethod
    def _fit_popularity(model, events: pd.DataFrame, matrix: InteractionMatrix, now: pd.Timestamp) -> None:
        cols = matrix.cols_for(events[ITEM].to_numpy())
        age = (now - events[TIMESTAMP]).dt.total_seconds().to_numpy() / 86400.0
        n = matrix.shape[1]
        recent = np.bincount(cols[(cols >= 0) & (age < 7)], minlength=n)
        older = np.bincount(cols[(cols >= 0) & (age >= 7) & (age < 14)], minlength=n)
        ages = None
        if getattr(model, "decay_half_life_days", None) is not None:
            rows = matrix.rows_for(events[USER].to_numpy())
            ok = (rows >= 0) & (cols >= 0)
            keys = rows[ok].astype(np.int64) * n + cols[ok]
            youngest = pd.Series(age[ok]).groupby(keys).min()
            csr = matrix.csr
            entry_keys = _entry_rows(csr).astype(np.int64) * n + csr.indices
            ages = youngest.reindex(entry_keys).fillna(0.0).to_numpy()
        model.fit(matrix.csr, ages_days=ages, recent_counts=recent, older_counts=older)
        # segment popularity for visitors with nothing but a context: each user's main country and device
        labels, rows_used = [], []
        for col in (COUNTRY, DEVICE):
            if col not in events.columns or events[col].isna().all():
                continue
            counts = events.loc[events[col].notna()].groupby([USER, col], observed=True).size()
            main = counts.sort_values(ascending=False, kind="stable").reset_index()
            main = main.drop_duplicates(USER).set_index(USER)[col]
            rows = matrix.rows_for(main.index)
            ok = rows >= 0
            rows_used.append(rows[ok])
            labels.append(np.array([f"{col}={v}" for v in main.to_numpy()[ok]], dtype=object))
        if rows_used:
            stacked = sparse.vstack([matrix.csr[r] for r in rows_used], format="csr")
            model.fit_segments(stacked, np.concatenate(labels).astype(str), ages_days=None if ages is None else
                               _row_ages(matrix.csr, ages, np.concatenate(rows_used)))

    @staticmethod
    def _tables(events, catalog, matrix: InteractionMatrix, now, weights) -> _Tables:
        n_users, n_items = matrix.shape
        known = events.loc[events[USER].isin(matrix.user_index)]
        uf = user_features(known, now=now)
        user = uf.reindex(matrix.user_ids)[_USER_COLUMNS].to_numpy(dtype=np.float32, na_value=np.nan)
        catalog_frame = catalog.reset_index() if catalog is not None else None
        itf = item_features_frame(known, catalog_frame, now=now, windows=(7, 30, 90)).reindex(matrix.item_ids)
        for col in _ITEM_COLUMNS:
            if col not in itf:
                itf[col] = np.nan
        pop = np.log1p(np.asarray((matrix.csr > 0).sum(axis=0), dtype=np.float64).ravel())
        item = np.column_stack([itf[_ITEM_COLUMNS].astype(float).to_numpy(), pop]).astype(np.float32)
        unavailable = (itf[AVAILABLE] == 0).to_numpy(dtype=bool)
        if catalog is not None and CATEGORY in catalog:
            category = catalog[CATEGORY].reindex(matrix.item_ids)
            codes, categories = pd.factorize(category)
            categories = np.asarray(categories, dtype=str)
        else:
            codes, categories = np.full(n_items, -1), np.zeros(0, dtype=str)
        keys = np.zeros(0, dtype=np.int64)
        values = np.zeros((0, len(_CATEGORY_COLUMNS)), dtype=np.float32)
        if len(categories):
            item_frame = pd.DataFrame({ITEM: matrix.item_ids, CATEGORY: category.to_numpy()})
            aff = user_category_affinity(known, item_frame, weights=weights, now=now)
            if len(aff):
                rows = matrix.rows_for(aff[USER])
                cat = pd.Index(categories).get_indexer(aff[CATEGORY].astype(str))
                ok = (rows >= 0) & (cat >= 0)
                keys = rows[ok] * len(categories) + cat[ok]
                order = np.argsort(keys)
                keys = keys[order]
                values = aff[_CATEGORY_COLUMNS].to_numpy(dtype=np.float32)[ok][order]
        return _Tables(user=user, item=item, item_category=np.asarray(codes, dtype=np.int32),
                       categories=categories, category_keys=keys.astype(np.int64), category_values=values,
                       unavailable=unavailable)

    # -- ranker --------------------------------------------------------------------------------------
    @staticmethod
    def _feature_names(families: Sequence[str]) -> list[str]:
        names = []
        for f in families:
            names += [f"{f}_score", f"{f}_rank", f"{f}_gap", f"{f}_list_pos"]
        names += ["n_sources", "best_list_pos", "anonymous", "history_len"]
        names += _USER_COLUMNS + _ITEM_COLUMNS + ["item_users_log"]
        names += ["cat_affinity", *_CATEGORY_COLUMNS, "price_ratio", "user_mean_price"]
        return names

    def _ranker_data(self, stage: _Stage, label_part: pd.DataFrame, weights, rng):
        """Candidates, features and labels of the label-part users (warm users and anonymous sessions)."""
        matrix = stage.matrix
        n_items = matrix.shape[1]
        pos_events = label_part.loc[label_part[EVENT].map(lambda t: float(weights.get(t, 0.0)) > 0).to_numpy()]
        cols = matrix.cols_for(pos_events[ITEM].to_numpy())
        rows = matrix.rows_for(pos_events[USER].to_numpy())
        pos_events = pos_events.loc[cols >= 0]
        rows, cols = rows[cols >= 0], cols[cols >= 0]
        # warm users: their fit-part row is the history, their label-part items the labels
        warm_users = np.unique(rows[rows >= 0])
        if len(warm_users) > MAX_RANKER_USERS:
            warm_users = np.sort(rng.choice(warm_users, MAX_RANKER_USERS, replace=False))
        warm_hist = matrix.csr[warm_users]
        # anonymous visitors: every label-part session (of any user, known or not) seen without its user: all but
        # its last item form the history, the last item is the label (how an anonymous visit is served)
        sessions = pos_events.assign(_col=cols)
        if SESSION not in sessions.columns or sessions[SESSION].isna().any():
            sessions = sessionize(sessions.drop(columns=[SESSION], errors="ignore"))
        keys = sessions[USER].astype(str) + "\x1f" + sessions[SESSION].astype(str)
        session_cols, starts, ends = _labelled_sessions(keys.to_numpy(), sessions["_col"].to_numpy())
        budget = max(MAX_RANKER_USERS - 3 * len(warm_users), MAX_RANKER_USERS // 4)
        if len(starts) > budget:
            pick = np.sort(rng.choice(len(starts), budget, replace=False))
            starts, ends = starts[pick], ends[pick]
        cold_hist_rows = [session_cols[a : b - 1] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        cold_labels = session_cols[ends - 1].astype(np.int64).tolist()
        cold_hist = _history_rows(cold_hist_rows, n_items)
        user_rows = np.concatenate([warm_users, np.full(len(cold_labels), -1)]).astype(np.int64)
        hist = sparse.vstack([warm_hist, cold_hist], format="csr") if len(cold_labels) else warm_hist
        warm_keys = np.unique(rows[rows >= 0] * n_items + cols[rows >= 0])
        seen = matrix.csr[warm_users]
        seen_keys = np.repeat(warm_users, np.diff(seen.indptr)) * n_items + seen.indices
        warm_keys = warm_keys[np.isin(warm_keys // n_items, warm_users) & ~np.isin(warm_keys, seen_keys)]
        Xs, ys, gs = [], [], []
        found = 0
        sampler = np.random.default_rng(_seed(rng))
        for chunk in _chunks(len(user_rows), n_items):
            batch = self._candidates(stage, user_rows[chunk], hist[chunk], filter_seen=True, exclude=None)
            width = batch.cands.shape[1]
            urows = user_rows[chunk]
            idx = np.arange(chunk.start, chunk.stop)
            valid = batch.cands >= 0
            y = np.isin(urows[:, None] * n_items + batch.cands, warm_keys) & valid & (urows[:, None] >= 0)
            anon = np.flatnonzero(urows < 0)
            if len(anon):
                labels = np.asarray(cold_labels, dtype=np.int64)[idx[anon] - len(warm_users)]
                y[anon] = batch.cands[anon] == labels[:, None]
            X = batch.features.reshape(len(urows), width, -1)
            for j in range(len(urows)):
                pos = np.flatnonzero(y[j])
                found += len(pos)
                if not len(pos):
                    continue  # no positive among the candidates: nothing to learn about ranking them
                neg = np.flatnonzero(~y[j] & valid[j])
                if len(neg) > MAX_NEGATIVES_PER_USER:
                    neg = sampler.choice(neg, MAX_NEGATIVES_PER_USER, replace=False)
                take = np.concatenate([pos, neg])
                Xs.append(X[j, take])
                ys.append(y[j, take])
                gs.append(np.full(len(take), idx[j]))
        # candidate recall: share of label-part positives (new items of warm users, last items of sessions) proposed
        positives = len(warm_keys) + len(cold_labels)
        info = {"ranker_users": int(len(user_rows)), "warm_users": int(len(warm_users)),
                "anonymous_users": int(len(cold_labels)), "candidate_recall": found / positives if positives else None}
        if not Xs:
            return np.zeros((0, 0), np.float32), np.zeros(0, int), np.zeros(0, int), info
        X = np.concatenate(Xs)
        y = np.concatenate(ys).astype(int)
        groups = np.concatenate(gs)
        info.update({"ranker_rows": int(len(y)), "ranker_positives": int(y.sum())})
        return X, y, groups, info

    def _make_ranker(self, seed: int):
        from .rankers import GradientBoostedRanker, MLPRanker, StackedRanker

        params = dict(self.ranker_params or {})
        if self.ranker == "gbdt":
            defaults = {"learning_rate": 0.1, "max_iter": 300, "min_samples_leaf": 50, "l2_regularization": 1.0,
                        "n_iter_no_change": 15}
            return GradientBoostedRanker(**{**defaults, **params, "random_state": seed})
        if self.ranker == "mlp":
            return MLPRanker(**{**params, "random_state": seed})
        return StackedRanker(**{"n_splits": 3, **params, "random_state": seed})

    def _fit_ranker(self, X, y, groups, rng):
        from sklearn.model_selection import GroupShuffleSplit

        from ..evaluation.metrics import roc_auc

        seed = _seed(rng)
        started = time.perf_counter()
        # constant or all-missing columns (no prices, no categories...) carry nothing and break tree binning
        finite = np.isfinite(X)
        lo = np.where(finite, X, np.inf).min(axis=0)
        hi = np.where(finite, X, -np.inf).max(axis=0)
        self.ranker_columns_ = np.flatnonzero(np.isfinite(lo) & (hi > lo)).astype(np.int64)
        X = X[:, self.ranker_columns_]
        ranker = self._make_ranker(seed)
        X_val = y_val = None
        fit_X, fit_y, fit_groups = X, y, groups
        if len(np.unique(groups)) >= 10:
            split = GroupShuffleSplit(n_splits=1, test_size=RANKER_VALIDATION_FRACTION, random_state=seed)
            train, val = next(split.split(X, y, groups))
            if 0 < y[val].sum() < len(val) and 0 < y[train].sum() < len(train):
                fit_X, fit_y, fit_groups = X[train], y[train], groups[train]
                X_val, y_val = X[val], y[val]
        with _ranker_threads():
            ranker.fit(fit_X, fit_y, groups=fit_groups, X_val=X_val, y_val=y_val)
            val_scores = ranker.predict_proba(X_val) if X_val is not None else None
        info = {"kind": self.ranker, "rows": int(len(fit_y)), "seconds": round(time.perf_counter() - started, 2)}
        if X_val is not None:
            info["validation_auc"] = roc_auc(y_val, val_scores)
            info["validation_rows"] = int(len(y_val))
        if hasattr(ranker, "n_iter_"):
            info["n_iter"] = int(ranker.n_iter_)

        return ranker, info

    # == candidates and features =======================================================================
    def _candidates(
        self,
        stage: _Stage,
        user_rows: np.ndarray,
        hist: sparse.csr_matrix,
        filter_seen: bool,
        exclude: np.ndarray | None,
        proposers: Sequence[str] | None = None,
    ) -> _Batch:
        """Candidates (union of the families' top lists) and ranker features for one chunk of users."""
        names = list(stage.families)
        n_users = len(user_rows)
        n_items = stage.matrix.shape[1]
        k = self.candidates_per_model
        anonymous = user_rows < 0
        if proposers is None:
            proposers = names
        scorers = {}  # family -> its scores at (users x width) columns, for the features
        lists = []
        list_of = []
        for i, name in enumerate(names):
            blocked = anonymous if name not in HISTORY_FAMILIES and anonymous.any() else None
            ids, scorers[name] = stage.families[name]._propose(user_rows, hist, k if name in proposers else 0,
                                                              hist if filter_seen else None, exclude, blocked)
            if name in proposers:
                lists.append(ids.astype(np.int64))
                list_of.append(i)
        allc = np.concatenate(lists, axis=1) if lists else np.full((n_users, 0), -1, dtype=np.int64)
        cands = _row_unique(allc)
        width = cands.shape[1]
        safe = np.where(cands >= 0, cands, 0)
        valid = cands >= 0
        rows_idx = np.arange(n_users)[:, None]

        # each candidate's position in every family's own list (NaN when that family did not propose it)
        list_pos = np.full((len(names), n_users, width), np.nan, dtype=np.float32)
        scratch = np.full((n_users, n_items), -1, dtype=np.int32)
        for ids, i in zip(lists, list_of, strict=True):
            ok = ids >= 0
            r = np.broadcast_to(rows_idx, ids.shape)[ok]
            scratch[r, ids[ok]] = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)[ok]
            pos = scratch[rows_idx, safe].astype(np.float32)
            pos[(pos < 0) | ~valid] = np.nan
            list_pos[i] = pos
            scratch[r, ids[ok]] = -1
        with np.errstate(invalid="ignore"):
            best_pos = np.nanmin(np.where(np.isnan(list_pos), np.inf, list_pos), axis=0)
        source = np.argmin(np.where(np.isnan(list_pos), np.inf, list_pos), axis=0).astype(np.int16)
        n_sources = (~np.isnan(list_pos)).sum(axis=0).astype(np.float32)
        rrf = np.nansum(1.0 / (60.0 + list_pos), axis=0).astype(np.float32)

        cols: list[np.ndarray] = []
        for i, name in enumerate(names):
            s = np.array(scorers[name](safe), dtype=np.float32)
            s[~valid] = -np.inf
            finite = np.isfinite(s)
            s_nan = np.where(finite, s, np.nan)
            order = np.argsort(-np.where(finite, s, -np.inf), axis=1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(width)[None, :].repeat(n_users, 0), axis=1)
            with np.errstate(invalid="ignore", all="ignore"):
                best = np.nanmax(np.where(finite, s, -np.inf), axis=1, keepdims=True)
                gap = np.where(finite, s - best, np.nan)
            cols += [s_nan, np.where(finite, rank, np.nan).astype(np.float32), gap, list_pos[i]]
        hist_len = np.diff(hist.indptr).astype(np.float32)
        cols += [n_sources, np.where(np.isfinite(best_pos), best_pos, np.nan),
                 np.broadcast_to(anonymous[:, None].astype(np.float32), (n_users, width)),
                 np.broadcast_to(hist_len[:, None], (n_users, width))]
        tables = stage.tables
        user_part = np.full((n_users, tables.user.shape[1]), np.nan, dtype=np.float32)
        user_part[~anonymous] = tables.user[user_rows[~anonymous]]
        for j in range(user_part.shape[1]):
            cols.append(np.broadcast_to(user_part[:, j : j + 1], (n_users, width)))
        item_part = tables.item[safe]  # (users, width, n_item_features)
        for j in range(item_part.shape[2]):
            cols.append(item_part[:, :, j])
        # category: the history's share in the item's category (any user), RFM in it (known users)
        n_cat = len(tables.categories)
        item_cat = tables.item_category[safe]
        if n_cat:
            share, total = _category_sums(hist, tables.item_category, n_cat)
            with np.errstate(invalid="ignore", divide="ignore"):
                share = share / np.where(total > 0, total, np.nan)
            aff = np.where(item_cat >= 0, share[rows_idx, np.where(item_cat >= 0, item_cat, 0)], np.nan)
            keys = np.where(~anonymous[:, None] & (item_cat >= 0), user_rows[:, None] * n_cat + item_cat, -1)
            at = np.searchsorted(tables.category_keys, keys)
            at = np.clip(at, 0, max(len(tables.category_keys) - 1, 0))
            hit = (keys >= 0) & (len(tables.category_keys) > 0)
            if len(tables.category_keys):
                hit &= tables.category_keys[at] == keys
            cat_vals = np.full((n_users, width, len(_CATEGORY_COLUMNS)), np.nan, dtype=np.float32)
            if hit.any():
                cat_vals[hit] = tables.category_values[at[hit]]
            known_cat = ~anonymous[:, None] & (item_cat >= 0) & ~hit
            cat_vals[known_cat, 1] = 0.0  # frequency 0
            cat_vals[known_cat, 2] = 0.0  # monetary 0
            cols.append(aff.astype(np.float32))
            for j in range(cat_vals.shape[2]):
                cols.append(cat_vals[:, :, j])
        else:
            cols += [np.full((n_users, width), np.nan, dtype=np.float32)] * (1 + len(_CATEGORY_COLUMNS))
        # price: the item's price over the history's weighted mean price
        price = tables.item[:, _ITEM_COLUMNS.index(PRICE)]
        has_price, price_or_zero = tables.price_terms
        num, den = _price_sums(hist, has_price, price_or_zero)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_price = np.where(den > 0, num / den, np.nan).astype(np.float32)
            ratio = price[safe] / mean_price[:, None]
        cols.append(ratio.astype(np.float32))
        cols.append(np.broadcast_to(mean_price[:, None], (n_users, width)))
        features = np.stack([np.asarray(c, dtype=np.float32) for c in cols], axis=-1).reshape(n_users * width, -1)
        return _Batch(cands=cands, features=features, sources=source, source_pos=best_pos.astype(np.float32),
                      base=np.where(valid, rrf, -np.inf).astype(np.float32))

    # == serving ======================================================================================
    def _check_fitted(self) -> None:
        if not hasattr(self, "families_"):
            raise RuntimeError("RecommenderSystem is not fitted yet: call fit(events, items) or load(directory)")

    def _stage(self) -> _Stage:
        self._check_fitted()
        return _Stage(self.matrix_, self.families_, self.tables_)

    def _histories(self, users: Sequence[str], histories: Mapping[str, Sequence[str]] | None):
        """Training rows of ``users`` (-1 when unknown) and their history rows (training row + given history).

        Built row by row with numpy, not with scipy's row indexing, scaling and addition: for one visitor those
        cost more than the rows (a serving request). The sums match scipy's: float32 additions of the training
        row and the float32 history weights, zeros dropped."""
        matrix = self.matrix_
        csr = matrix.csr
        rows = matrix.rows_for([str(u) for u in users])
        indptr = [0]
        indices: list[np.ndarray] = []
        data: list[np.ndarray] = []
        for i, u in enumerate(users):
            if rows[i] >= 0:
                start, end = csr.indptr[rows[i]], csr.indptr[rows[i] + 1]
                train_cols = csr.indices[start:end].astype(np.int64)
                train_vals = np.asarray(csr.data[start:end], dtype=np.float32)
            else:
                train_cols, train_vals = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            keys = (histories or {}).get(u) or []
            seq = matrix.cols_for([str(k) for k in keys]) if keys else np.zeros(0, dtype=np.int64)
            seq = seq[seq >= 0]
            if len(seq):
                hist_cols, at = np.unique(seq, return_inverse=True)
                hist_vals = np.bincount(at, weights=_decay_weights(len(seq))).astype(np.float32)  # repeats add up
                cols = np.union1d(train_cols, hist_cols)
                vals = np.zeros(len(cols), dtype=np.float32)
                vals[np.searchsorted(cols, train_cols)] = train_vals
                vals[np.searchsorted(cols, hist_cols)] += hist_vals
            else:
                order = np.argsort(train_cols, kind="stable")
                cols, vals = train_cols[order], train_vals[order]
            keep = vals != 0
            indices.append(cols[keep])
            data.append(vals[keep])
            indptr.append(indptr[-1] + int(keep.sum()))
        hist = sparse.csr_matrix(
            (np.concatenate(data) if data else np.zeros(0, dtype=np.float32),
             np.concatenate(indices).astype(np.int32) if indices else np.zeros(0, dtype=np.int32),
             np.asarray(indptr, dtype=np.int64)), shape=(len(users), matrix.shape[1]), dtype=np.float32)
        hist.has_sorted_indices = True
        return rows, hist

    def _exclude_cols(self, exclude) -> np.ndarray:
        cols = self.matrix_.cols_for([str(k) for k in exclude]) if exclude else np.zeros(0, dtype=np.int64)
        unavailable = np.flatnonzero(self.tables_.unavailable)
        return np.unique(np.concatenate([cols[cols >= 0], unavailable])).astype(np.int64)

    def recommend_rows(
        self,
        user_rows: np.ndarray,
        user_items: sparse.csr_matrix,
        n: int = 10,
        filter_seen: bool = True,
        exclude: np.ndarray | None = None,
        with_sources: bool = False,
    ):
        """The whole system in the candidate-generator contract (matrix rows and columns), batched.

        Users with an empty history and no training row get nothing here (``-1`` padding). Returns
        ``(ids int32, scores float32)`` like :meth:`CandidateGenerator.recommend`, plus ``(source family index,
        position in its list)`` arrays when ``with_sources``.
        """
        self._check_fitted()
        user_rows = np.asarray(user_rows, dtype=np.int64).ravel()
        with _serving_threads(len(user_rows)):
            return self._recommend_rows(user_rows, user_items, n, filter_seen, exclude, with_sources)

    def _recommend_rows(self, user_rows, user_items, n, filter_seen, exclude, with_sources):
        stage = self._stage()
        user_items = sparse.csr_matrix(user_items, dtype=np.float32)
        n_items = self.matrix_.shape[1]
        ids = np.full((len(user_rows), n), -1, dtype=np.int32)
        scores = np.full((len(user_rows), n), -np.inf, dtype=np.float32)
        sources = np.full((len(user_rows), n), -1, dtype=np.int16)
        excl = self._exclude_cols(()) if exclude is None else np.unique(
            np.concatenate([np.asarray(exclude, dtype=np.int64).ravel(), self._exclude_cols(())]))
        has_any = (user_rows >= 0) | (np.diff(user_items.indptr) > 0)
        todo = np.flatnonzero(has_any)
        for chunk in _chunks(len(todo), n_items):
            sel = todo[chunk]
            anonymous = user_rows[sel] < 0
            proposers = None if not anonymous.all() else [f for f in self.families_ if f in HISTORY_FAMILIES]
            batch = self._candidates(stage, user_rows[sel], user_items[sel], filter_seen, excl, proposers)
            width = batch.cands.shape[1]
            if self.ranker_ is not None and width:
                with _ranker_threads():
                    final = self.ranker_.predict_proba(batch.features[:, self.ranker_columns_])
                final = final.reshape(len(sel), width).astype(np.float32)
                final = np.where(batch.cands >= 0, final, -np.inf)
                if self.blend < 1.0:
                    final = self._blended(final, batch)
            else:
                final = batch.base
            m = min(n, width)
            if m == 0:
                continue
            order = np.argsort(-final, axis=1, kind="stable")[:, :m]
            top = np.take_along_axis(batch.cands, order, axis=1)
            top_scores = np.take_along_axis(final, order, axis=1)
            ok = (top >= 0) & np.isfinite(top_scores)
            ids[sel, :m] = np.where(ok, top, -1)
            scores[sel, :m] = np.where(ok, top_scores, -np.inf)
            sources[sel, :m] = np.where(ok, np.take_along_axis(batch.sources, order, axis=1), -1)
        if with_sources:
            return ids, scores, sources
        return ids, scores

    def _blended(self, final: np.ndarray, batch: _Batch) -> np.ndarray:
        """``blend * percentile(ranker) + (1 - blend) * percentile(anchor)`` per user over its candidates."""
        n_users, width = batch.cands.shape
        anchor = batch.base
        if self.anchor is not None and f"{self.anchor}_score" in self.feature_names_:
            col = self.feature_names_.index(f"{self.anchor}_score")
            anchor = batch.features[:, col].reshape(n_users, width)
        valid = batch.cands >= 0
        blend = float(self.blend)
        out = blend * _percentiles(final, valid) + (1.0 - blend) * _percentiles(anchor, valid)
        # ties (equal blended scores) go to the ranker's order
        out = out + 1e-6 * _percentiles(final, valid)
        return np.where(valid, out, -np.inf).astype(np.float32)

    def recommend(
        self,
        users: Sequence[str],
        n: int = 10,
        histories: Mapping[str, Sequence[str]] | None = None,
        exclude: set[str] | None = None,
        filter_seen: bool = True,
        context: Mapping[str, Any] | None = None,
    ) -> list[list[tuple[str, float, str]]]:
        """``n`` recommendations per user as ``(item key, score, reason)``, best first.

        Known users use their training rows (plus any ``histories`` entry); unknown users with a history (item keys,
        most recent last) are scored from it alone; users with neither get the most popular items of their
        ``context`` segment (``country``, else ``device``), else global popularity. ``exclude`` and unavailable
        items are never returned, nor (``filter_seen``) items of the user's history.
        """
        self._check_fitted()
        users = [str(u) for u in users]
        with _serving_threads(len(users)):
            return self._recommend(users, n, histories, exclude, filter_seen, context)

    def _recommend(self, users, n, histories, exclude, filter_seen, context):
        rows, hist = self._histories(users, histories)
        excl = self._exclude_cols(exclude)
        ids, scores, sources = self._recommend_rows(np.asarray(rows, dtype=np.int64).ravel(), hist, n, filter_seen,
                                                    excl, with_sources=True)
        names = list(self.families_)
        keys = self.matrix_.item_ids
        out: list[list[tuple[str, float, str]]] = []
        for i in range(len(users)):
            if rows[i] < 0 and hist[i].nnz == 0:
                out.append(self._popular(n, excl, context))
                continue
            ok = ids[i] >= 0
            cols = ids[i][ok]
            reasons = self._reasons(_row(hist, i), cols, [names[s] for s in sources[i][ok]])
            out.append([(str(keys[c]), float(s), r) for c, s, r in zip(cols, scores[i][ok], reasons, strict=True)])
        return out

    def _popular(self, n: int, exclude: np.ndarray, context: Mapping[str, Any] | None) -> list[tuple[str, float, str]]:
        model = self.families_.get("popularity")
        keys = self.matrix_.item_ids
        if model is None:  # no popularity family: count training users per item
            pop = np.asarray((self.matrix_.csr > 0).sum(axis=0), dtype=np.float32)
            ids, scores = top_n(pop, n, exclude=exclude)
            return [(str(keys[c]), float(s), "popularity") for c, s in zip(ids[0], scores[0], strict=True) if c >= 0]
        for col in (COUNTRY, DEVICE):
            value = (context or {}).get(col)
            segments = getattr(model, "segments_", None)
            if value is None or segments is None:
                continue
            segment = f"{col}={value}"
            if segment in set(segments.tolist()):
                ids, scores = model.recommend_for_segment(segment, n, exclude=exclude)
                return [(str(keys[c]), float(s), f"popularity:{segment}") for c, s in
                        zip(ids, scores, strict=True) if c >= 0]
        ids, scores = model.recommend_popular(n, exclude=exclude)
        return [(str(keys[c]), float(s), "popularity") for c, s in zip(ids, scores, strict=True) if c >= 0]

    def _reasons(self, hist_row: tuple[np.ndarray, np.ndarray], cols: np.ndarray, sources: list[str]) -> list[str]:
        """``source`` or ``source:because <history item>`` (the history item contributing most to the score);
        ``hist_row``: the history's (columns, weights)."""
        reasons = list(sources)
        need = [j for j, s in enumerate(sources) if s in BECAUSE_FAMILIES]
        h_cols, h_w = hist_row
        if not need or len(h_cols) == 0:
            return reasons
        if len(h_cols) > 200:
            top = np.argsort(-h_w, kind="stable")[:200]
            h_cols, h_w = h_cols[top], h_w[top]
        keys = self.matrix_.item_ids
        by_family: dict[str, list[int]] = {}
        for j in need:
            by_family.setdefault(sources[j], []).append(j)
        for family, js in by_family.items():
            sims = self.families_[family]._similar_at(h_cols, cols[js])
            contrib = np.where(np.isfinite(sims), sims * h_w[:, None], -np.inf)
            best = np.argmax(contrib, axis=0)
            for j, b, top in zip(js, best, contrib.max(axis=0), strict=True):
                if np.isfinite(top) and top > 0:
                    reasons[j] = f"{family}:because {keys[h_cols[b]]}"
        return reasons

    def recommend_for_model(
        self,
        name: str,
        users: Sequence[str],
        n: int = 10,
        histories: Mapping[str, Sequence[str]] | None = None,
        exclude: set[str] | None = None,
        filter_seen: bool = True,
    ) -> list[list[tuple[str, float, str]]]:
        """One fitted family alone, through the same id maps and histories (for evaluation and debugging)."""
        self._check_fitted()
        if name not in self.families_:
            raise KeyError(f"no fitted family {name!r}; fitted: {sorted(self.families_)}")
        rows, hist = self._histories([str(u) for u in users], histories)
        ids, scores = self.families_[name].recommend(rows, hist, n, filter_seen, self._exclude_cols(exclude))
        keys = self.matrix_.item_ids
        return [[(str(keys[c]), float(s), name) for c, s in zip(i, sc, strict=True) if c >= 0]
                for i, sc in zip(ids, scores, strict=True)]

    def similar_items(self, items: Sequence[str], n: int = 10) -> list[list[tuple[str, float]]]:
        """Items like each of ``items``: a blend of item-kNN, item2vec and content similarities (each scaled to its
        best match), content alone for items without interactions. Unknown keys get an empty list."""
        self._check_fitted()
        with _serving_threads(len(items)):
            return self._similar_items(items, n)

    def _column_entries(self) -> np.ndarray:
        """Stored entries per item column of the training matrix (computed once per matrix)."""
        csr = self.matrix_.csr
        cached = getattr(self, "_column_entries_cache", None)
        if cached is None or cached[0] is not csr:
            cached = (csr, np.bincount(csr.indices, minlength=csr.shape[1]))
            self._column_entries_cache = cached
        return cached[1]

    def _similar_items(self, items: Sequence[str], n: int) -> list[list[tuple[str, float]]]:
        cols = self.matrix_.cols_for([str(k) for k in items])
        n_items = self.matrix_.shape[1]
        keys = self.matrix_.item_ids
        out: list[list[tuple[str, float]]] = [[] for _ in items]
        known = np.flatnonzero(cols >= 0)
        if not len(known):
            return out
        q = cols[known]
        interacted = self._column_entries()[q] > 0
        blend = np.zeros((len(q), n_items), dtype=np.float32)
        weight = np.zeros((len(q), 1), dtype=np.float32)
        for family in ("itemknn", "item2vec", "content"):
            model = self.families_.get(family)
            if model is None:
                continue
            sims = np.asarray(model._similar_all(q), dtype=np.float32)
            sims[np.arange(len(q)), q] = -np.inf
            finite = np.isfinite(sims)
            with np.errstate(invalid="ignore", all="ignore"):
                top = np.max(np.where(finite, sims, -np.inf), axis=1, keepdims=True)
            use = (np.isfinite(top) & (top > 0)).ravel()
            if family != "content":
                use &= interacted
            scaled = np.where(finite & (sims > 0), sims / np.where(top > 0, top, 1.0), 0.0)
            blend[use] += scaled[use]
            weight[use] += 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            blend = np.where(weight > 0, blend / np.where(weight > 0, weight, 1.0), -np.inf)
        blend[blend <= 0] = -np.inf
        exclude = np.flatnonzero(self.tables_.unavailable)
        ids, scores = top_n(blend, n, exclude=np.concatenate([exclude, np.zeros(0, dtype=np.int64)]))
        for i, j in enumerate(known):
            out[j] = [(str(keys[c]), float(s)) for c, s in zip(ids[i], scores[i], strict=True)
                      if c >= 0 and c != q[i]]
        return out

    def item_similarity(self, items: Sequence[str]) -> np.ndarray:
        """Pairwise similarity of ``items`` in [0, 1]: the mean of the item-kNN, item2vec and content similarities
        (negatives and missing pairs count 0), 1 on the diagonal, 0 for keys the system does not know. Serving uses
        it for maximal-marginal-relevance diversity."""
        self._check_fitted()
        cols = self.matrix_.cols_for([str(k) for k in items])
        out = np.zeros((len(cols), len(cols)), dtype=np.float32)
        known = np.flatnonzero(cols >= 0)
        families = [self.families_[f] for f in ("itemknn", "item2vec", "content") if f in self.families_]
        if len(known) and families:
            q = cols[known]
            total = np.zeros((len(q), len(q)), dtype=np.float32)
            for model in families:
                sims = model._similar_at(q, q)
                total += np.clip(np.where(np.isfinite(sims), sims, 0.0), 0.0, 1.0)
            out[np.ix_(known, known)] = total / len(families)
        np.fill_diagonal(out, 1.0)
        return out

    def explain(self, user: str, item: str) -> str:
        """A short account of how ``item`` scores for ``user``: each family's score and the history item behind it."""
        self._check_fitted()
        rows, hist = self._histories([str(user)], None)
        col = int(self.matrix_.cols_for([str(item)])[0])
        if col < 0:
            return f"{item} is not in the trained catalogue"
        if rows[0] < 0:
            return f"{user} is unknown: they get popular items"
        parts = []
        for name, model in self.families_.items():
            score = float(model.score_items(rows, hist, np.array([[col]]))[0, 0])
            if np.isfinite(score):
                parts.append(f"{name}={score:.3g}")
        reason = self._reasons(_row(hist, 0), np.array([col]), ["itemknn" if "itemknn" in self.families_ else ""])[0]
        because = reason.split(":", 1)[1] if ":" in reason else ""
        return f"{item} for {user}: " + ", ".join(parts) + (f"; {because}" if because else "")

    # == evaluation ===================================================================================
    def evaluate(
        self,
        test_events: pd.DataFrame,
        k: int | Sequence[int] = (10, 20),
        models: bool | Sequence[str] = True,
        new_items_only: bool = True,
        users: Sequence[str] | None = None,
        max_users: int | None = None,
        random_state: int | np.random.Generator | None = None,
    ) -> dict[str, Any]:
        """Ranking metrics of the system and of each family alone on a later window of events.

        Users are the *warm* users (known at fit time) with at least one test event of positive weight; items
        are scored against their test items (only items not already in their training history when
        ``new_items_only``, as every model filters seen items). Cold users and test items unknown at fit time are
        counted under ``"cold"``. Uses :func:`personalization.evaluation.protocol.evaluate_recommender`, so the
        system and the families are scored by one protocol: ``{"system": {"ndcg@10": ..., "n_users": <evaluated>,
        "n_users_total": <eligible>}, "als": {...}, ..., "cold": {...}}``.

        ``users`` (subject keys) restricts the evaluation to those users, e.g. :meth:`evaluation_users` of
        another system, so two systems are compared on the same people. ``max_users`` caps the evaluated users
        with a seeded sample (``random_state``) of the eligible ones; the system and every family are scored on
        that one sample.
        """
        from ..evaluation.protocol import evaluate_recommender

        self._check_fitted()
        truth, cold = self._evaluation_truth(test_events, new_items_only)
        rows = self._user_sample(truth, users, max_users, random_state)
        cold["warm_users"] = int((np.diff(truth.indptr) > 0).sum())
        cold["sampled_users"] = int(len(rows))
        train = self.matrix_.csr
        result: dict[str, Any] = {"system": evaluate_recommender(_AsGenerator(self), train, truth, k=k, users=rows)}
        names = list(self.families_) if models is True else list(models or [])
        for name in names:
            result[name] = evaluate_recommender(self.families_[name], train, truth, k=k, users=rows,
                                                exclude=self._exclude_cols(()))
        result["cold"] = cold
        return _json_safe(result)

    def evaluation_users(
        self,
        test_events: pd.DataFrame,
        max_users: int | None = None,
        random_state: int | np.random.Generator | None = None,
        new_items_only: bool = True,
    ) -> np.ndarray:
        """Keys (sorted) of the users :meth:`evaluate` scores with the same arguments: pass them as its ``users``
        to score another system on the same sample."""
        self._check_fitted()
        truth, _ = self._evaluation_truth(test_events, new_items_only)
        return self.matrix_.user_ids[self._user_sample(truth, None, max_users, random_state)]

    def _evaluation_truth(self, test_events: pd.DataFrame, new_items_only: bool) -> tuple[sparse.csr_matrix, dict]:
        """Test items (users x items, aligned with ``matrix_``) of the warm users, and counts of the cold part."""
        weights = self._weights()
        test = test_events.loc[test_events[EVENT].map(lambda t: float(weights.get(t, 0.0)) > 0).to_numpy()]
        test = test.assign(**{USER: test[USER].astype(str), ITEM: test[ITEM].astype(str)})
        warm_user = test[USER].isin(self.matrix_.user_index).to_numpy()
        warm_item = test[ITEM].isin(self.matrix_.item_index).to_numpy()
        cold = {
            "test_rows": int(len(test)),
            "cold_user_rows": int((~warm_user).sum()),
            "cold_users": int(test.loc[~warm_user, USER].nunique()),
            "cold_item_rows": int((~warm_item).sum()),
            "cold_items": int(test.loc[~warm_item, ITEM].nunique()),
        }
        truth = build_interactions(test.loc[warm_user], {t: 1.0 for t in test[EVENT].unique()},
                                   user_ids=self.matrix_.user_ids, item_ids=self.matrix_.item_ids).csr
        if new_items_only:
            truth = (truth - truth.multiply(self.matrix_.csr > 0)).tocsr()
            truth.eliminate_zeros()
        return truth, cold

    def _user_sample(self, truth: sparse.csr_matrix, users: Sequence[str] | None, max_users: int | None,
                     random_state: int | np.random.Generator | None) -> np.ndarray:
        """Rows of the users to evaluate: those with test items (among ``users``), at most ``max_users`` of them
        drawn by key, so the sample does not depend on the row order of this system's matrix."""
        from ..evaluation.protocol import sample_users

        eligible = np.flatnonzero(np.diff(truth.indptr) > 0)
        keys = self.matrix_.user_ids[eligible]
        if users is not None:
            keys = keys[np.isin(keys, np.asarray(list(users), dtype=str))]
        return np.sort(self.matrix_.rows_for(sample_users(keys, max_users, random_state)))

    # == persistence ==================================================================================
    def save(self, directory: str | Path) -> None:
        """Write the fitted system to ``directory``: ``system.json`` (parameters, family names, metrics),
        ``matrix.npz`` (id maps + training matrix), ``families/<name>.npz``, ``tables.npz`` (feature tables) and
        ``ranker.joblib``. Only the ranker is a pickle (joblib): artifacts are written by our own training and must
        never be loaded from user input."""
        self._check_fitted()
        directory = Path(directory)
        (directory / "families").mkdir(parents=True, exist_ok=True)
        self.matrix_.save(directory / "matrix.npz")
        for name, model in self.families_.items():
            model.save(directory / "families" / f"{name}.npz")
        np.savez(directory / "tables.npz", **self.tables_.state())
        if self.ranker_ is not None:
            self.ranker_.save(directory / "ranker.joblib")
        params = self.get_params(deep=False)
        if not (params["random_state"] is None or isinstance(params["random_state"], (int, np.integer))):
            params["random_state"] = None
        meta = {
            "format": _FORMAT,
            "params": _json_safe(params),
            "families": list(self.families_),
            "ranker": self.ranker_ is not None,
            "feature_names": self.feature_names_,
            "ranker_columns": self.ranker_columns_.tolist() if self.ranker_ is not None else [],
            "cutoff": self.cutoff_.isoformat(),
            "trained_until": self.trained_until_.isoformat(),
            "metrics": self.metrics_,
        }
        (directory / "system.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> RecommenderSystem:
        """Read a system written by :meth:`save` (our own artifacts only: the ranker file is a joblib pickle)."""
        from .rankers import Ranker

        directory = Path(directory)
        meta = json.loads((directory / "system.json").read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{directory} holds a system artifact of format {meta.get('format')}, expected {_FORMAT}")
        system = cls(**meta["params"])
        system.matrix_ = InteractionMatrix.load(directory / "matrix.npz")
        system.families_ = {name: CandidateGenerator.load(directory / "families" / f"{name}.npz")
                            for name in meta["families"]}
        with np.load(directory / "tables.npz", allow_pickle=False) as npz:
            system.tables_ = _Tables.from_state({k: npz[k] for k in npz.files})
        system.ranker_ = Ranker.load(directory / "ranker.joblib") if meta["ranker"] else None
        system.feature_names_ = meta["feature_names"]
        system.ranker_columns_ = np.asarray(meta["ranker_columns"], dtype=np.int64)
        system.cutoff_ = pd.Timestamp(meta["cutoff"])
        system.trained_until_ = pd.Timestamp(meta["trained_until"])
        system.metrics_ = meta["metrics"]
        return system


class _AsGenerator:
    """The system seen through the candidate-generator ``recommend`` contract (for the evaluation protocol)."""

    def __init__(self, system: RecommenderSystem):
        self.system = system

    def recommend(self, user_rows, user_items, n=10, filter_seen=True, exclude=None):
        return self.system.recommend_rows(user_rows, user_items, n, filter_seen, exclude)


# -- helpers -----------------------------------------------------------------------------------------
def _chunks(total: int, n_items: int, cap: int = 1000):
    step = max(1, min(cap, MAX_DENSE_SCORES // max(8 * n_items, 1)))
    for start in range(0, total, step):
        yield slice(start, min(total, start + step))


def _percentiles(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row: 1 for the best of the valid finite scores down to 0 for the worst; 0 for non-finite / invalid."""
    ok = valid & np.isfinite(scores)
    order = np.argsort(np.where(ok, -scores, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(scores.shape[1]), scores.shape), axis=1)
    count = ok.sum(axis=1, keepdims=True)
    pct = 1.0 - rank / np.maximum(count - 1, 1)
    return np.where(ok, np.where(count > 1, pct, 1.0), 0.0).astype(np.float32)


def _labelled_sessions(keys: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions that can teach the ranker an anonymous visit: at least two events, the last item not seen before in
    the session. Returns the item columns grouped by session (sessions in sorted key order, events in their given
    order) and the ``[start, end)`` bounds of the qualifying sessions in it; vectorised (no loop over sessions)."""
    codes, _ = pd.factorize(keys, sort=True)
    order = np.argsort(codes, kind="stable")
    codes, cols = codes[order], np.asarray(cols)[order]
    if not len(codes):
        empty = np.zeros(0, dtype=np.int64)
        return cols, empty, empty
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    lengths = ends - starts
    group = np.repeat(np.arange(len(starts)), lengths)
    earlier = np.ones(len(codes), dtype=bool)
    earlier[ends - 1] = False  # every event but the session's last
    repeated = np.zeros(len(starts), dtype=bool)
    repeated[group[earlier & (cols == cols[ends - 1][group])]] = True  # its last item appeared before
    keep = (lengths >= 2) & ~repeated
    return cols, starts[keep], ends[keep]


def _row_unique(ids: np.ndarray) -> np.ndarray:
    """Per row: the distinct non-negative ids, left-aligned, padded with -1 to the widest row."""
    if ids.shape[1] == 0:
        return ids
    s = np.sort(ids, axis=1)
    dup = np.zeros_like(s, dtype=bool)
    dup[:, 1:] = s[:, 1:] == s[:, :-1]
    s = np.where(dup | (s < 0), -1, s)
    order = np.argsort(s < 0, axis=1, kind="stable")
    s = np.take_along_axis(s, order, axis=1)
    width = int((s >= 0).sum(axis=1).max()) if len(s) else 0
    return s[:, :width]


def _entry_rows(csr: sparse.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))


def _row_sums(indptr: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Per-row sums of CSR ``data`` as scipy's ``sum(axis=1)`` computes them (``np.add.reduceat``, float32)."""
    out = np.zeros(len(indptr) - 1, dtype=np.float32)
    nonempty = np.diff(indptr) > 0
    if nonempty.any():
        out[nonempty] = np.add.reduceat(np.asarray(data, dtype=np.float32), indptr[:-1][nonempty])
    return out


def _category_sums(hist: sparse.csr_matrix, item_category: np.ndarray, n_cat: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the history's weight in each category (users x categories) and in all (users x 1), float32.

    What ``hist @ category_onehot`` (float32 sums in stored order) and ``hist.sum(axis=1)`` give, bit for bit,
    without scipy's sparse product: for one visitor its set-up cost more than the sums."""
    rows = _entry_rows(hist)
    cats = item_category[hist.indices]
    share = np.zeros((hist.shape[0], n_cat), dtype=np.float32)
    has = cats >= 0
    np.add.at(share, (rows[has], cats[has]), hist.data[has])
    return share, _row_sums(hist.indptr, hist.data)[:, None]


def _price_sums(hist: sparse.csr_matrix, has_price: np.ndarray,
                price_or_zero: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the history's price-weighted sum and its weight over priced items: what ``hp @ price_or_zero``
    and ``hp.sum(axis=1)`` give for ``hp = hist.multiply(has_price)`` (explicit zeros kept), bit for bit."""
    rows = _entry_rows(hist)
    weights = hist.data * has_price[hist.indices]
    num = np.zeros(hist.shape[0], dtype=np.float32)
    np.add.at(num, rows, weights * price_or_zero[hist.indices])
    return num, _row_sums(hist.indptr, weights)


def _row(csr: sparse.csr_matrix, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, values) of row ``i``: views, without scipy's row indexing (a new matrix per call)."""
    start, end = csr.indptr[i], csr.indptr[i + 1]
    return csr.indices[start:end], csr.data[start:end]


def _decay_weights(length: int) -> np.ndarray:
    """Weights of an ordered history of ``length`` items, most recent last: ``HISTORY_DECAY ** distance``."""
    return HISTORY_DECAY ** np.arange(length - 1, -1, -1, dtype=np.float64)


def _history_rows(sequences: Sequence[np.ndarray], n_items: int) -> sparse.csr_matrix:
    """One row per ordered history (item columns, most recent last), weighted ``HISTORY_DECAY ** distance``."""
    rows, cols, vals = [], [], []
    for r, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64)
        if not len(seq):
            continue
        rows.append(np.full(len(seq), r))
        cols.append(seq)
        vals.append(_decay_weights(len(seq)))
    if not rows:
        return sparse.csr_matrix((len(sequences), n_items), dtype=np.float32)
    m = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(len(sequences), n_items))
    m = m.tocsr()  # repeated items add up
    m.sort_indices()
    return sparse.csr_matrix(m, dtype=np.float32)


def _row_ages(csr: sparse.csr_matrix, ages: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The ``ages`` of the stored entries of ``csr[rows]`` (``ages`` aligned with ``csr.data``)."""
    parts = [ages[csr.indptr[r] : csr.indptr[r + 1]] for r in rows]
    return np.concatenate(parts) if parts else np.zeros(0)

