"""Per-version insight computed at training time: the ranker's mean |SHAP| per feature and the bias report.

Both take the fitted system by its public surface (``matrix_``, ``recommend_rows``, ``ranker_``...), like
:mod:`.system`. :func:`bias_report` scores the test-window visitors' top-k lists once, per segment (device, country,
new vs returning, history length: :func:`~personalization.pipeline.segments.visitor_segments`) and for exposure
(:mod:`.bias`); :func:`shap_summary` explains the ranker's input rows of such lists. Pure: no Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..pipeline._util import json_safe
from ..pipeline.segments import DIMENSIONS, visitor_segments
from ..recommenders.attributions import mean_abs_shap
from . import bias
from .metrics import item_counts
from .system import _evaluation_truth, _user_sample, evaluation_contexts


def _lists(system: Any, rows: np.ndarray, k: int, with_features: bool,
           contexts: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Top-``k`` item columns of the users at ``rows`` (new items only, like the evaluation) and, when asked and a
    ranker ordered them, the ranker's input rows of those items (valid ones only). ``contexts``: per training row,
    the request contexts of a ranker that reads them (:func:`~.system.evaluation_contexts`)."""
    collected: list[np.ndarray] | None = [] if with_features else None
    extra = {"contexts": contexts[rows]} if contexts is not None else {}
    ranked, _ = system.recommend_rows(rows, system.matrix_.csr[rows], k, True, None, repeat=False,
                                      features_out=collected, **extra)
    features = None
    if collected:
        flat = collected[0].reshape(-1, collected[0].shape[-1])
        features = flat[(np.asarray(ranked) >= 0).ravel()]
    return np.asarray(ranked), features


def bias_report(system: Any, train_events: pd.DataFrame, test_events: pd.DataFrame, *, k: int = 10,
                users: Sequence[str] | None = None, max_users: int | None = None, top_countries: int = 10,
                random_state: int | None = None) -> dict[str, Any]:
    """Quality per segment and exposure of ``system``'s top-``k`` lists for the test-window visitors it knows.

    ``{"quality": segment_quality(...), "exposure": exposure(...), "users": n}`` or ``{"unevaluated": why}``.
    ``users`` restricts the sample (e.g. the evaluation's), ``max_users`` caps it (seeded by ``random_state``);
    segments come from the visitors' ``train_events`` (their context columns and history).
    """
    system.check_fitted()
    if not len(test_events):
        return {"unevaluated": "no test window: too little history to hold one out"}
    truth, _ = _evaluation_truth(system, test_events, True)
    rows = _user_sample(system, truth, users, max_users, random_state)
    if not len(rows):
        return {"unevaluated": "no test-window visitor had a history before the window"}
    ranked, _ = _lists(system, rows, k, with_features=False, contexts=evaluation_contexts(system, test_events))
    keys = system.matrix_.user_ids[rows]
    segments = visitor_segments(train_events, keys, system.interaction_weights(), top_countries=top_countries)
    quality = bias.segment_quality(ranked, truth[rows], {d: segments[d].to_numpy() for d in DIMENSIONS}, k)
    exposure = bias.exposure(ranked, truth[rows], item_counts(system.matrix_.csr), k)
    return json_safe({"users": int(len(rows)), "quality": quality, "exposure": exposure})


def shap_summary(system: Any, users: Sequence[str] | None, *, max_rows: int = 2000, k: int = 10,
                 random_state: int | None = None) -> dict[str, Any] | None:
    """Mean |SHAP| per ranker feature over the ranker's input rows of the top-``k`` lists of ``users`` (keys; None:
    the system's training users), at most ``max_rows`` rows (a seeded sample of ``max_rows / k`` users first).
    None without a gradient-boosted ranker or without rows."""
    system.check_fitted()
    if getattr(system, "ranker_", None) is None or max_rows < 1:
        return None
    keys = system.matrix_.user_ids if users is None else np.asarray(list(users), dtype=str)
    rows = system.matrix_.rows_for(keys)
    rows = np.unique(rows[rows >= 0])
    want = max(1, -(-max_rows // k))
    if len(rows) > want:
        rows = np.sort(np.random.default_rng(random_state).choice(rows, want, replace=False))
    if not len(rows):
        return None
    _, features = _lists(system, rows, k, with_features=True)
    if features is None or not len(features):
        return None
    summary = mean_abs_shap(system.ranker_, features, system.ranker_feature_names(), max_rows, random_state)
    return json_safe(summary) if summary is not None else None
