"""The trained recommender *system*: candidate generators + a learned re-ranker, behind item keys.

:class:`RecommenderSystem` is the one object the app trains, stores, serves and promotes. It is a two-stage
recommender:

1. **Candidates.** Every configured family (``FAMILIES``: popularity, item-kNN, content, ALS, BPR, item2vec, EASE)
   proposes its top ``candidates_per_model`` items for a user; the union (minus seen / excluded / unavailable items)
   is the candidate set.
2. **Ranking.** Each (user, candidate) pair gets the features of :mod:`.features` (every family's score, rank and
   list position for the pair, the user's RFM, the item's popularity and price, the user's category affinity...); a
   ranker (:mod:`.rankers`) predicts P(user interacts with the item) and orders the list.

Training without leakage (:meth:`RecommenderSystem.fit`): the training events are split in time; the candidate
generators and the feature tables are fitted on the earlier *fit part* only, the ranker learns which candidates the
users then interacted with in the later *label part* (:mod:`.ranker_data`). Finally the generators and tables are
refitted on all training events for serving.

Serving (:meth:`RecommenderSystem.recommend`) maps item keys and subject ids to matrix rows and columns through
``matrix_`` (the :class:`~personalization.pipeline.interactions.InteractionMatrix`): known users are scored from
their training rows; unknown users with a history (item keys, most recent last) from that history alone
(user row ``-1`` in the candidate-generator contract); users with nothing get popular items of their context
segment (``country``/``device``). Every item comes with the true source of its candidacy, e.g.
``"itemknn:because product:12"``, ``"als"`` or ``"popularity:country=FR"``.

Elsewhere: artifacts in :mod:`.artifacts`, default families and event weights in :mod:`.defaults`, thread limits in
:mod:`.threads`, evaluation in :mod:`personalization.evaluation.system`. Pure numpy/scipy/pandas/scikit-learn: no
Django.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator

from ..pipeline._util import indexed_by_item, json_safe, utc_series
from ..pipeline.columns import COUNTRY, DEVICE, EVENT, ITEM, SHOWN_AT, TIMESTAMP, USER
from ..pipeline.interactions import InteractionMatrix, build_interactions
from .artifacts import read_system, save_system
from .base import CandidateGenerator, draw_seed, score_chunks, top_n
from .defaults import (
    CHOSEN_PARAMS,
    DEFAULT_CONSUMED_EVENTS,
    DEFAULT_MODELS,
    DEFAULT_VALUE_WEIGHTED_EVENTS,
    event_weights_or_default,
)
from .features import (
    CONTEXT_COLUMNS,
    FEATURE_GROUPS,
    LAST_ITEM_FAMILIES,
    POSITION_FEATURE,
    CandidatePairs,
    Contexts,
    Tables,
    feature_groups,
    feature_matrix,
    feature_names,
    fit_tables,
)
from .histories import decay_weights
from .popularity import fit_from_events
from .ranker_data import Candidates, feedback_rows, ranker_data, session_ranker_data, with_feedback
from .threads import ranker_threads, serving_threads

#: Families that can propose candidates from an anonymous history alone (plus popularity to fill).
HISTORY_FAMILIES = ("itemknn", "transitions", "sknn", "item2vec", "content", "ease", "popularity")
#: Families whose candidates can be explained by one item of the history ("because <item>").
BECAUSE_FAMILIES = ("itemknn", "transitions", "ease", "item2vec", "content")
#: Source of a candidate only the visitor's own history proposed (an item coming back: see ``repeat``).
HISTORY_SOURCE = "history"
#: Share of the ranker's users held out (user-disjoint) for early stopping.
RANKER_VALIDATION_FRACTION = 0.15
#: The gradient-boosted trees bin each column from a random sample of this many rows (sklearn's ``_BinMapper``)...
BINNING_SAMPLE = 200_000
#: ... so a column is used only when that sample should hold this many of its filled rows: one with none of them
#: fails the binning, and so few rows never make a leaf (``min_samples_leaf`` 50) anyway.
MIN_FILLED_ROWS = 20
#: A family's hyperparameter (:data:`~.defaults.CHOSEN_PARAMS`) is chosen on at most this many warm label-part users
#: (evenly spaced rows), and only when at least ``MIN_CHOICE_USERS`` have new items there: fewer keep the default.
MAX_CHOICE_USERS = 2000
MIN_CHOICE_USERS = 50


@dataclass
class _Stage:
    """One fitted set of candidate generators with its id maps and feature tables."""

    matrix: InteractionMatrix
    families: dict[str, CandidateGenerator]
    tables: Tables
    skipped: dict[str, str]  # family -> why it was not fitted
    chosen: dict[str, dict[str, Any]] = dataclass_field(default_factory=dict)  # family -> its choice on the label part


@dataclass
class _Batch:
    """Candidates of a batch of users and everything the ranker and the reasons need."""

    cands: np.ndarray  # int64 (users, width) item columns, -1 = padding
    features: np.ndarray  # float32 (users * width, n_features)
    sources: np.ndarray  # int16 (users, width): index of the family whose own list ranked it best
    base: np.ndarray  # float32 (users, width): fallback order without a ranker (reciprocal-rank fusion)


class RecommenderSystem(BaseEstimator):
    """Two-stage recommender over item keys (see the module docstring).

    Parameters
    ----------
    models : dict of family name -> hyperparameters, or None
        Candidate generators to fit (names of ``personalization.recommenders.FAMILIES``); None means
        :data:`~.defaults.DEFAULT_MODELS`. ``content`` is skipped when no item catalog with text or attributes is given.
        A hyperparameter of :data:`~.defaults.CHOSEN_PARAMS` that a family's entry leaves out (EASE's ``l2``) is
        chosen on the label part (recorded in ``metrics_["chosen_params"]``).
        A ``random_state`` is filled in for families that take one.
    ranker : {"gbdt", "mlp", "stacked", None}
        Second stage. None keeps the candidate order of reciprocal-rank fusion of the families' lists.
    event_weights : dict of event type -> weight, or None
        Interaction weights (``build_interactions``); None means :data:`~.defaults.DEFAULT_EVENT_WEIGHTS`. An event
        with a positive weight in the label part is a positive label for the ranker.
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
    repeat : bool
        Repeat-aware lists: items of the visitor's history that were only looked at (not consumed: see
        ``consumed_events``) stay candidates, next to the families' new items, and the ranker learns from the
        history features (weight, rank in the history) when one should come back. False: nothing of the history is
        ever recommended again.
    without_features : sequence of str or None
        Feature groups (:data:`~.features.FEATURE_GROUPS`) the ranker does not use: an ablation's knob.
    consumed_events : sequence of str or None
        Event types that use an item up (None: :data:`~.defaults.DEFAULT_CONSUMED_EVENTS`, purchases and ratings):
        an item with one is never recommended again to that user.
    value_weighted_events : sequence of str or None
        Event types whose weight is multiplied by the event's value (None:
        :data:`~.defaults.DEFAULT_VALUE_WEIGHTED_EVENTS`, ratings): a 5-star rating weighs five 1-star ones.
    anchor : str or None
        Score the ranker is blended with: a fitted family's name (e.g. ``"ease"``) or None for reciprocal-rank
        fusion of the families' lists (also the order used when there is no ranker, or a family is missing).
    context_features : bool
        Give the ranker the request's context (:data:`~.features.CONTEXT_COLUMNS`: hour of day, weekday or weekend,
        device, country, and the candidate's lift in each): a visitor's list then depends on ``recommend``'s
        ``context`` (its ``timestamp``, ``device``, ``country``). False (the default) builds exactly the columns a
        system always had.
    session_ranker : bool
        Also train a second ranker for visits: an anonymous visitor (no training row) with an ordered history (the
        current session) is ordered by a ranker trained on every next click of the label part's visits (each
        prefix of a visit -> its next click), with the session feature group (:data:`~.features.SESSION_COLUMNS`:
        the visit's shape, the candidate's place in it, sequential rules) on top of the user ranker's. Known users
        keep the user ranker. Skipped (everyone gets the user ranker) when the label part has too few visits
        (:data:`~.ranker_data.MIN_SESSION_EXAMPLES`).
    random_state : int, Generator or None
        Resolved in ``fit``.

    Learned attributes: ``matrix_`` (InteractionMatrix, id <-> index maps of all training events), ``families_``
    (fitted generators by name), ``ranker_`` (or None), ``feature_names_``, ``session_ranker_`` (or None) and
    ``session_ranker_columns_`` (its columns of :meth:`session_feature_names`), ``cutoff_`` (start of the label part),
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
        repeat: bool = True,
        consumed_events: Sequence[str] | None = None,
        without_features: Sequence[str] | None = None,
        value_weighted_events: Sequence[str] | None = None,
        context_features: bool = False,
        session_ranker: bool = True,
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
        self.repeat = repeat
        self.consumed_events = consumed_events
        self.without_features = without_features
        self.value_weighted_events = value_weighted_events
        self.context_features = context_features
        self.session_ranker = session_ranker

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

    def _context(self) -> bool:
        """Whether the feature columns include the context group (a system saved before it: no)."""
        return bool(getattr(self, "context_features", False))

    def _sessions(self) -> bool:
        """Whether a session ranker is wanted (a system saved before it: no)."""
        return bool(getattr(self, "session_ranker", False)) and self.ranker is not None

    def _session_ranker(self):
        """The fitted session ranker, or None (none trained, or a system saved before it)."""
        return getattr(self, "session_ranker_", None)

    def session_feature_names(self) -> list[str]:
        """Names of the session ranker's candidate columns (its input: :attr:`session_ranker_columns_` of them)."""
        return feature_names(list(self.families_), self._context(), session=True)

    def uses_context(self) -> bool:
        """Whether the ranker reads a context column that varied in training: then a visitor's list depends on the
        request's context (:func:`~.features.context_bucket`), and a list cached for one context must not answer
        another."""
        if not self._context():
            return False
        if getattr(self, "ranker_", None) is not None and any(
                self.feature_names_[c] in CONTEXT_COLUMNS for c in self.ranker_columns_):
            return True
        names = self.session_feature_names() if self._session_ranker() is not None else []
        return any(names[c] in CONTEXT_COLUMNS for c in getattr(self, "session_ranker_columns_", ()))

    def user_contexts(self, events: pd.DataFrame) -> Contexts:
        """Per training row (``matrix_``): the context of the user's first event in ``events`` (unknown for users
        without one): where an evaluation on a later window serves each user, as the ranker learned them."""
        self.check_fitted()
        frame = events.assign(**{USER: events[USER].astype(str), TIMESTAMP: utc_series(events[TIMESTAMP])})
        first = frame.sort_values(TIMESTAMP, kind="stable").drop_duplicates(USER)
        rows = self.matrix_.rows_for(first[USER].to_numpy())
        at = np.full(self.matrix_.shape[0], -1, dtype=np.int64)
        at[rows[rows >= 0]] = np.flatnonzero(rows >= 0)
        known = Contexts.from_frame(first)
        out = Contexts.unknown(self.matrix_.shape[0])
        for field in ("hour_bucket", "weekend", "device", "country"):
            getattr(out, field)[at >= 0] = getattr(known, field)[at[at >= 0]]
        return out

    def value_weighted(self) -> tuple[str, ...]:
        """Event types weighted by their value: ``value_weighted_events``, or the defaults when it is None."""
        chosen = getattr(self, "value_weighted_events", None)  # a system saved before the parameter: the default
        return tuple(DEFAULT_VALUE_WEIGHTED_EVENTS if chosen is None else chosen)

    def interaction_weights(self) -> dict[str, float]:
        """Interaction weight per event type: ``event_weights``, or the defaults when it is None."""
        return event_weights_or_default(self.event_weights)

    def fit(
        self,
        events: pd.DataFrame,
        items: pd.DataFrame | None = None,
        progress: Callable[[str, float], None] | None = None,
        feedback: pd.DataFrame | None = None,
    ) -> RecommenderSystem:
        """Train both stages on ``events`` (columns of ``pipeline.columns``) and the optional ``items`` catalog.

        ``progress(stage, fraction)`` is called along the way; the last call is ``("done", 1.0)``. ``feedback``
        (:data:`~.ranker_data.FEEDBACK_COLUMNS`: the items of served lists, clicked or skipped) adds the lists
        shown in the label part to the ranker's training rows (:func:`~.ranker_data.feedback_rows`); lists shown
        after the last event are ignored.
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
        weights = self.interaction_weights()
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
        self.session_ranker_ = None
        self.session_ranker_columns_ = np.zeros(0, dtype=np.int64)
        stage1_names = None
        if self.ranker is not None and len(fit_part) and len(label_part):
            stage = self._fit_stage(fit_part, catalog, item_ids, specs, cutoff, rng, report, "stage1", 0.02, 0.4,
                                    label_part=label_part)
            metrics["stage1"] = {"events": int(len(fit_part)), "users": int(stage.matrix.shape[0]),
                                 "label_events": int(len(label_part)), "cutoff": cutoff.isoformat()}
            if stage.chosen:
                metrics["chosen_params"] = stage.chosen
                for family, choice in stage.chosen.items():
                    if "value" in choice:
                        specs[family] = {**specs[family], choice["param"]: choice["value"]}
            report("ranker_data", 0.4)
            consumed = (stage.tables.consumed_rows(np.arange(stage.matrix.shape[0]), stage.matrix.shape[1])
                        if self._repeats(stage) else None)
            X, y, groups, info = ranker_data(stage.matrix, label_part, weights, rng, self._labelled_candidates(stage),
                                             consumed=consumed)
            metrics["stage1"].update(info)
            if feedback is not None and len(feedback):
                X, y, groups = self._with_feedback(stage, (X, y, groups), feedback, label_part, cutoff, last, rng,
                                                   metrics["stage1"])
            stage1_names = feature_names(list(stage.families), self._context())
            report("ranker", 0.5)
            if len(y) and 0 < y.sum() < len(y):
                self.ranker_, metrics["ranker"], self.ranker_columns_ = self._fit_ranker(X, y, groups, rng,
                                                                                         list(stage.families))
            else:
                metrics["ranker"] = {"skipped": "no positive (or no negative) candidate in the label part"}
            if self._sessions():
                report("session_ranker", 0.55)
                # its own random stream: the families refitted below draw the same seeds with or without it
                session_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
                self.session_ranker_, self.session_ranker_columns_, metrics["session_ranker"] = (
                    self._fit_session_ranker(stage, label_part, session_rng))
        # (b) refit on everything for serving
        stage = self._fit_stage(events, catalog, item_ids, specs, last, rng, report, "stage2", 0.6, 0.98)
        self.matrix_ = stage.matrix
        self.families_ = stage.families
        self.tables_ = stage.tables
        self.feature_names_ = feature_names(list(stage.families), self._context())
        if stage1_names is not None and stage1_names != self.feature_names_:
            # a family failed in one stage only: the ranker's features no longer line up
            self.ranker_ = None
            self.session_ranker_ = None
            metrics["ranker"] = {"skipped": "families differ between the two stages"}
        self.cutoff_ = cutoff
        self.trained_until_ = last
        metrics["stage2"] = {"events": int(len(events)), "users": int(self.matrix_.shape[0]),
                             "items": int(self.matrix_.shape[1]), "families": list(self.families_),
                             "skipped_families": stage.skipped}
        report("done", 1.0)
        metrics["seconds"] = round(time.perf_counter() - started, 2)
        metrics["stage_seconds"] = timings
        self.metrics_ = json_safe(metrics)
        return self

    def _fit_stage(self, events, catalog, item_ids, specs, now, rng, report, name, start, end,
                   label_part: pd.DataFrame | None = None) -> _Stage:
        """Fit the families and feature tables on ``events``; with a ``label_part``, the hyperparameters of
        :data:`~.defaults.CHOSEN_PARAMS` that ``specs`` leave out are chosen on it (:meth:`_choose`)."""
        from . import FAMILIES
        from .content import content_inputs  # here, like FAMILIES: gensim and the text vectoriser load on use
        from .item2vec import item_sessions

        weights = self.interaction_weights()
        matrix = build_interactions(events, weights, self.half_life_days, now=now, scaling=self.scaling,
                                    item_ids=item_ids, value_weighted=self.value_weighted())
        csr = matrix.csr
        families: dict[str, CandidateGenerator] = {}
        skipped: dict[str, str] = {}
        sessions = None
        chosen: dict[str, dict[str, Any]] = {}
        step = (end - start) / (len(specs) + 1)
        for i, (family, params) in enumerate(specs.items()):
            report(f"{name}:{family}", start + i * step)
            cls = FAMILIES[family]
            params = dict(params)
            if "random_state" in cls().get_params() and params.get("random_state") is None:
                params["random_state"] = draw_seed(rng)
            model = cls(**params)
            if family == "ease" and matrix.shape[1] > model.max_items:
                skipped[family] = (f"{matrix.shape[1]} items > max_items {model.max_items}: its dense item x item "
                                   f"matrix would take {4 * matrix.shape[1] ** 2 / 2 ** 30:.1f} GiB in every process")
                continue
            if family == "content":
                content = content_inputs(catalog, matrix)
                if content is None:
                    skipped[family] = "no item catalog with text or attributes"
                    continue
                model.fit(csr, **content)
            elif family in ("item2vec", "transitions", "sknn"):
                if sessions is None:
                    sessions = item_sessions(events, matrix)
                model.fit(csr, sessions=sessions)
            elif family == "popularity":
                fit_from_events(model, events, matrix, now)
            elif label_part is not None and family in CHOSEN_PARAMS and CHOSEN_PARAMS[family][0] not in params:
                model, chosen[family] = self._choose(model, family, matrix, label_part)
            else:
                model.fit(csr)
            families[family] = model
        report(f"{name}:features", start + len(specs) * step)
        if self._sessions() and sessions is None:
            sessions = item_sessions(events, matrix)
        tables = fit_tables(events, catalog, matrix, now, weights, self._consumed_events(), context=self._context(),
                            sessions=sessions if self._sessions() else None)
        return _Stage(matrix, families, tables, skipped, chosen)

    def _choose(self, model: CandidateGenerator, family: str, matrix: InteractionMatrix,
                label_part: pd.DataFrame) -> tuple[CandidateGenerator, dict[str, Any]]:
        """``model`` fitted with each value of its :data:`~.defaults.CHOSEN_PARAMS` entry on ``matrix`` (the fit
        part), scored alone by NDCG@10 on the new items of the warm users of ``label_part``; the best fitted model
        and the record ``{"param", "value", "scores", "users"}`` (without ``value``, and fitted with the class
        default, when too few users have new items there). Ties go to the smaller value."""
        from ..evaluation.metrics import ndcg_at_k

        param, values = CHOSEN_PARAMS[family]
        rows, relevant = _label_targets(matrix, label_part, self.interaction_weights(), MAX_CHOICE_USERS)
        record: dict[str, Any] = {"param": param, "users": int(len(rows))}
        if len(rows) < MIN_CHOICE_USERS:
            record["skipped"] = f"{len(rows)} warm users with new items in the label part (< {MIN_CHOICE_USERS})"
            return model.fit(matrix.csr), record
        history = matrix.csr[rows]
        fitted = model.fit_each(matrix.csr, values) if hasattr(model, "fit_each") else (
            model.__class__(**{**model.get_params(), param: v}).fit(matrix.csr) for v in values)
        best, best_score, scores = None, -np.inf, {}
        for value, candidate in zip(values, fitted, strict=True):
            ids, _ = candidate.recommend(rows, history, 10, filter_seen=True)
            scores[str(value)] = score = ndcg_at_k(ids, relevant, 10)
            if score > best_score:
                best, best_score, record["value"] = candidate, score, value
        record["scores"] = scores
        return best, record

    def _consumed_events(self) -> tuple[str, ...]:
        return tuple(DEFAULT_CONSUMED_EVENTS if self.consumed_events is None else self.consumed_events)

    def _repeats(self, stage: _Stage) -> bool:
        """Whether history items may come back (a system saved before repeat-aware lists never repeats)."""
        return bool(getattr(self, "repeat", False)) and stage.tables.consumed_indptr is not None

    def _labelled_candidates(self, stage: _Stage) -> Candidates:
        """:func:`~.ranker_data.ranker_data`'s ``candidates``: this stage's candidates and features, seen filtered."""

        def candidates(user_rows: np.ndarray, hist: sparse.csr_matrix,
                       contexts: Contexts) -> tuple[np.ndarray, np.ndarray]:
            batch = self._candidates(stage, user_rows, hist, filter_seen=True, exclude=None, contexts=contexts)
            return batch.cands, batch.features

        return candidates

    def _with_feedback(self, stage: _Stage, organic, feedback: pd.DataFrame, label_part: pd.DataFrame,
                       cutoff: pd.Timestamp, last: pd.Timestamp, rng: np.random.Generator, info: dict[str, Any]):
        """The organic rows plus the rows of the lists shown in the label part ``[cutoff, last]``."""
        shown_at = utc_series(feedback[SHOWN_AT])
        window = feedback.loc[((shown_at >= cutoff) & (shown_at <= last)).to_numpy()]
        fX, fy, fgroups, positions, fb_info = feedback_rows(stage.matrix, window, label_part,
                                                            self.interaction_weights(), rng,
                                                            self._labelled_candidates(stage))
        info.update(fb_info)
        position = feature_names(list(stage.families), self._context()).index(POSITION_FEATURE)
        return with_feedback(organic, (fX, fy, fgroups, positions), position)

    def _make_ranker(self, seed: int):
        from .rankers import GradientBoostedRanker, MLPRanker, StackedRanker

        params = dict(self.ranker_params or {})
        if self.ranker == "gbdt":
            # half the usual learning rate, twice the trees (early stopping ends at ~120-280): steadier trees over
            # a few thousand label-part users, +1-2% NDCG@10 on Online Retail (README, quality)
            defaults = {"learning_rate": 0.05, "max_iter": 600, "min_samples_leaf": 50, "l2_regularization": 1.0,
                        "n_iter_no_change": 15}
            return GradientBoostedRanker(**{**defaults, **params, "random_state": seed})
        if self.ranker == "mlp":
            return MLPRanker(**{**params, "random_state": seed})
        return StackedRanker(**{"n_splits": 3, **params, "random_state": seed})

    def _fit_session_ranker(self, stage: _Stage, label_part: pd.DataFrame, rng: np.random.Generator):
        """``(ranker or None, its columns, metrics)``: the session ranker on every next click of the label part's
        visits (:func:`~.ranker_data.session_ranker_data`), or None with the reason in the metrics."""
        started = time.perf_counter()
        repeats = self._repeats(stage)

        def candidates(hist: sparse.csr_matrix, contexts: Contexts, sequences: list[np.ndarray]):
            rows = np.full(hist.shape[0], -1, dtype=np.int64)
            batch = self._candidates(stage, rows, hist, filter_seen=True, exclude=None,
                                     proposers=[f for f in stage.families if f in HISTORY_FAMILIES],
                                     contexts=contexts, sequences=sequences, session=True)
            return batch.cands, batch.features

        X, y, groups, info = session_ranker_data(stage.matrix, label_part, self.interaction_weights(), rng,
                                                 candidates, repeats=repeats)
        if "skipped" in info:
            return None, np.zeros(0, dtype=np.int64), info
        if not 0 < y.sum() < len(y):
            return None, np.zeros(0, dtype=np.int64), {**info, "skipped": "no negative candidate in the visits"}
        ranker, fitted, columns = self._fit_ranker(X, y, groups, rng, list(stage.families), session=True)
        return ranker, columns, {**info, **fitted, "seconds": round(time.perf_counter() - started, 2)}

    def _fit_ranker(self, X, y, groups, rng, families, session: bool = False):
        """``(ranker, metrics, columns)``: a ranker on the rows ``X`` (the columns kept: see below), early stopped
        on a user-disjoint share of them; ``session``: the columns include the session group."""
        from sklearn.model_selection import GroupShuffleSplit

        from ..evaluation.metrics import roc_auc

        seed = draw_seed(rng)
        started = time.perf_counter()
        dropped = list(self.without_features or ())
        unknown = sorted(set(dropped) - set(FEATURE_GROUPS))
        if unknown:
            raise ValueError(f"without_features: unknown feature group(s) {unknown}; choose from {FEATURE_GROUPS}")
        ranker = self._make_ranker(seed)
        train = val = None
        if len(np.unique(groups)) >= 10:
            split = GroupShuffleSplit(n_splits=1, test_size=RANKER_VALIDATION_FRACTION, random_state=seed)
            train, val = next(split.split(X, y, groups))
            if not (0 < y[val].sum() < len(val) and 0 < y[train].sum() < len(train)):
                train = val = None
        # constant or all-missing columns (no prices, no categories...) carry nothing and break tree binning; judged
        # on the rows the trees are fitted on, and a column filled on so few of them that the binning's sample
        # (BINNING_SAMPLE rows) may hold none of its values goes too (a few warm users among many session rows)
        fitted_on = X if train is None else X[train]
        finite = np.isfinite(fitted_on)
        lo = np.where(finite, fitted_on, np.inf).min(axis=0)
        hi = np.where(finite, fitted_on, -np.inf).max(axis=0)
        sampled = finite.sum(axis=0) * min(1.0, BINNING_SAMPLE / max(len(fitted_on), 1))
        kept = ~np.isin(feature_groups(families, self._context(), session), dropped) & (sampled >= MIN_FILLED_ROWS)
        columns = np.flatnonzero(np.isfinite(lo) & (hi > lo) & kept).astype(np.int64)
        X = X[:, columns]
        X_val = y_val = None
        fit_X, fit_y, fit_groups = X, y, groups
        if train is not None:
            fit_X, fit_y, fit_groups = X[train], y[train], groups[train]
            X_val, y_val = X[val], y[val]
        with ranker_threads():
            ranker.fit(fit_X, fit_y, groups=fit_groups, X_val=X_val, y_val=y_val)
            val_scores = ranker.predict_proba(X_val) if X_val is not None else None
        info = {"kind": self.ranker, "rows": int(len(fit_y)), "seconds": round(time.perf_counter() - started, 2)}
        if X_val is not None:
            info["validation_auc"] = roc_auc(y_val, val_scores)
            info["validation_rows"] = int(len(y_val))
        if hasattr(ranker, "n_iter_"):
            info["n_iter"] = int(ranker.n_iter_)
        return ranker, info, columns

    # == candidates and features =======================================================================
    def _candidates(
        self,
        stage: _Stage,
        user_rows: np.ndarray,
        hist: sparse.csr_matrix,
        filter_seen: bool,
        exclude: np.ndarray | None,
        proposers: Sequence[str] | None = None,
        repeat: bool | None = None,
        contexts: Contexts | None = None,
        sequences: Sequence[np.ndarray] | None = None,
        session: bool = False,
    ) -> _Batch:
        """Candidates (union of the families' top lists) and ranker features for one chunk of users (``contexts``:
        their request contexts, read only by the context features; ``session``: with the session group's columns,
        read from ``sequences``, the users' ordered histories, else from ``hist``)."""
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
        repeats = filter_seen and self._repeats(stage) and repeat is not False
        seen = (stage.tables.consumed_rows(user_rows, n_items) if repeats else hist) if filter_seen else None
        for i, name in enumerate(names):
            blocked = anonymous if name not in HISTORY_FAMILIES and anonymous.any() else None
            ids, scorers[name] = stage.families[name]._propose(user_rows, hist, k if name in proposers else 0,
                                                              seen, exclude, blocked)
            if name in proposers:
                lists.append(ids.astype(np.int64))
                list_of.append(i)
        again = _history_candidates(hist, seen, exclude, k) if repeats else np.full((n_users, 0), -1, np.int64)
        allc = np.concatenate([*lists, again], axis=1) if lists or again.shape[1] else np.full((n_users, 0), -1,
                                                                                                 dtype=np.int64)
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
        if again.shape[1]:  # a repeat: the visitor's own history is its reason, whoever else proposed it
            again_keys = (rows_idx * n_items + again)[again >= 0]
            source[valid & np.isin(rows_idx * n_items + cands, again_keys)] = len(names)
        n_sources = (~np.isnan(list_pos)).sum(axis=0).astype(np.float32)
        rrf = np.nansum(1.0 / (60.0 + list_pos), axis=0).astype(np.float32)
        # a visit's last click is its last item, whatever an earlier item's repeated clicks add up to
        last_clicks = (np.array([s[-1] if len(s) else -1 for s in sequences], dtype=np.int64)
                       if session and sequences is not None else None)
        features = feature_matrix(CandidatePairs(
            families=names, scorers=[scorers[name] for name in names], list_pos=list_pos, best_pos=best_pos,
            n_sources=n_sources, cands=cands, user_rows=user_rows, hist=hist, tables=stage.tables,
            last_sims=[_last_item_similarity(stage.families[name], hist, safe, valid, last_clicks) for name in names
                       if name in LAST_ITEM_FAMILIES], contexts=contexts, sequences=sequences),
            context=self._context(), session=session)
        return _Batch(cands=cands, features=features, sources=source,
                      base=np.where(valid, rrf, -np.inf).astype(np.float32))

    # == serving ======================================================================================
    def check_fitted(self) -> None:
        """Raise RuntimeError unless the system was fitted or loaded."""
        if not hasattr(self, "families_"):
            raise RuntimeError("RecommenderSystem is not fitted yet: call fit(events, items) or load(directory)")

    def _stage(self) -> _Stage:
        self.check_fitted()
        return _Stage(self.matrix_, self.families_, self.tables_, {})

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
                hist_vals = np.bincount(at, weights=decay_weights(len(seq))).astype(np.float32)  # repeats add up
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

    def _sequence(self, keys: Sequence[str] | None) -> np.ndarray:
        """An ordered history (item keys, most recent last) as the item columns the system knows, in order."""
        cols = self.matrix_.cols_for([str(k) for k in keys]) if keys else np.zeros(0, dtype=np.int64)
        return cols[cols >= 0].astype(np.int64)

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
        repeat: bool | None = None,
        features_out: list[np.ndarray] | None = None,
        contexts: Contexts | None = None,
        sequences: Sequence[Sequence[int] | None] | None = None,
    ):
        """The whole system in the candidate-generator contract (matrix rows and columns), batched.

        Users with an empty history and no training row get nothing here (``-1`` padding). Returns
        ``(ids int32, scores float32)`` like :meth:`CandidateGenerator.recommend`, plus ``(source family index,
        position in its list)`` arrays when ``with_sources``. ``repeat=False`` keeps the whole history out even
        when the system is repeat-aware (what an evaluation of new items needs). ``features_out`` (a list, for
        explanations) receives the ranker's input rows of the returned items: float32 (users, n, columns of
        :meth:`ranker_feature_names`), NaN for padding; nothing is appended without a ranker. ``contexts`` (one per
        user): the request contexts the context features read; None: unknown (NaN columns).

        Users without a training row (``-1``) with a history are visits: the session ranker orders them when the
        system has one (:meth:`session_ranked`), reading ``sequences`` (per user, the ordered history as item
        columns, most recent last; None or a missing entry: the history row's items by weight).
        """
        self.check_fitted()
        user_rows = np.asarray(user_rows, dtype=np.int64).ravel()
        with serving_threads(len(user_rows)):
            return self._recommend_rows(user_rows, user_items, n, filter_seen, exclude, with_sources, repeat,
                                        features_out, contexts, sequences)

    def session_ranked(self, user_rows: np.ndarray, user_items: sparse.csr_matrix) -> np.ndarray:
        """bool per user: whether the session ranker orders their list (a session ranker was trained, and the user
        has no training row but a history: a visit); the others get the user ranker."""
        user_rows = np.asarray(user_rows, dtype=np.int64).ravel()
        if self._session_ranker() is None:
            return np.zeros(len(user_rows), dtype=bool)
        return (user_rows < 0) & (np.diff(sparse.csr_matrix(user_items).indptr) > 0)

    def ranks_as_visit(self, user: str, history: Sequence[str] | None) -> bool:
        """Whether ``recommend([user], histories={user: history})`` is ordered by the session ranker."""
        self.check_fitted()
        rows, hist = self._histories([str(user)], {str(user): list(history or ())})
        return bool(self.session_ranked(rows, hist)[0])

    def explaining_ranker(self, session: bool = False) -> tuple[Any, list[str]]:
        """The ranker behind a list and the names of its input columns (the rows of ``recommend(...,
        with_features=True)``): the session ranker's for a visit it ordered (``session``), else the user ranker's."""
        self.check_fitted()
        if session and self._session_ranker() is not None:
            names = self.session_feature_names()
            return self.session_ranker_, [names[c] for c in self.session_ranker_columns_]
        return self.ranker_, self.ranker_feature_names()

    def _recommend_rows(self, user_rows, user_items, n, filter_seen, exclude, with_sources, repeat=None,
                        features_out: list[np.ndarray] | None = None, contexts: Contexts | None = None,
                        sequences: Sequence[Sequence[int] | None] | None = None,
                        session_features_out: list[np.ndarray] | None = None):
        """``features_out`` (a list, for explanations): receives the user ranker's input rows of the returned items,
        float32 (users, n, ranker columns), NaN for padding and for the visits the session ranker ordered, whose
        rows ``session_features_out`` receives (its columns) when there are any."""
        stage = self._stage()
        user_items = sparse.csr_matrix(user_items, dtype=np.float32)
        n_items = self.matrix_.shape[1]
        ids = np.full((len(user_rows), n), -1, dtype=np.int32)
        scores = np.full((len(user_rows), n), -np.inf, dtype=np.float32)
        sources = np.full((len(user_rows), n), -1, dtype=np.int16)
        excl = self._exclude_cols(()) if exclude is None else np.unique(
            np.concatenate([np.asarray(exclude, dtype=np.int64).ravel(), self._exclude_cols(())]))
        by_session = self.session_ranked(user_rows, user_items)
        explained: dict[bool, np.ndarray] = {}  # session ranked -> the rows of that ranker's lists
        if features_out is not None and self.ranker_ is not None:
            explained[False] = np.full((len(user_rows), n, len(self.ranker_columns_)), np.nan, dtype=np.float32)
        if session_features_out is not None and by_session.any():
            explained[True] = np.full((len(user_rows), n, len(self.session_ranker_columns_)), np.nan,
                                      dtype=np.float32)
        has_any = (user_rows >= 0) | (np.diff(user_items.indptr) > 0)
        for session in (False, True):
            todo = np.flatnonzero(has_any & (by_session == session))
            ranker, columns = ((self.session_ranker_, self.session_ranker_columns_) if session
                               else (self.ranker_, getattr(self, "ranker_columns_", None)))
            for chunk in score_chunks(len(todo), n_items):
                self._rank_chunk(stage, todo[chunk], user_rows, user_items, n, filter_seen, excl, repeat, contexts,
                                 sequences, session, ranker, columns, (ids, scores, sources),
                                 explained.get(session))
        for session, out in ((False, features_out), (True, session_features_out)):
            if out is not None and session in explained:
                out.append(explained[session])
        if with_sources:
            return ids, scores, sources
        return ids, scores

    def _rank_chunk(self, stage, sel, user_rows, user_items, n, filter_seen, excl, repeat, contexts, sequences,
                    session, ranker, columns, out, explained) -> None:
        """Candidates, ranking and top ``n`` of the users ``sel`` into ``out`` (ids, scores, sources) and
        ``explained``; ``session``: they are visits ordered by the session ranker."""
        ids, scores, sources = out
        anonymous = user_rows[sel] < 0
        proposers = None if not anonymous.all() else [f for f in self.families_ if f in HISTORY_FAMILIES]
        seqs = None
        if session:
            seqs = [None if sequences is None or sequences[i] is None else np.asarray(sequences[i], dtype=np.int64)
                    for i in sel]
            if any(q is None for q in seqs):  # derive the missing ones from the history rows
                hist = user_items[sel]
                for j, q in enumerate(seqs):
                    if q is None:
                        lo, hi = hist.indptr[j], hist.indptr[j + 1]
                        seqs[j] = hist.indices[lo:hi][np.argsort(hist.data[lo:hi], kind="stable")].astype(np.int64)
        batch = self._candidates(stage, user_rows[sel], user_items[sel], filter_seen, excl, proposers, repeat,
                                 contexts[sel] if contexts is not None else None, sequences=seqs, session=session)
        width = batch.cands.shape[1]
        if ranker is not None and width:
            with ranker_threads():
                final = ranker.predict_proba(batch.features[:, columns])
            final = final.reshape(len(sel), width).astype(np.float32)
            final = np.where(batch.cands >= 0, final, -np.inf)
            if self.blend < 1.0:
                final = self._blended(final, batch)
        else:
            final = batch.base
        m = min(n, width)
        if m == 0:
            return
        # equal scores (trees give piecewise-constant outputs) go by item column, not by candidate position: a
        # precomputed (batched) list and the same visitor's online list then agree whatever order the families
        # proposed their candidates in
        order = np.lexsort((batch.cands, -final), axis=1)[:, :m]
        top = np.take_along_axis(batch.cands, order, axis=1)
        top_scores = np.take_along_axis(final, order, axis=1)
        ok = (top >= 0) & np.isfinite(top_scores)
        ids[sel, :m] = np.where(ok, top, -1)
        scores[sel, :m] = np.where(ok, top_scores, -np.inf)
        sources[sel, :m] = np.where(ok, np.take_along_axis(batch.sources, order, axis=1), -1)
        if explained is not None:
            rows3 = batch.features[:, columns].reshape(len(sel), width, -1)
            picked = np.take_along_axis(rows3, order[:, :, None], axis=1)
            explained[sel, :m] = np.where(ok[:, :, None], picked, np.nan)

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
        context: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        repeat: bool | None = None,
        with_features: bool = False,
    ) -> Any:
        """``n`` recommendations per user as ``(item key, score, reason)``, best first.

        ``with_features`` (for explanations only: it costs nothing otherwise) returns ``(lists, rows)`` instead, where
        ``rows[i]`` holds the ranker's input row of each item of ``lists[i]`` (float32, columns
        :meth:`ranker_feature_names`, exactly what the ranker scored; for a visit the session ranker ordered
        (:meth:`ranks_as_visit`), its columns: :meth:`explaining_ranker`), or None when no ranker ordered that list
        (popular items for a visitor the system knows nothing about, or a system without a ranker).

        Known users use their training rows (plus any ``histories`` entry); unknown users with a history (item keys,
        most recent last) are scored from it alone; users with neither get the most popular items of their
        ``context`` segment (``country``, else ``device``), else global popularity. ``exclude`` and unavailable
        items are never returned, nor (``filter_seen``) the items the user consumed; the rest of the history may
        come back when the system is repeat-aware (``repeat``), unless this call says ``repeat=False``.

        ``context`` is one mapping for every user or a sequence of one per user; with ``context_features`` the
        ranker reads its ``timestamp`` (the time of the request), ``device`` and ``country`` (missing: unknown).
        """
        self.check_fitted()
        users = [str(u) for u in users]
        with serving_threads(len(users)):
            return self._recommend(users, n, histories, exclude, filter_seen, context, repeat, with_features)

    def _recommend(self, users, n, histories, exclude, filter_seen, context, repeat=None, with_features=False):
        rows, hist = self._histories(users, histories)
        excl = self._exclude_cols(exclude)
        per_user = [context] * len(users) if context is None or isinstance(context, Mapping) else list(context)
        if len(per_user) != len(users):
            raise ValueError(f"context: one mapping, or one per user ({len(users)}), not {len(per_user)}")
        contexts = Contexts.from_mappings(per_user) if self._context() else None
        collected: list[np.ndarray] | None = [] if with_features and self.ranker_ is not None else None
        collected_visits: list[np.ndarray] | None = [] if with_features else None
        sequences = [self._sequence((histories or {}).get(u)) if rows[i] < 0 else None for i, u in enumerate(users)]
        by_session = self.session_ranked(np.asarray(rows, dtype=np.int64).ravel(), hist)
        ids, scores, sources = self._recommend_rows(np.asarray(rows, dtype=np.int64).ravel(), hist, n, filter_seen,
                                                    excl, with_sources=True, repeat=repeat, features_out=collected,
                                                    contexts=contexts, sequences=sequences,
                                                    session_features_out=collected_visits)
        names = [*self.families_, HISTORY_SOURCE]
        keys = self.matrix_.item_ids
        out: list[list[tuple[str, float, str]]] = []
        feature_rows: list[np.ndarray | None] = []
        for i in range(len(users)):
            if rows[i] < 0 and hist[i].nnz == 0:
                out.append(self._popular(n, excl, per_user[i]))
                feature_rows.append(None)
                continue
            ok = ids[i] >= 0
            cols = ids[i][ok]
            reasons = self._reasons(_row(hist, i), cols, [names[s] for s in sources[i][ok]])
            out.append([(str(keys[c]), float(s), r) for c, s, r in zip(cols, scores[i][ok], reasons, strict=True)])
            rows_of = collected_visits if by_session[i] else collected
            feature_rows.append(rows_of[0][i][ok] if rows_of else None)
        return (out, feature_rows) if with_features else out

    def ranker_feature_names(self) -> list[str]:
        """Names of the ranker's input columns, in order (the columns of ``recommend(..., with_features=True)``)."""
        self.check_fitted()
        if self.ranker_ is None:
            return []
        return [self.feature_names_[c] for c in self.ranker_columns_]

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
        self.check_fitted()
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
        self.check_fitted()
        with serving_threads(len(items)):
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
        weight = np.zeros((len(q), n_items), dtype=np.float32)
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
            # a family that has no representation of an item (one added since training) does not vote against it
            weight[use] += _known_items(family, model, self._column_entries())[None, :]
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
        self.check_fitted()
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

    def training_items(self, user: str) -> list[tuple[str, float]]:
        """The items of ``user``'s training row and their weights (empty for a user the system was not trained on):
        what the system holds about one person."""
        self.check_fitted()
        rows, hist = self._histories([str(user)], None)
        if rows[0] < 0:
            return []
        cols, vals = _row(hist, 0)
        keys = self.matrix_.item_ids
        return [(str(keys[c]), float(v)) for c, v in zip(cols, vals, strict=True)]

    def explain(self, user: str, item: str) -> str:
        """A short account of how ``item`` scores for ``user``: each family's score and the history item behind it."""
        self.check_fitted()
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

    # == persistence ==================================================================================
    def save(self, directory: str | Path) -> None:
        """Write the fitted system to ``directory`` (see :mod:`.artifacts`: our own artifacts only, the ranker is a
        joblib pickle)."""
        self.check_fitted()
        save_system(self, directory)

    @classmethod
    def load(cls, directory: str | Path) -> RecommenderSystem:
        """Read a system written by :meth:`save` (our own artifacts only: the ranker file is a joblib pickle)."""
        params, learned = read_system(directory)
        system = cls(**params)
        for name, value in learned.items():
            setattr(system, name, value)
        return system


# -- helpers -----------------------------------------------------------------------------------------
def _known_items(family: str, model: CandidateGenerator, column_entries: np.ndarray) -> np.ndarray:
    """float32 per item column: 1 where ``family`` has a representation of the item (a vector, interactions)."""
    if family == "item2vec" and hasattr(model, "has_vector_"):
        known = np.asarray(model.has_vector_, dtype=bool)
    elif family == "content" and hasattr(model, "_has_vector"):
        known = model._has_vector()
    else:
        known = column_entries > 0
    out = np.zeros(len(column_entries), dtype=np.float32)
    out[: len(known)] = known[: len(column_entries)]
    return out


def _percentiles(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row: 1 for the best of the valid finite scores down to 0 for the worst; 0 for non-finite / invalid."""
    ok = valid & np.isfinite(scores)
    order = np.argsort(np.where(ok, -scores, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(scores.shape[1]), scores.shape), axis=1)
    count = ok.sum(axis=1, keepdims=True)
    pct = 1.0 - rank / np.maximum(count - 1, 1)
    return np.where(ok, np.where(count > 1, pct, 1.0), 0.0).astype(np.float32)


def _history_candidates(hist: sparse.csr_matrix, seen: sparse.csr_matrix | None, exclude: np.ndarray | None,
                        k: int) -> np.ndarray:
    """Per row, up to ``k`` items of the history (strongest weight first) that are neither ``seen`` (consumed) nor
    excluded: the repeat candidates. int64 (rows, k), -1 padded."""
    n_users, n_items = hist.shape
    out = np.full((n_users, k), -1, dtype=np.int64)
    if not hist.nnz or k == 0:
        return out
    rows = np.repeat(np.arange(n_users), np.diff(hist.indptr))
    cols = hist.indices.astype(np.int64)
    keep = hist.data > 0
    if exclude is not None and len(exclude):
        keep &= ~np.isin(cols, exclude)
    if seen is not None and seen.nnz:
        seen_keys = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr)).astype(np.int64) * n_items + seen.indices
        keep &= ~np.isin(rows.astype(np.int64) * n_items + cols, seen_keys)
    rows, cols, data = rows[keep], cols[keep], hist.data[keep]
    order = np.lexsort((-data, rows))
    rows, cols = rows[order], cols[order]
    first = np.searchsorted(rows, np.arange(n_users))
    pos = np.arange(len(rows)) - first[rows]
    take = pos < k
    out[rows[take], pos[take]] = cols[take]
    return out


def _last_item_similarity(family: CandidateGenerator, hist: sparse.csr_matrix, safe: np.ndarray,
                          valid: np.ndarray, last_clicks: np.ndarray | None = None) -> np.ndarray:
    """``family``'s similarity of each candidate (``safe`` columns, masked by ``valid``) to its row's last click
    (``last_clicks``, -1: none) or, without them, its strongest history item; NaN for rows without one and for
    padding. float32 (users, width)."""
    out = np.full(safe.shape, np.nan, dtype=np.float32)
    if not safe.shape[1]:
        return out
    if last_clicks is not None:
        has = np.flatnonzero(last_clicks >= 0)
        last = last_clicks[has]
    else:
        if not hist.nnz:
            return out
        rows = np.repeat(np.arange(hist.shape[0]), np.diff(hist.indptr))
        order = np.lexsort((-hist.data, rows))
        first = np.unique(rows[order], return_index=True)
        has = first[0]
        last = hist.indices[order[first[1]]].astype(np.int64)
    if not len(has):
        return out
    sims = np.asarray(family._similar_all(last), dtype=np.float32)
    vals = np.take_along_axis(sims, safe[has], axis=1)
    out[has] = np.where(valid[has] & np.isfinite(vals), vals, np.nan)
    return out


def _label_targets(matrix: InteractionMatrix, label_part: pd.DataFrame, weights: Mapping[str, float],
                   max_users: int) -> tuple[np.ndarray, sparse.csr_matrix]:
    """The rows of ``matrix`` (up to ``max_users``, evenly spaced) whose users have positive events in
    ``label_part`` on items outside their row, and those items (CSR, one row per returned row)."""
    positive = label_part[EVENT].map(lambda t: float(weights.get(t, 0.0)) > 0).to_numpy(dtype=bool)
    rows = matrix.rows_for(label_part.loc[positive, USER].to_numpy())
    cols = matrix.cols_for(label_part.loc[positive, ITEM].to_numpy())
    ok = (rows >= 0) & (cols >= 0)
    rows, cols = rows[ok], cols[ok]
    if len(rows):
        ok = np.asarray(matrix.csr[rows, cols]).ravel() == 0  # new to the user
        rows, cols = rows[ok], cols[ok]
    users = np.unique(rows)
    if len(users) > max_users:
        users = users[np.linspace(0, len(users) - 1, max_users).round().astype(np.int64)]
    at = np.searchsorted(users, rows)
    keep = (at < len(users)) & (users[np.minimum(at, len(users) - 1)] == rows) if len(users) else rows < -1
    relevant = sparse.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (at[keep], cols[keep])),
                                 shape=(len(users), matrix.shape[1]))
    relevant.data[:] = 1.0
    return users, relevant


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


def _row(csr: sparse.csr_matrix, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, values) of row ``i``: views, without scipy's row indexing (a new matrix per call)."""
    start, end = csr.indptr[i], csr.indptr[i + 1]
    return csr.indices[start:end], csr.data[start:end]
