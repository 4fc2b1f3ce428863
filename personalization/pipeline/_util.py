"""Small helpers shared by the pure core: pipeline, recommenders, evaluation (private: not part of the public API)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .columns import ITEM


def utc_series(values: pd.Series) -> pd.Series:
    """Return ``values`` as tz-aware UTC datetimes (naive input is taken to be UTC already)."""
    ts = pd.to_datetime(values, errors="coerce")
    if ts.dt.tz is None:
        return ts.dt.tz_localize("UTC")
    return ts.dt.tz_convert("UTC")


def utc_timestamp(value: object) -> pd.Timestamp:
    """Return ``value`` as a tz-aware UTC Timestamp (naive input is taken to be UTC)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def indexed_by_item(item_features: pd.DataFrame, col_item: str = ITEM) -> pd.DataFrame:
    """Return the item-features frame indexed by item key, whether it came keyed by a column or by its index."""
    if col_item in item_features.columns:
        frame = item_features.set_index(col_item)
    else:
        frame = item_features
    frame = frame[~frame.index.duplicated(keep="last")]
    frame.index = frame.index.astype(str)
    frame.index.name = col_item
    return frame


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers, tuples as lists, keys as strings and non-finite floats as
    None, so it can be stored as JSON (artifacts, metrics in a database JSON field)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
