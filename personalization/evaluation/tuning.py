"""Hyperparameter search scored on a validation matrix only (grid, random or Bayesian/TPE).

``param_space`` maps a hyperparameter name to:

- a list: the values to try (every method; categorical for Bayesian);
- a ``(low, high)`` tuple: a uniform range (ints if both bounds are ints), or
  ``(low, high, "log")`` for a log-uniform range (random and Bayesian only);
- a scipy.stats distribution (random only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse, stats
from sklearn.model_selection import ParameterGrid, ParameterSampler

from .protocol import evaluate_recommender

METHODS = ("grid", "random", "bayesian")
TUNING_EXTRA_HINT = ("Bayesian tuning needs optuna, an optional dependency: "
                     "pip install 'django-personalization[tuning]' (or tune with method='random')")


def bayesian_available() -> bool:
    """Whether optuna (the ``[tuning]`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("optuna") is not None


@dataclass
class TuningResult:
    """Best hyperparameters, their validation score, and every trial in order."""

    best_params: dict[str, Any]
    best_score: float
    trials: list[dict[str, Any]] = field(default_factory=list)


def _metric_k(metric: str) -> int:
    name, _, k = metric.partition("@")
    if not name or not k.isdigit():
        raise ValueError(f"metric must look like 'ndcg@10', got {metric!r}")
    return int(k)


def _is_range(value) -> bool:
    return isinstance(value, tuple) and len(value) in (2, 3)


def _range_spec(name, value) -> tuple[float, float, bool]:
    low, high, *rest = value
    log = bool(rest) and rest[0] == "log"
    if rest and not log:
        raise ValueError(f"{name}: the third element of a range must be 'log', got {rest[0]!r}")
    if not low < high:
        raise ValueError(f"{name}: range low must be < high, got {value!r}")
    return low, high, log


def _sampler_space(space: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in space.items():
        if _is_range(value):
            low, high, log = _range_spec(name, value)
            both_int = isinstance(low, int) and isinstance(high, int)
            if log:
                out[name] = stats.loguniform(low, high)
            elif both_int:
                out[name] = stats.randint(low, high + 1)
            else:
                out[name] = stats.uniform(low, high - low)
        else:
            out[name] = value
    return out


def _python(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def tune(
    model_factory: Callable[..., Any],
    param_space: Mapping[str, Any],
    train_csr: sparse.csr_matrix,
    valid_csr: sparse.csr_matrix,
    metric: str = "ndcg@10",
    method: str = "grid",
    n_trials: int | None = 20,
    time_budget_s: float | None = None,
    random_state: int | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    exclude: np.ndarray | None = None,
    max_users: int | None = None,
) -> TuningResult:
    """Search hyperparameters of ``model_factory(**params)`` fitted on ``train_csr``.

    Each trial fits ``model_factory(**params).fit(train_csr, **fit_kwargs)`` and scores it
    with :func:`evaluate_recommender` on ``valid_csr`` (higher ``metric`` is better).
    ``grid`` tries the whole grid (``n_trials`` caps it when set), ``random`` samples
    ``n_trials`` points (sklearn ``ParameterSampler``), ``bayesian`` runs optuna's seeded
    TPE sampler for ``n_trials`` trials. No new trial starts after ``time_budget_s`` (at least one always runs).
    ``max_users`` caps the validation users with one seeded sample, the same for every trial.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not param_space:
        raise ValueError("param_space is empty: give at least one hyperparameter to search")
    k = _metric_k(metric)
    fit_kwargs = dict(fit_kwargs or {})
    seed = int(np.random.default_rng(random_state).integers(2**31 - 1))
    trials: list[dict[str, Any]] = []
    started = time.perf_counter()

    def run(params: dict[str, Any]) -> float:
        params = {key: _python(v) for key, v in params.items()}
        t0 = time.perf_counter()
        model = model_factory(**params).fit(train_csr, **fit_kwargs)
        scores = evaluate_recommender(model, train_csr, valid_csr, k=k, exclude=exclude, max_users=max_users,
                                      random_state=seed)
        if metric not in scores:
            raise ValueError(f"unknown metric {metric!r}; available: {sorted(scores)}")
        value = float(scores[metric])
        trials.append(
            {
                "number": len(trials),
                "params": params,
                "score": value,
                "metrics": scores,
                "seconds": time.perf_counter() - t0,
            }
        )
        return value

    def out_of_time() -> bool:
        return time_budget_s is not None and time.perf_counter() - started >= time_budget_s

    if method == "grid":
        for name, value in param_space.items():
            if not isinstance(value, (list, np.ndarray)):
                raise ValueError(f"grid search needs a list of values for {name!r}, got {value!r}")
        for i, params in enumerate(ParameterGrid({n: list(v) for n, v in param_space.items()})):
            if (n_trials is not None and i >= n_trials) or (trials and out_of_time()):
                break
            run(params)
    elif method == "random":
        if n_trials is None:
            raise ValueError("random search needs n_trials")
        for params in ParameterSampler(_sampler_space(param_space), n_iter=n_trials, random_state=seed):
            if trials and out_of_time():
                break
            run(params)
    else:
        _bayesian(run, param_space, n_trials, time_budget_s, seed)

    scored = [t for t in trials if not np.isnan(t["score"])]
    if not scored:
        raise ValueError("no trial produced a score: check the validation matrix has interactions")
    best = max(scored, key=lambda t: t["score"])
    return TuningResult(best_params=dict(best["params"]), best_score=best["score"], trials=trials)


def _bayesian(run, param_space, n_trials, time_budget_s, seed) -> None:
    try:
        import optuna
    except ImportError as exc:
        raise ImportError(f"{TUNING_EXTRA_HINT} ({exc})") from exc

    def objective(trial):
        params = {}
        for name, value in param_space.items():
            if _is_range(value):
                low, high, log = _range_spec(name, value)
                if isinstance(low, int) and isinstance(high, int):
                    params[name] = trial.suggest_int(name, low, high, log=log)
                else:
                    params[name] = trial.suggest_float(name, float(low), float(high), log=log)
            elif isinstance(value, list):
                params[name] = trial.suggest_categorical(name, value)
            else:
                raise ValueError(f"bayesian search needs a list or a (low, high) range for {name!r}, got {value!r}")
        score = run(params)
        return score if not np.isnan(score) else float("-inf")

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(objective, n_trials=n_trials, timeout=time_budget_s, gc_after_trial=False)
    finally:
        optuna.logging.set_verbosity(previous)
    logging.getLogger(__name__).debug("optuna finished %d trials", len(study.trials))
