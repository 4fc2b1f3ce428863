"""Visitor segments for bias reports: device class, country, new vs returning, history length.

Pure pandas: each visitor's segment labels from their events (the ``device`` and ``country`` context columns the
extraction carries; missing context is ``"unknown"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .columns import COUNTRY, DEVICE, EVENT, TIMESTAMP, USER

#: Segment dimensions, in report order.
DIMENSIONS = ("device", "country", "visitor", "history")
#: Upper edges (exclusive) of the history-length buckets, in interactions of positive weight before the window.
HISTORY_EDGES = (2, 5, 10, 20, 50)
UNKNOWN = "unknown"
OTHER = "other"


def history_bucket(length: int | float) -> str:
    """``"1"``, ``"2-4"``, ``"5-9"``, ``"10-19"``, ``"20-49"``, ``"50+"`` (``"0"`` for none)."""
    n = int(length)
    if n <= 0:
        return "0"
    low = 1
    for edge in HISTORY_EDGES:
        if n < edge:
            return str(low) if edge - low == 1 else f"{low}-{edge - 1}"
        low = edge
    return f"{low}+"


def _mode(frame: pd.DataFrame, column: str, users: pd.Index) -> pd.Series:
    """Each user's most frequent non-empty value of ``column`` (ties: the alphabetically first), else UNKNOWN."""
    if column not in frame:
        return pd.Series(UNKNOWN, index=users)
    values = frame[[USER, column]].dropna()
    values = values.loc[values[column].astype(str).str.strip() != ""]
    if not len(values):
        return pd.Series(UNKNOWN, index=users)
    counts = values.groupby([USER, column], observed=True).size().rename("n").reset_index()
    counts[column] = counts[column].astype(str)
    counts = counts.sort_values([USER, "n", column], ascending=[True, False, True], kind="stable")
    top = counts.drop_duplicates(USER).set_index(USER)[column]
    return top.reindex(users).fillna(UNKNOWN)


def visitor_segments(events: pd.DataFrame, users: Sequence[str], weights: Mapping[str, float],
                     top_countries: int = 10) -> pd.DataFrame:
    """Segment labels of ``users`` (index) from their ``events`` (the training window).

    Columns: ``device`` (their most used device class), ``country`` (their most frequent country; countries
    outside the ``top_countries`` with most of these users become ``"other"``), ``visitor`` (``"new"``: every
    event on one day, a single visit; ``"returning"``: events on two days or more) and ``history`` (a bucket of
    :func:`history_bucket` of their events with a positive weight in ``weights``).
    """
    index = pd.Index([str(u) for u in users], name=USER)
    frame = events.loc[events[USER].astype(str).isin(index)].copy()
    frame[USER] = frame[USER].astype(str)
    out = pd.DataFrame(index=index)
    out["device"] = _mode(frame, DEVICE, index)
    country = _mode(frame, COUNTRY, index)
    known = country[country != UNKNOWN]
    top = set(known.value_counts().sort_index().sort_values(ascending=False, kind="stable").index[:top_countries])
    out["country"] = country.where(country.isin(top) | (country == UNKNOWN), OTHER)
    if len(frame):
        days = pd.to_datetime(frame[TIMESTAMP], utc=True).dt.floor("D")
        n_days = days.groupby(frame[USER]).nunique().reindex(index).fillna(0)
    else:
        n_days = pd.Series(0, index=index)
    out["visitor"] = np.where(n_days >= 2, "returning", "new")
    positive = frame[EVENT].map(lambda t: float(weights.get(t, 0.0)) > 0).to_numpy(dtype=bool)
    length = frame.loc[positive].groupby(USER).size().reindex(index).fillna(0)
    out["history"] = [history_bucket(n) for n in length]
    return out
