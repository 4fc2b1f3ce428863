"""Artifacts of a fitted recommender system: write them to a directory and read them back.

A directory holds ``system.json`` (parameters, family names, feature names, metrics), ``matrix.npz`` (id maps and
training matrix), ``families/<name>.npz``, ``tables.npz`` (feature tables), ``ranker.joblib`` and, when the system
has one, ``session_ranker.joblib``. All are npz (``allow_pickle=False``) or JSON except the rankers, joblib
pickles: artifacts are only ever written by our own
training service and must never be loaded from user input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ..pipeline._util import json_safe
from ..pipeline.interactions import InteractionMatrix
from .base import CandidateGenerator
from .features import Tables

#: Version of the directory layout; :func:`read_system` refuses any other.
FORMAT = 1


def save_system(system: BaseEstimator, directory: str | Path) -> None:
    """Write the fitted ``system`` (a :class:`~personalization.recommenders.system.RecommenderSystem`) to
    ``directory``."""
    directory = Path(directory)
    (directory / "families").mkdir(parents=True, exist_ok=True)
    system.matrix_.save(directory / "matrix.npz")
    for name, model in system.families_.items():
        model.save(directory / "families" / f"{name}.npz")
    np.savez(directory / "tables.npz", **system.tables_.state())
    if system.ranker_ is not None:
        system.ranker_.save(directory / "ranker.joblib")
    session_ranker = getattr(system, "session_ranker_", None)
    if session_ranker is not None:
        session_ranker.save(directory / "session_ranker.joblib")
    params = system.get_params(deep=False)
    if not (params["random_state"] is None or isinstance(params["random_state"], (int, np.integer))):
        params["random_state"] = None
    meta = {
        "format": FORMAT,
        "params": json_safe(params),
        "families": list(system.families_),
        "ranker": system.ranker_ is not None,
        "feature_names": system.feature_names_,
        "ranker_columns": system.ranker_columns_.tolist() if system.ranker_ is not None else [],
        "session_ranker": session_ranker is not None,
        "session_ranker_columns": system.session_ranker_columns_.tolist() if session_ranker is not None else [],
        "cutoff": system.cutoff_.isoformat(),
        "trained_until": system.trained_until_.isoformat(),
        "metrics": system.metrics_,
    }
    (directory / "system.json").write_text(json.dumps(meta, indent=1))


def read_system(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The constructor parameters and the learned attributes (by name) of a system written by :func:`save_system`
    (our own artifacts only: the ranker file is a joblib pickle)."""
    from .rankers import Ranker

    directory = Path(directory)
    meta = json.loads((directory / "system.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{directory} holds a system artifact of format {meta.get('format')}, expected {FORMAT}")
    with np.load(directory / "tables.npz", allow_pickle=False) as npz:
        tables = Tables.from_state({k: npz[k] for k in npz.files})
    learned = {
        "matrix_": InteractionMatrix.load(directory / "matrix.npz"),
        "families_": {name: CandidateGenerator.load(directory / "families" / f"{name}.npz")
                      for name in meta["families"]},
        "tables_": tables,
        "ranker_": Ranker.load(directory / "ranker.joblib") if meta["ranker"] else None,
        "feature_names_": meta["feature_names"],
        "ranker_columns_": np.asarray(meta["ranker_columns"], dtype=np.int64),
        # an artifact written before session rankers has none: every list is ordered by the user ranker
        "session_ranker_": Ranker.load(directory / "session_ranker.joblib") if meta.get("session_ranker") else None,
        "session_ranker_columns_": np.asarray(meta.get("session_ranker_columns", []), dtype=np.int64),
        "cutoff_": pd.Timestamp(meta["cutoff"]),
        "trained_until_": pd.Timestamp(meta["trained_until"]),
        "metrics_": meta["metrics"],
    }
    return meta["params"], learned
