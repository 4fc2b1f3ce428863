"""Feature tables for the ranker, from the training window: user RFM, category affinity, item popularity and trend.

Every ``*_features`` function takes the *training* window and a ``now``: nothing after ``now`` is used, so features
computed for a test window never see that window. ``recommenders/features.py`` turns them into the ranker's columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ._util import indexed_by_item, utc_series, utc_timestamp
from .columns import (
    AVAILABLE,
    BRAND,
    CATEGORY,
    EVENT,
    ITEM,
    PRICE,
    TEXT,
    TIMESTAMP,
    USER,
    VALUE,
)


def _window(events: pd.DataFrame, now: pd.Timestamp | None, col_timestamp: str) -> tuple[pd.DataFrame, pd.Series,
                                                                                           pd.Timestamp]:
    """Events at or before ``now`` (default: the latest event), their UTC timestamps, and ``now``."""
    ts = utc_series(events[col_timestamp])
    ref = utc_timestamp(now) if now is not None else ts.max()
    keep = (ts <= ref).to_numpy()
    return events.loc[keep], ts[keep], ref


def _event_weights(events: pd.DataFrame, weights: Mapping[str, float] | None, col_event: str) -> np.ndarray:
    """Weight per event: ``weights[type]`` (unknown types 0), or 1 for every event when no weights are given."""
    if weights is None:
        return np.ones(len(events))
    return events[col_event].map(lambda t: float(weights.get(t, 0.0))).to_numpy(dtype=np.float64)


def _purchase_value(events: pd.DataFrame, purchase_event: str, col_event: str, col_value: str) -> np.ndarray:
    """Value of purchase events (missing value counts as 0), 0 for every other event."""
    if col_value not in events.columns:
        return np.zeros(len(events))
    value = pd.to_numeric(events[col_value], errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)
    return np.where((events[col_event] == purchase_event).to_numpy(), value, 0.0)


def user_features(
    events: pd.DataFrame,
    now: pd.Timestamp | None = None,
    purchase_event: str = "purchase",
    *,
    col_user: str = USER,
    col_item: str = ITEM,
    col_event: str = EVENT,
    col_timestamp: str = TIMESTAMP,
    col_value: str = VALUE,
) -> pd.DataFrame:
    """RFM per user, indexed by user: ``user_recency_days`` (days since the last event), ``user_frequency``
    (events), ``user_active_days`` (distinct UTC days), ``user_distinct_items``, ``user_monetary`` (sum of
    purchase values)."""
    df, ts, ref = _window(events, now, col_timestamp)
    keys = df[col_user].to_numpy()
    frame = pd.DataFrame(
        {
            "ts": ts.array,
            "day": ts.dt.floor("D").array,
            "item": df[col_item].to_numpy(),
            "money": _purchase_value(df, purchase_event, col_event, col_value),
        },
        index=pd.Index(keys, name=col_user),
    )
    grouped = frame.groupby(level=0, sort=True)
    out = pd.DataFrame(
        {
            "user_recency_days": (ref - grouped["ts"].max()).dt.total_seconds() / 86400.0,
            "user_frequency": grouped.size().astype(float),
            "user_active_days": grouped["day"].nunique().astype(float),
            "user_distinct_items": grouped["item"].nunique().astype(float),
            "user_monetary": grouped["money"].sum(),
        }
    )
    out.index.name = col_user
    return out


def user_category_affinity(
    events: pd.DataFrame,
    item_features: pd.DataFrame,
    weights: Mapping[str, float] | None = None,
    now: pd.Timestamp | None = None,
    purchase_event: str = "purchase",
    *,
    col_user: str = USER,
    col_item: str = ITEM,
    col_event: str = EVENT,
    col_timestamp: str = TIMESTAMP,
    col_value: str = VALUE,
    col_category: str = CATEGORY,
) -> pd.DataFrame:
    """Per (user, category): ``cat_affinity`` (the category's share of the user's weighted interactions) and RFM
    inside the category (``cat_recency_days``, ``cat_frequency``, ``cat_monetary``).

    Returns a long frame with columns user, category and those four. ``weights`` maps event types to weights
    (unknown types 0); without it every event counts 1. Items without a category are left out.
    """
    df, ts, ref = _window(events, now, col_timestamp)
    catalog = indexed_by_item(item_features, col_item)
    category = df[col_item].astype(str).map(catalog[col_category]) if len(df) else pd.Series(dtype=object)
    frame = pd.DataFrame(
        {
            col_user: df[col_user].to_numpy(),
            col_category: category.to_numpy(),
            "w": _event_weights(df, weights, col_event),
            "ts": ts.array,
            "money": _purchase_value(df, purchase_event, col_event, col_value),
        }
    )
    frame = frame.loc[frame[col_category].notna()]
    columns = [col_user, col_category, "cat_affinity", "cat_recency_days", "cat_frequency", "cat_monetary"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    grouped = frame.groupby([col_user, col_category], sort=True)
    out = grouped.agg(w=("w", "sum"), last=("ts", "max"), n=("w", "size"), money=("money", "sum")).reset_index()
    total = out.groupby(col_user)["w"].transform("sum")
    out["cat_affinity"] = np.where(total > 0, out["w"] / total.where(total > 0, 1.0), 0.0)
    out["cat_recency_days"] = (ref - out["last"]).dt.total_seconds() / 86400.0
    out["cat_frequency"] = out["n"].astype(float)
    out["cat_monetary"] = out["money"].astype(float)
    return out[columns]


def item_features_frame(
    events: pd.DataFrame,
    item_features: pd.DataFrame | None = None,
    now: pd.Timestamp | None = None,
    windows: Sequence[int] = (1, 7, 30),
    view_event: str = "view",
    purchase_event: str = "purchase",
    price_bands: int = 5,
    *,
    col_item: str = ITEM,
    col_event: str = EVENT,
    col_timestamp: str = TIMESTAMP,
    col_category: str = CATEGORY,
    col_price: str = PRICE,
    col_brand: str = BRAND,
    col_text: str = TEXT,
    col_available: str = AVAILABLE,
) -> pd.DataFrame:
    """Per item, indexed by item key (catalog items plus any item seen in events):

    ``item_pop_<w>d`` events in the last w days before ``now`` for each window; ``item_trend`` the per-day rate of
    the shortest window over that of the longest (1 = steady, NaN when the long window is empty);
    ``item_conversion`` purchases / views (NaN without views); ``item_price_band`` price quantile band 0..n-1
    across the catalog; ``category``, ``brand`` (strings), ``price``, ``available`` (0/1) and ``item_text_len``.
    """
    df, ts, ref = _window(events, now, col_timestamp)
    catalog = indexed_by_item(item_features, col_item) if item_features is not None else pd.DataFrame()
    item_keys = df[col_item].astype(str).to_numpy()
    index = pd.Index(pd.unique(np.concatenate([catalog.index.to_numpy(dtype=object), item_keys.astype(object)])))
    index = index.sort_values()
    index.name = col_item
    out = pd.DataFrame(index=index)

    age = (ref - ts).to_numpy()
    for days in sorted(windows):
        in_window = age < np.timedelta64(pd.Timedelta(days=days).to_timedelta64())
        counts = pd.Series(item_keys[in_window]).value_counts()
        out[f"item_pop_{days}d"] = counts.reindex(index, fill_value=0).to_numpy(dtype=float)
    if len(windows) >= 2:
        short, long = min(windows), max(windows)
        long_rate = out[f"item_pop_{long}d"] / long
        out["item_trend"] = (out[f"item_pop_{short}d"] / short) / long_rate.where(long_rate > 0)
    is_view = (df[col_event] == view_event).to_numpy()
    is_buy = (df[col_event] == purchase_event).to_numpy()
    views = pd.Series(item_keys[is_view]).value_counts().reindex(index, fill_value=0)
    buys = pd.Series(item_keys[is_buy]).value_counts().reindex(index, fill_value=0)
    out["item_conversion"] = (buys / views.where(views > 0)).to_numpy(dtype=float)

    attrs = catalog.reindex(index)
    price = pd.to_numeric(attrs[col_price], errors="coerce") if col_price in attrs else pd.Series(np.nan, index)
    out["price"] = price.astype(float)
    out["item_price_band"] = _price_band(price, price_bands)
    for col in (col_category, col_brand):
        out[col] = attrs[col].astype(object).where(attrs[col].notna(), None) if col in attrs else None
    if col_available in attrs:
        out[col_available] = attrs[col_available].map(lambda v: np.nan if pd.isna(v) else float(bool(v)))
    else:
        out[col_available] = np.nan
    text = attrs[col_text] if col_text in attrs else pd.Series(None, index=index, dtype=object)
    out["item_text_len"] = text.map(lambda t: float(len(t)) if isinstance(t, str) else 0.0)
    return out


def _price_band(price: pd.Series, bands: int) -> np.ndarray:
    """Quantile band 0..bands-1 of each price (NaN for a missing price); ties collapse bands."""
    known = price.dropna()
    result = np.full(len(price), np.nan)
    if known.nunique() < 2 or bands < 2:
        result[price.notna().to_numpy()] = 0.0
        return result
    codes = pd.qcut(known.rank(method="first"), q=min(bands, len(known)), labels=False)
    result[price.notna().to_numpy()] = codes.to_numpy(dtype=float)
    return result
