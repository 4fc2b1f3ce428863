"""Offline evaluation of a fitted recommender system, and of each of its families alone, on a later window.

The system and its families are scored by one protocol (:func:`~.protocol.evaluate_recommender`) on one sample of
users, so their figures compare; :func:`evaluation_users` gives that sample, to score another system on it too.
The system is taken by its public surface (``matrix_``, ``families_``, ``tables_``, ``recommend_rows``...), so this
module needs nothing from :mod:`personalization.recommenders`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..pipeline._util import json_safe
from ..pipeline.columns import EVENT, ITEM, USER
from ..pipeline.interactions import build_interactions
from . import protocol


def evaluate_system(
    system: Any,
    test_events: pd.DataFrame,
    k: int | Sequence[int] = (10, 20),
    models: bool | Sequence[str] = True,
    new_items_only: bool = True,
    users: Sequence[str] | None = None,
    max_users: int | None = None,
    random_state: int | np.random.Generator | None = None,
) -> dict[str, Any]:
    """Ranking metrics of the fitted ``system`` (a :class:`~personalization.recommenders.system.RecommenderSystem`)
    and of each family alone (``models``: True for all, or their names) on a later window of events.

    Users are the *warm* users (known at fit time) with at least one test event of positive weight; items are
    scored against their test items (only items not already in their training history when ``new_items_only``, as
    every model filters seen items). Cold users and test items unknown at fit time are counted under ``"cold"``:
    ``{"system": {"ndcg@10": ..., "n_users": <evaluated>, "n_users_total": <eligible>}, "als": {...}, ...,
    "cold": {...}}``.

    ``users`` (subject keys) restricts the evaluation to those users, e.g. :func:`evaluation_users` of another
    system, so two systems are compared on the same people. ``max_users`` caps the evaluated users with a seeded
    sample (``random_state``) of the eligible ones; the system and every family are scored on that one sample.
    """
    system.check_fitted()
    truth, cold = _evaluation_truth(system, test_events, new_items_only)
    rows = _user_sample(system, truth, users, max_users, random_state)
    cold["warm_users"] = int((np.diff(truth.indptr) > 0).sum())
    cold["sampled_users"] = int(len(rows))
    train = system.matrix_.csr
    result: dict[str, Any] = {
        "system": protocol.evaluate_recommender(_AsGenerator(system, test_events), train, truth, k=k, users=rows)
    }
    names = list(system.families_) if models is True else list(models or [])
    unavailable = np.flatnonzero(system.tables_.unavailable).astype(np.int64)
    for name in names:
        result[name] = protocol.evaluate_recommender(system.families_[name], train, truth, k=k, users=rows,
                                                     exclude=unavailable)
    result["cold"] = cold
    return json_safe(result)


def evaluation_users(
    system: Any,
    test_events: pd.DataFrame,
    max_users: int | None = None,
    random_state: int | np.random.Generator | None = None,
    new_items_only: bool = True,
) -> np.ndarray:
    """Keys (sorted) of the users :func:`evaluate_system` scores with the same arguments: pass them as its
    ``users`` to score another system on the same sample."""
    system.check_fitted()
    truth, _ = _evaluation_truth(system, test_events, new_items_only)
    return system.matrix_.user_ids[_user_sample(system, truth, None, max_users, random_state)]


def _evaluation_truth(system: Any, test_events: pd.DataFrame,
                      new_items_only: bool) -> tuple[sparse.csr_matrix, dict[str, int]]:
    """Test items (users x items, aligned with ``matrix_``) of the warm users, and counts of the cold part."""
    matrix = system.matrix_
    weights = system.interaction_weights()
    test = test_events.loc[test_events[EVENT].map(lambda t: float(weights.get(t, 0.0)) > 0).to_numpy()]
    test = test.assign(**{USER: test[USER].astype(str), ITEM: test[ITEM].astype(str)})
    warm_user = test[USER].isin(matrix.user_index).to_numpy()
    warm_item = test[ITEM].isin(matrix.item_index).to_numpy()
    cold = {
        "test_rows": int(len(test)),
        "cold_user_rows": int((~warm_user).sum()),
        "cold_users": int(test.loc[~warm_user, USER].nunique()),
        "cold_item_rows": int((~warm_item).sum()),
        "cold_items": int(test.loc[~warm_item, ITEM].nunique()),
    }
    truth = build_interactions(test.loc[warm_user], {t: 1.0 for t in test[EVENT].unique()},
                               user_ids=matrix.user_ids, item_ids=matrix.item_ids).csr
    if new_items_only:
        truth = (truth - truth.multiply(matrix.csr > 0)).tocsr()
        truth.eliminate_zeros()
    return truth, cold


def _user_sample(system: Any, truth: sparse.csr_matrix, users: Sequence[str] | None, max_users: int | None,
                 random_state: int | np.random.Generator | None) -> np.ndarray:
    """Rows of the users to evaluate: those with test items (among ``users``), at most ``max_users`` of them
    drawn by key, so the sample does not depend on the row order of this system's matrix."""
    matrix = system.matrix_
    eligible = np.flatnonzero(np.diff(truth.indptr) > 0)
    keys = matrix.user_ids[eligible]
    if users is not None:
        keys = keys[np.isin(keys, np.asarray(list(users), dtype=str))]
    return np.sort(matrix.rows_for(protocol.sample_users(keys, max_users, random_state)))


def evaluation_contexts(system: Any, test_events: pd.DataFrame | None) -> Any:
    """Per training row, the context of the user's first test event, when ``system``'s ranker reads the request's
    context (``recommend_rows(contexts=...)``); else None (nothing to pass)."""
    uses_context = getattr(system, "uses_context", None)
    if test_events is None or not callable(uses_context) or not uses_context():
        return None
    return system.user_contexts(test_events)


class _AsGenerator:
    """The system seen through the candidate-generator ``recommend`` contract (for the evaluation protocol).

    A system whose ranker reads the request's context serves each user in the context of their first test event
    (its time, device and country), as its ranker was trained on the first label-part event."""

    def __init__(self, system: Any, test_events: pd.DataFrame | None = None):
        self.system = system
        self.contexts = evaluation_contexts(system, test_events)

    def recommend(self, user_rows, user_items, n=10, filter_seen=True, exclude=None):
        # the truth holds new items only: a repeat (a viewed item coming back) would count as a miss
        extra = {"contexts": self.contexts[np.asarray(user_rows)]} if self.contexts is not None else {}
        return self.system.recommend_rows(user_rows, user_items, n, filter_seen, exclude, repeat=False, **extra)
