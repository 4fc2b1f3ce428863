"""Time-respecting train/test splits and sessions.

Recommenders are judged on what users did *after* training, so every split here cuts by time: no test event can
reach the training side. Sessions (visits split by inactivity) feed the next-click protocol of session models.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._util import utc_series, utc_timestamp
from .columns import ITEM, SESSION, TIMESTAMP, USER

#: Default inactivity after which a visitor's next event starts a new session.
SESSION_GAP = pd.Timedelta("30min")


def adaptive_cutoff(
    timestamps: pd.Series, max_days: float, max_share: float = 0.2, min_train: int = 1
) -> pd.Timestamp | None:
    """Start of a test window for :func:`temporal_split` that fits the data: the last ``max_days`` days, shrunk
    until it holds at most ``max_share`` of the events (traffic that came in a burst gets a test window of its last
    events, not of its last seconds), and never empty nor the whole.

    Returns None when no cutoff leaves at least ``min_train`` events before it and one at or after it (too little
    history, or every event at the same instant): the caller then has nothing to validate on.
    """
    ordered = np.sort(utc_series(timestamps).dropna().dt.tz_localize(None).to_numpy())  # naive UTC datetime64
    n = len(ordered)
    if n < 2:
        return None
    cut = ordered[-1] - np.timedelta64(int(max_days * 86_400 * 1e9), "ns")
    limit = max(1, int(np.floor(n * max_share)))
    if n - np.searchsorted(ordered, cut, side="left") > limit:
        cut = ordered[n - limit]  # the first of the last `limit` events; ties with it go to the test window too
    start = int(np.searchsorted(ordered, cut, side="left"))
    if start == 0:  # ties reach back to the first event: start at the next later instant instead
        later = np.searchsorted(ordered, cut, side="right")
        if later >= n:
            return None
        cut, start = ordered[later], int(later)
    if start < min_train:
        return None
    return utc_timestamp(cut)


def temporal_split(
    events: pd.DataFrame,
    cutoff: pd.Timestamp | None = None,
    test_days: float | None = None,
    test_fraction: float | None = None,
    *,
    col_timestamp: str = TIMESTAMP,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into ``train`` (timestamp < cutoff) and ``test`` (timestamp >= cutoff).

    Give exactly one of: an explicit ``cutoff``; ``test_days`` (cutoff = latest event - that many days); or
    ``test_fraction`` (cutoff = the timestamp at that quantile from the end; events sharing the cutoff timestamp
    all go to test, so the test share can be slightly larger).
    """
    given = sum(x is not None for x in (cutoff, test_days, test_fraction))
    if given != 1:
        raise ValueError("give exactly one of cutoff, test_days or test_fraction")
    ts = utc_series(events[col_timestamp])
    if cutoff is not None:
        cut = utc_timestamp(cutoff)
    elif test_days is not None:
        if test_days <= 0:
            raise ValueError(f"test_days must be positive, got {test_days!r}")
        cut = ts.max() - pd.Timedelta(days=test_days)
    else:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
        ordered = np.sort(ts.dropna().to_numpy())
        if not len(ordered):
            return events.iloc[:0].copy(), events.iloc[:0].copy()
        position = min(int(np.floor(len(ordered) * (1.0 - test_fraction))), len(ordered) - 1)
        cut = utc_timestamp(ordered[position])
    is_train = (ts < cut).to_numpy()
    is_test = (ts >= cut).to_numpy()
    return events.loc[is_train].copy(), events.loc[is_test].copy()


@dataclass
class ColdStartReport:
    """How much of a test window concerns users or items the training window never saw."""

    rows_in: int
    rows_out: int
    cold_user_rows: int
    cold_item_rows: int
    cold_users: int
    cold_items: int

    def to_dict(self) -> dict[str, Any]:
        return {k: int(v) for k, v in asdict(self).items()}


def rolling_splits(
    events: pd.DataFrame,
    n_splits: int,
    test_days: float,
    min_train_days: float | None = None,
    *,
    col_timestamp: str = TIMESTAMP,
) -> Iterator[tuple[pd.Timestamp, pd.DataFrame, pd.DataFrame]]:
    """Yield ``(cutoff, train, test)`` for ``n_splits`` expanding-window folds, oldest first.

    Cutoffs are ``latest - k * test_days`` for k = n_splits..1; each test window is ``[cutoff, cutoff + test_days)``
    (the last one runs to the latest event inclusive), and train is everything before the cutoff. Folds whose
    training window spans fewer than ``min_train_days`` are skipped.
    """
    if n_splits < 1:
        raise ValueError(f"n_splits must be at least 1, got {n_splits!r}")
    if test_days <= 0:
        raise ValueError(f"test_days must be positive, got {test_days!r}")
    ts = utc_series(events[col_timestamp])
    if ts.isna().all():
        return
    first, last = ts.min(), ts.max()
    width = pd.Timedelta(days=test_days)
    for k in range(n_splits, 0, -1):
        cutoff = last - k * width
        if min_train_days is not None and cutoff - first < pd.Timedelta(days=min_train_days):
            continue
        is_train = (ts < cutoff).to_numpy()
        is_test = (ts >= cutoff).to_numpy()
        if k > 1:
            is_test = is_test & (ts < cutoff + width).to_numpy()
        yield cutoff, events.loc[is_train].copy(), events.loc[is_test].copy()


def sessionize(
    events: pd.DataFrame,
    gap: pd.Timedelta = SESSION_GAP,
    *,
    col_user: str = USER,
    col_timestamp: str = TIMESTAMP,
    col_session: str = SESSION,
) -> pd.DataFrame:
    """Return a copy with ``col_session``: a new session starts after ``gap`` of inactivity of the same user.

    Session ids are int64, unique across users, numbered in (user, time) order; rows keep their original order.
    """
    out = events.copy()
    if not len(out):
        out[col_session] = pd.Series(dtype=np.int64)
        return out
    ts = utc_series(out[col_timestamp]).to_numpy(dtype="datetime64[ns]")
    user_codes, _ = pd.factorize(out[col_user], sort=True)
    order = np.lexsort((ts, user_codes))
    sorted_users = user_codes[order]
    sorted_ts = ts[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (sorted_users[1:] != sorted_users[:-1]) | ((sorted_ts[1:] - sorted_ts[:-1]) > gap.to_timedelta64())
    session = np.empty(len(order), dtype=np.int64)
    session[order] = np.cumsum(new) - 1
    out[col_session] = session
    return out


def leave_last_out(
    events: pd.DataFrame,
    min_length: int = 2,
    *,
    col_session: str = SESSION,
    col_item: str = ITEM,
    col_timestamp: str = TIMESTAMP,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Next-click protocol: per session, the last item is the target and the earlier ones are the input.

    Returns ``(inputs, targets)``: ``inputs`` holds all but the last event of each session in time order,
    ``targets`` one row per session (its last event). Sessions shorter than ``min_length`` events are dropped.
    Run :func:`sessionize` first when the events carry no session column.
    """
    if min_length < 2:
        raise ValueError(f"min_length must be at least 2 (one input and one target), got {min_length!r}")
    ordered = events.assign(_ts=utc_series(events[col_timestamp]))
    ordered = ordered.sort_values([col_session, "_ts"], kind="stable").drop(columns="_ts")
    sizes = ordered.groupby(col_session, sort=False)[col_item].transform("size").to_numpy()
    ordered = ordered.loc[sizes >= min_length]
    position_from_end = ordered.groupby(col_session, sort=False).cumcount(ascending=False).to_numpy()
    is_last = position_from_end == 0
    return ordered.loc[~is_last].copy(), ordered.loc[is_last].copy()
