"""SHAP attributions of the gradient-boosted ranker: why one (visitor, item) row scored as it did.

``shap.TreeExplainer`` computes exact Shapley values of tree ensembles (TreeSHAP, path-dependent: it needs no
background sample) and supports scikit-learn's ``HistGradientBoostingClassifier`` (shap >= 0.45, missing values
included). Values are in the model's margin (log-odds): for each row, ``base + values.sum() == decision_function``.
Other rankers (MLP, stacked) have no tree explainer: :func:`explainer_for` returns None and callers keep the source
reason only. Pure numpy/shap: no Django.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .rankers import GradientBoostedRanker, _clean

_LOCK = threading.Lock()


def explainer_for(ranker: Any) -> Any | None:
    """The ``shap.TreeExplainer`` of a fitted :class:`GradientBoostedRanker` (built once per model, ~5 ms), else
    None. Kept on the ranker (never pickled: see ``GradientBoostedRanker.__getstate__``)."""
    if not isinstance(ranker, GradientBoostedRanker) or not hasattr(ranker, "model_"):
        return None
    cached = ranker.__dict__.get("_shap_cache")
    if cached is not None and cached[0] is ranker.model_:
        return cached[1]
    try:
        import shap  # here: importing shap costs ~1 s, paid only by the first explanation
    except ImportError:  # an optional extra (check W070): explanations keep their source reason
        return None

    with _LOCK:
        explainer = shap.TreeExplainer(ranker.model_)
        ranker._shap_cache = (ranker.model_, explainer)
    return explainer


def shap_values(ranker: Any, X: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(SHAP values (rows x features, log-odds), base value) of the ranker's input rows ``X``; None when the ranker
    has no tree explainer. Non-finite inputs are treated as missing, exactly as the ranker treats them."""
    explainer = explainer_for(ranker)
    if explainer is None:
        return None
    X = _clean(np.atleast_2d(X))
    values = np.asarray(explainer.shap_values(X, check_additivity=False), dtype=np.float64)
    if values.ndim == 3:  # a (rows, features, classes) answer: the positive class
        values = values[:, :, -1]
    base = np.ravel(explainer.expected_value)[-1]
    return values, float(base)


def margin(ranker: GradientBoostedRanker, X: np.ndarray) -> np.ndarray:
    """The ranker's raw score (log-odds) of rows ``X``: what SHAP values add up to."""
    return np.asarray(ranker.model_.decision_function(_clean(np.atleast_2d(X))), dtype=np.float64)


def top_contributions(values: np.ndarray, names: Sequence[str], k: int = 3,
                      min_value: float = 0.0) -> list[list[tuple[str, float]]]:
    """Per row of ``values``: up to ``k`` (feature name, SHAP value) that raised the score most (value above
    ``min_value``), largest first. Features that lowered the score are never a reason to show an item."""
    out = []
    for row in np.atleast_2d(values):
        order = np.argsort(-row, kind="stable")[:k]
        out.append([(str(names[j]), float(row[j])) for j in order if row[j] > min_value])
    return out


def mean_abs_shap(ranker: Any, X: np.ndarray, names: Sequence[str], max_rows: int,
                  random_state: int | None = None) -> dict[str, Any] | None:
    """Mean |SHAP| per feature over at most ``max_rows`` rows of ``X`` (a seeded sample): the ranker's global
    feature importance, in log-odds. ``{"features": {name: value, ...} (largest first), "rows": n,
    "base_value": ...}``; None without a tree explainer or rows."""
    X = np.atleast_2d(np.asarray(X))
    X = X[~np.all(np.isnan(X), axis=1)] if X.size else X
    if not len(X) or explainer_for(ranker) is None:
        return None
    if len(X) > max_rows:
        rng = np.random.default_rng(random_state)
        X = X[np.sort(rng.choice(len(X), max_rows, replace=False))]
    values, base = shap_values(ranker, X)
    mean = np.abs(values).mean(axis=0)
    order = np.argsort(-mean, kind="stable")
    return {"features": {str(names[j]): round(float(mean[j]), 6) for j in order}, "rows": int(len(X)),
            "base_value": round(base, 6)}
