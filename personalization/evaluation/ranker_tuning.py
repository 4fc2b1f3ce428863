"""Tuning of the whole system's second stage: the ranker's parameters and the blend, on rolling time folds.

The families are tuned one by one on their own matrices (:func:`~.tuning.tune`); the ranker and the blend only
show their worth through the whole system, so each trial fits the system on every fold of
:func:`~personalization.pipeline.split.rolling_splits` (expanding training windows, each scored on the window that
follows it) and the trial's score is the mean over folds. The blend needs no refit: every blend is scored on each
fitted system. Trials are drawn with scikit-learn's ``ParameterSampler`` (seeded); no trial starts after the time
budget (the first always runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import ParameterSampler

from ..pipeline._util import utc_series
from ..pipeline.columns import TIMESTAMP
from ..pipeline.split import rolling_splits
from .system import evaluate_system, evaluation_users

#: The gradient-boosted ranker's search space (``ranker_params``).
RANKER_SPACE: dict[str, list[Any]] = {
    "learning_rate": [0.05, 0.1, 0.2],
    "max_iter": [100, 300],
    "min_samples_leaf": [20, 50, 200],
    "l2_regularization": [0.0, 1.0, 10.0],
}
#: Blends of the ranker with its anchor (the anchor stays what the configuration choice set, or rank fusion).
BLENDS: tuple[float, ...] = (1.0, 0.75, 0.5)


def tune_ranker(
    make_system: Callable[[dict[str, Any]], Any],
    events: pd.DataFrame,
    items: pd.DataFrame | None,
    params: Mapping[str, Any],
    metric: str,
    test_days: float,
    n_splits: int = 2,  # folds of at most test_days each (shorter when the history is short)
    n_trials: int = 4,
    time_budget_s: float | None = 600.0,
    max_users: int | None = 2000,
    random_state: int | None = None,
    space: Mapping[str, Sequence[Any]] | None = None,
    blends: Sequence[float] = BLENDS,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """``{"folds", "trials": [{"ranker_params", "blend", "score", "fold_scores"}], "best_params": {"ranker_params",
    "blend"}, "best_score"}``, or ``{"skipped": why}``. ``make_system(params)`` builds an unfitted system."""
    stamps = utc_series(events[TIMESTAMP])
    span_days = (stamps.max() - stamps.min()) / pd.Timedelta(days=1) if len(stamps) else 0.0
    width = min(float(test_days), span_days / (n_splits + 1))  # a short history still gets n_splits folds
    folds = [(cut, train, test) for cut, train, test in rolling_splits(events, n_splits, width)
             if len(train) and len(test)] if width > 0 else []
    if not folds:
        return {"skipped": "too little history for rolling folds"}
    seed = int(np.random.default_rng(random_state).integers(2**31 - 1))
    draws = list(ParameterSampler({k: list(v) for k, v in (space or RANKER_SPACE).items()}, n_iter=n_trials,
                                  random_state=seed))
    base = dict(params.get("ranker_params") or {})
    started = time.perf_counter()
    trials: list[dict[str, Any]] = []
    for i, draw in enumerate(draws):
        if trials and time_budget_s is not None and time.perf_counter() - started >= time_budget_s:
            break
        ranker_params = {**base, **{k: _python(v) for k, v in draw.items()}}
        scores: dict[float, list[float]] = {b: [] for b in blends}
        for _, train, test in folds:
            system = make_system({**params, "ranker_params": ranker_params, "blend": 1.0}).fit(train, items)
            users = evaluation_users(system, test, max_users=max_users, random_state=seed)
            if not len(users):
                continue
            for blend in blends:
                system.set_params(blend=blend)
                value = evaluate_system(system, test, users=users, models=False)["system"].get(metric)
                if value is not None:
                    scores[blend].append(float(value))
        for blend, values in scores.items():
            if values:
                trials.append({"ranker_params": ranker_params, "blend": blend, "score": float(np.mean(values)),
                               "fold_scores": values})
        if progress is not None:
            progress("tune ranker", (i + 1) / len(draws))
    if not trials:
        return {"skipped": "no fold had a visitor to score"}
    best = max(trials, key=lambda t: t["score"])
    return {"metric": metric, "folds": [{"cutoff": c.isoformat(), "train_events": int(len(tr)),
                                         "test_events": int(len(te))} for c, tr, te in folds],
            "trials": trials, "best_score": best["score"],
            "best_params": {"ranker_params": best["ranker_params"], "blend": best["blend"]}}


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
