"""Popularity: global, per segment (context-aware cold start), per category, and trending; fitted from events."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from ..pipeline.columns import COUNTRY, DEVICE, ITEM, TIMESTAMP, USER
from ..pipeline.interactions import InteractionMatrix
from .base import CandidateGenerator, as_csr, entry_rows, ranking_of, top_n


class PopularityRecommender(CandidateGenerator):
    """Recommend the most popular items (sum of confidence weights per item column).

    Parameters
    ----------
    decay_half_life_days : float or None
        When set, every interaction's weight is multiplied by ``0.5 ** (age / half_life)``;
        ``fit`` then needs ``ages_days`` (one age per stored entry of ``user_items``).

    Learned attributes: ``popularity_`` (float32, n_items), ``n_items_``, optionally
    ``segments_`` / ``segment_popularity_`` (after :meth:`fit_segments`) and
    ``trend_scores_`` (when recent/older counts are given).
    """

    family = "popularity"

    def __init__(self, decay_half_life_days: float | None = None):
        self.decay_half_life_days = decay_half_life_days

    # -- fitting ------------------------------------------------------------------------------
    def _weighted(self, user_items, ages_days) -> sparse.csr_matrix:
        user_items = as_csr(user_items)
        if self.decay_half_life_days is None:
            return user_items
        if self.decay_half_life_days <= 0:
            raise ValueError(f"decay_half_life_days must be > 0, got {self.decay_half_life_days}")
        if ages_days is None:
            raise ValueError(
                "decay_half_life_days is set, so fit() needs ages_days: the age in days of each "
                "stored entry of user_items (aligned with user_items.data)"
            )
        ages = np.asarray(ages_days, dtype=np.float64)
        if ages.shape != user_items.data.shape:
            raise ValueError(
                f"ages_days must have one value per stored entry of user_items ({user_items.nnz}), "
                f"got shape {ages.shape}"
            )
        weighted = user_items.copy()
        weighted.data = (weighted.data * 0.5 ** (np.clip(ages, 0, None) / self.decay_half_life_days)).astype(np.float32)
        return weighted

    def fit(
        self,
        user_items: sparse.csr_matrix,
        ages_days: np.ndarray | None = None,
        recent_counts: np.ndarray | None = None,
        older_counts: np.ndarray | None = None,
    ) -> PopularityRecommender:
        """Learn item popularity from the column sums of ``user_items``.

        ``ages_days`` (aligned with ``user_items.data``) is needed with ``decay_half_life_days``.
        ``recent_counts`` / ``older_counts`` (per item, two windows of equal length) give
        ``trend_scores_ = (recent - older) / sqrt(older + 1)`` used by :meth:`recommend_trending`.
        """
        weighted = self._weighted(user_items, ages_days)
        self.n_items_ = weighted.shape[1]
        self.popularity_ = np.asarray(weighted.sum(axis=0), dtype=np.float32).ravel()
        if (recent_counts is None) != (older_counts is None):
            raise ValueError("give both recent_counts and older_counts to compute trend scores, or neither")
        if recent_counts is not None:
            recent = np.asarray(recent_counts, dtype=np.float64).ravel()
            older = np.asarray(older_counts, dtype=np.float64).ravel()
            if recent.shape != (self.n_items_,) or older.shape != (self.n_items_,):
                raise ValueError(f"recent_counts and older_counts need one value per item ({self.n_items_})")
            self.trend_scores_ = ((recent - older) / np.sqrt(older + 1.0)).astype(np.float32)
        return self

    def fit_segments(
        self, user_items: sparse.csr_matrix, user_segments: np.ndarray, ages_days: np.ndarray | None = None
    ) -> PopularityRecommender:
        """Popularity per user segment (e.g. ``"country=FR"``, ``"device=mobile"``, ``"hour=20"``).

        ``user_segments`` holds one label per row of ``user_items``. Also fits the global
        popularity when the model is not fitted yet.
        """
        weighted = self._weighted(user_items, ages_days)
        segments = np.asarray(user_segments).astype(str).ravel()
        if segments.shape[0] != weighted.shape[0]:
            raise ValueError(
                f"user_segments needs one label per row of user_items ({weighted.shape[0]}), got {segments.shape[0]}"
            )
        if not hasattr(self, "popularity_"):
            self.n_items_ = weighted.shape[1]
            self.popularity_ = np.asarray(weighted.sum(axis=0), dtype=np.float32).ravel()
        labels, codes = np.unique(segments, return_inverse=True)
        indicator = sparse.csr_matrix(
            (np.ones(len(codes), dtype=np.float32), (codes, np.arange(len(codes)))),
            shape=(len(labels), len(codes)),
        )
        self.segments_ = labels
        self.segment_popularity_ = np.asarray((indicator @ weighted).toarray(), dtype=np.float32)
        return self

    # -- candidate generator contract ---------------------------------------------------------
    def _score_all(self, user_rows, user_items):
        return np.tile(self.popularity_, (len(user_rows), 1))

    def _ranking(self):
        cached = self.__dict__.get("_ranking_cache")
        if cached is None or cached[0] is not self.popularity_:  # fitted or loaded since
            cached = (self.popularity_, *ranking_of(self.popularity_))
            self.__dict__["_ranking_cache"] = cached
        return cached[1:]

    def _similar_all(self, item_cols):
        # popularity has no notion of similarity: the popular items, whatever the item
        return np.tile(self.popularity_, (len(item_cols), 1))

    def _get_state(self):
        state = {"popularity": self.popularity_}
        if hasattr(self, "segments_"):
            state["segments"] = self.segments_.astype(str)
            state["segment_popularity"] = self.segment_popularity_
        if hasattr(self, "trend_scores_"):
            state["trend_scores"] = self.trend_scores_
        return state

    def _set_state(self, state):
        self.popularity_ = state["popularity"]
        self.n_items_ = len(self.popularity_)
        if "segments" in state:
            self.segments_ = state["segments"]
            self.segment_popularity_ = state["segment_popularity"]
        if "trend_scores" in state:
            self.trend_scores_ = state["trend_scores"]

    # -- extra entry points -------------------------------------------------------------------
    def _single(self, scores: np.ndarray, n: int, exclude) -> tuple[np.ndarray, np.ndarray]:
        ids, out = top_n(np.array(scores, dtype=np.float32)[None, :], n, exclude=exclude)
        return ids[0], out[0]

    def recommend_popular(self, n: int = 10, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Globally most popular items (1-D ids and scores)."""
        self._check_fitted()
        return self._single(self.popularity_, n, exclude)

    def recommend_for_segment(
        self, segment: str, n: int = 10, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Most popular items in ``segment``; an unknown segment falls back to global popularity."""
        self._check_fitted()
        if hasattr(self, "segments_"):
            pos = np.searchsorted(self.segments_, str(segment))
            if pos < len(self.segments_) and self.segments_[pos] == str(segment):
                return self._single(self.segment_popularity_[pos], n, exclude)
        return self._single(self.popularity_, n, exclude)

    def recommend_trending(self, n: int = 10, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Items growing fastest (needs ``recent_counts``/``older_counts`` at fit time)."""
        self._check_fitted()
        if not hasattr(self, "trend_scores_"):
            raise RuntimeError("no trend scores: pass recent_counts and older_counts to fit()")
        return self._single(self.trend_scores_, n, exclude)


def fit_from_events(model: PopularityRecommender, events: pd.DataFrame, matrix: InteractionMatrix,
                    now: pd.Timestamp) -> PopularityRecommender:
    """Fit ``model`` on ``matrix`` with the inputs it takes from the ``events`` behind it: trend counts (last 7 days
    vs the 7 before ``now``), entry ages (when it decays) and segment popularity by each user's main country and
    device (for visitors with nothing but a context)."""
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
        entry_keys = entry_rows(csr).astype(np.int64) * n + csr.indices
        ages = youngest.reindex(entry_keys).fillna(0.0).to_numpy()
    model.fit(matrix.csr, ages_days=ages, recent_counts=recent, older_counts=older)
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
    return model


def _row_ages(csr: sparse.csr_matrix, ages: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The ``ages`` of the stored entries of ``csr[rows]`` (``ages`` aligned with ``csr.data``)."""
    parts = [ages[csr.indptr[r] : csr.indptr[r + 1]] for r in rows]
    return np.concatenate(parts) if parts else np.zeros(0)
