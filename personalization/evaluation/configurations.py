"""Training chooses its own configuration: candidate configurations compared on a validation window.

The window is carved from the *training* events (never the test window that promotion uses): the last
``validation_days`` before the training cutoff, at most ``max_share`` of the events. One system is fitted on the
events before it; the configurations that differ only in how that fitted system orders its candidates (the ranker
alone, blended with the strongest family, that family's order, rank fusion without the ranker, a wider candidate
set) are scored on one sample of validation users, and the best by ``metric`` wins. They cost one extra fit and a
few evaluations, not a fit each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from ..pipeline.columns import TIMESTAMP
from ..pipeline.split import adaptive_cutoff, temporal_split
from .system import evaluate_system, evaluation_users

#: Fewer validation users than this choose nothing (the default, the ranker, stays): on tens of users the best of
#: five orderings is mostly noise (MovieLens' 60-odd, a session site's handful of returning visitors).
MIN_USERS = 300
#: Another ordering replaces the ranker only when it beats it by more than this share of the ranker's score.
MIN_GAIN = 0.02
#: At most this many validation users score the configurations: enough to rank five orderings, and each one
#: scored costs a recommendation per user (10,000 users x 5 orderings doubled the retrain time at 10^6 events).
MAX_USERS = 2000
#: The system parameters a configuration choice sets.
CHOSEN_KEYS = ("blend", "anchor", "candidates_per_model")
#: Families never offered as the blend's anchor (they order every visitor the same way).
NOT_ANCHORS = ("popularity",)


def candidate_configurations(params: Mapping[str, Any], strongest: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The configurations compared: (name, overrides of the system's parameters), the default first."""
    width = int(params.get("candidates_per_model") or 50)
    configs: list[tuple[str, dict[str, Any]]] = [("ranker", {"blend": 1.0, "anchor": None})]
    if strongest is not None:
        configs += [(f"ranker blended with {strongest}", {"blend": 0.5, "anchor": strongest}),
                    (f"{strongest} order", {"blend": 0.0, "anchor": strongest})]
    configs += [("rank fusion, no ranker", {"blend": 0.0, "anchor": None}),
                ("ranker, wider candidates", {"blend": 1.0, "anchor": None, "candidates_per_model": 2 * width})]
    return configs


def choose_configuration(
    make_system: Callable[[dict[str, Any]], Any],
    events: pd.DataFrame,
    items: pd.DataFrame | None,
    params: Mapping[str, Any],
    metric: str,
    validation_days: float,
    max_share: float = 0.2,
    min_train: int = 1,
    max_users: int | None = MAX_USERS,
    random_state: int | None = None,
    min_users: int = MIN_USERS,
    min_gain: float = MIN_GAIN,
) -> dict[str, Any]:
    """Compare :func:`candidate_configurations` on a validation window of ``events`` and return the record:
    ``{"metric", "window", "users", "configurations": [{"name", "overrides", metric...}], "chosen", "overrides"}``
    (``overrides`` of the winner, to lay over ``params``), or ``{"skipped": why}`` when there is nothing to
    validate on or fewer than ``min_users`` to validate with. The ranker (the first configuration) stays unless
    another beats it by more than ``min_gain`` (relative). ``make_system(params)`` builds an unfitted system."""
    cutoff = adaptive_cutoff(events[TIMESTAMP], validation_days, max_share, min_train=min_train)
    if cutoff is None:
        return {"skipped": "too little history before the test window to carve a validation window"}
    fit_events, validation = temporal_split(events, cutoff=cutoff)
    system = make_system(dict(params)).fit(fit_events, items)
    users = evaluation_users(system, validation, max_users=max_users, random_state=random_state)
    if len(users) < min_users:
        return {"skipped": f"{len(users)} validation users had a history before the window; at least {min_users} "
                           "are needed to choose reliably: the ranker stays", "users": int(len(users))}
    base = evaluate_system(system, validation, users=users)
    family_scores = {name: (base.get(name) or {}).get(metric) for name in system.families_}
    ranked = sorted(((v, k) for k, v in family_scores.items() if v is not None and k not in NOT_ANCHORS),
                    reverse=True)
    strongest = ranked[0][1] if ranked and system.ranker_ is not None else None
    rows = []
    for name, overrides in candidate_configurations(params, strongest):
        if system.ranker_ is None and overrides.get("blend", 1.0) > 0 and name != "ranker":
            continue  # without a ranker every blend is rank fusion
        system.set_params(**{"blend": 1.0, "anchor": None,
                             "candidates_per_model": params.get("candidates_per_model", 50), **overrides})
        scores = base["system"] if name == "ranker" else evaluate_system(system, validation, users=users,
                                                                           models=False)["system"]
        rows.append({"name": name, "overrides": overrides, **{k: v for k, v in scores.items() if "@" in k}})
    default = rows[0]
    best = max(rows, key=lambda r: (r.get(metric) or 0.0, -rows.index(r)))
    if (best.get(metric) or 0.0) <= (default.get(metric) or 0.0) * (1.0 + min_gain):
        best = default  # a win within the noise does not change what was trained and tested
    return {"metric": metric, "window": {"start": cutoff.isoformat(), "events": int(len(validation))},
            "users": int(len(users)), "families": family_scores, "configurations": rows,
            "min_gain": min_gain, "chosen": best["name"], "overrides": best["overrides"]}
