"""Cleaning of raw events before training, with a per-reason count of every dropped row.

Dirty events (replayed batches, crawlers, clock skew, deleted products, scripted visitors) skew popularity and
co-occurrence; the :class:`DataQualityReport` is stored with each model version so a sudden jump in drops is visible.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._util import utc_series, utc_timestamp
from .columns import EVENT, ITEM, TIMESTAMP, USER

#: Default tolerance for client clocks running ahead of the server.
MAX_FUTURE = pd.Timedelta("5min")

#: Drop reasons, in the order the rules are applied (a row is counted once, under the first rule it breaks).
DROP_REASONS = (
    "missing_user",
    "missing_event",
    "missing_timestamp",
    "bot",
    "unknown_item",
    "future_timestamp",
    "duplicate",
    "anomalous_user",
)

#: Defaults of the ``("rate", params)`` anomaly rule.
RATE_DEFAULTS: dict[str, Any] = {
    "max_per_minute": 30,  # more events than this in any one clock minute flags the visitor
    "total_factor": 20.0,  # more than this times the median visitor's total events flags the visitor ...
    "min_events": 100,  # ... provided the visitor has at least this many events
    # Not counted: events a page emits for what it shows (one per item on screen), not actions of the visitor.
    # A shopper who opens two pages of 20 recommended items within a minute is not a bot.
    "passive_events": ("impression",),
    # Counted once per (visitor, event type, timestamp): an order of 60 lines is one checkout, not 60 actions.
    # Without this a shop's best customers (large orders) are flagged and dropped with all their events.
    "batched_events": ("purchase",),
}

#: Defaults of the ``("isolation_forest", params)`` anomaly rule (passed to sklearn's IsolationForest).
ISOLATION_DEFAULTS: dict[str, Any] = {
    "contamination": 0.01,
    "n_estimators": 100,
    "random_state": 0,
    "min_users": 20,  # too few visitors to learn what "normal" looks like: flag nobody
    "view_event": "view",
}


@dataclass
class DataQualityReport:
    """What cleaning did to one batch of events; JSON-serializable through :meth:`to_dict`.

    ``anomalous_users`` lists the flagged subject ids for inspection during the run (not serialized).
    """

    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)
    users_in: int = 0
    users_out: int = 0
    items_in: int = 0
    items_out: int = 0
    anomalous_users: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return plain ints and dicts (stored as JSON with the model version).

        Only the number of anomalous users is kept: their ids are personal data and must not outlive the run.
        """
        data = asdict(self)
        data["dropped"] = {str(k): int(v) for k, v in self.dropped.items()}
        del data["anomalous_users"]
        data["anomalous_user_count"] = len(self.anomalous_users)
        for key in ("rows_in", "rows_out", "users_in", "users_out", "items_in", "items_out"):
            data[key] = int(data[key])
        return data


def clean_events(
    events: pd.DataFrame,
    known_items: Collection[str] | None = None,
    now: pd.Timestamp | None = None,
    max_future: pd.Timedelta = MAX_FUTURE,
    anomaly: tuple[str, Mapping[str, Any]] | None = ("rate", {}),
    *,
    col_user: str = USER,
    col_item: str = ITEM,
    col_event: str = EVENT,
    col_timestamp: str = TIMESTAMP,
    col_is_bot: str = "is_bot",
) -> tuple[pd.DataFrame, DataQualityReport]:
    """Drop rows that must not reach training and count each drop by reason.

    Rules, in order: missing user / event / timestamp; rows flagged ``is_bot``; items not in ``known_items`` (when
    given; rows without an item are kept); timestamps later than ``now + max_future`` (clock skew; ``now`` defaults
    to the wall clock); exact duplicates of (user, item, event, timestamp); and visitors whose activity is anomalous,
    by ``anomaly=("rate", params)`` (see :data:`RATE_DEFAULTS`) or ``("isolation_forest", params)`` (see
    :data:`ISOLATION_DEFAULTS`), or ``None`` to skip that rule. Returns a new frame with a fresh index.
    """
    dropped = dict.fromkeys(DROP_REASONS, 0)
    df = events.copy()
    report = DataQualityReport(
        rows_in=len(df),
        rows_out=0,
        dropped=dropped,
        users_in=int(df[col_user].nunique()) if col_user in df else 0,
        items_in=int(df[col_item].nunique()) if col_item in df else 0,
    )
    df[col_timestamp] = utc_series(df[col_timestamp])

    def drop(mask: pd.Series | np.ndarray, reason: str) -> None:
        nonlocal df
        mask = np.asarray(mask, dtype=bool)
        dropped[reason] += int(mask.sum())
        if mask.any():
            df = df.loc[~mask]

    drop(_missing(df[col_user]), "missing_user")
    drop(_missing(df[col_event]), "missing_event")
    drop(df[col_timestamp].isna(), "missing_timestamp")
    if col_is_bot in df.columns:
        drop(df[col_is_bot].fillna(False).astype(bool), "bot")
    if known_items is not None:
        known = pd.Index(pd.Series(list(known_items), dtype=object).astype(str))
        has_item = ~_missing(df[col_item])
        drop(has_item & ~df[col_item].astype(str).isin(known), "unknown_item")
    limit = (utc_timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")) + max_future
    drop(df[col_timestamp] > limit, "future_timestamp")
    drop(df.duplicated(subset=[col_user, col_item, col_event, col_timestamp], keep="first"), "duplicate")

    if anomaly is not None and len(df):
        kind, params = anomaly
        if kind == "rate":
            flagged = _rate_anomalies(df, {**RATE_DEFAULTS, **params}, col_user, col_event, col_timestamp)
        elif kind == "isolation_forest":
            flagged = _isolation_anomalies(
                df, {**ISOLATION_DEFAULTS, **params}, col_user, col_item, col_event, col_timestamp
            )
        else:
            raise ValueError(f"anomaly must be ('rate', params), ('isolation_forest', params) or None, got {kind!r}")
        report.anomalous_users = sorted(str(u) for u in flagged)
        drop(df[col_user].isin(flagged), "anomalous_user")

    df = df.reset_index(drop=True)
    report.rows_out = len(df)
    report.users_out = int(df[col_user].nunique())
    report.items_out = int(df[col_item].nunique()) if col_item in df else 0
    return df, report


def _missing(values: pd.Series) -> pd.Series:
    """True where a key column is null or the empty string (vectorised: no per-row string work)."""
    return values.isna() | (values == "")


def _rate_anomalies(df: pd.DataFrame, params: Mapping[str, Any], col_user: str, col_event: str,
                    col_timestamp: str) -> set:
    """Visitors with a burst above ``max_per_minute`` or a total far above the median visitor's (``passive_events``
    not counted)."""
    passive = list(params["passive_events"] or ())
    if passive and col_event in df:
        df = df.loc[~df[col_event].isin(passive)]
    batched = list(params.get("batched_events") or ())
    if batched and col_event in df:
        df = df.loc[~(df[col_event].isin(batched) & df.duplicated([col_user, col_event, col_timestamp]))]
    minute = df[col_timestamp].dt.floor("min")
    # observed: visitors left with no counted event (categorical ids) are not groups with a total of 0
    peak = df.groupby([df[col_user], minute], sort=False, observed=True).size().groupby(level=0).max()
    totals = df.groupby(col_user, sort=False, observed=True).size()
    burst = peak.index[peak > params["max_per_minute"]]
    heavy = totals.index[(totals > params["total_factor"] * totals.median()) & (totals >= params["min_events"])]
    return set(burst) | set(heavy)


def activity_features(
    df: pd.DataFrame,
    view_event: str = "view",
    *,
    col_user: str = USER,
    col_item: str = ITEM,
    col_event: str = EVENT,
    col_timestamp: str = TIMESTAMP,
) -> pd.DataFrame:
    """Per-visitor activity: events, distinct items, events per active hour, share of views."""
    grouped = df.groupby(col_user, sort=True)
    span_hours = (grouped[col_timestamp].max() - grouped[col_timestamp].min()).dt.total_seconds() / 3600.0
    events = grouped.size().astype(float)
    return pd.DataFrame(
        {
            "events": events,
            "distinct_items": grouped[col_item].nunique().astype(float),
            "events_per_hour": events / np.maximum(span_hours, 1.0),
            "view_share": (df[col_event] == view_event).groupby(df[col_user]).mean().astype(float),
        }
    )


def _isolation_anomalies(
    df: pd.DataFrame,
    params: Mapping[str, Any],
    col_user: str,
    col_item: str,
    col_event: str,
    col_timestamp: str,
) -> set:
    """Visitors that sklearn's IsolationForest isolates as outliers on their activity features."""
    from sklearn.ensemble import IsolationForest

    feats = activity_features(
        df,
        params["view_event"],
        col_user=col_user,
        col_item=col_item,
        col_event=col_event,
        col_timestamp=col_timestamp,
    )
    if len(feats) < params["min_users"]:
        return set()
    x = np.column_stack(
        [np.log1p(feats["events"]), np.log1p(feats["distinct_items"]), np.log1p(feats["events_per_hour"]),
         feats["view_share"]]
    )
    forest_params = {k: v for k, v in params.items() if k not in ("min_users", "view_event")}
    forest = IsolationForest(**forest_params).fit(x)
    return set(feats.index[forest.predict(x) == -1])
