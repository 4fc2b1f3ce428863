"""Features for the rankers: user RFM, category affinity, item popularity and trend, context, encoders.

Every ``*_features`` function takes the *training* window and a ``now``: nothing after ``now`` is used, so features
computed for a test window never see that window. :func:`pair_features` joins them for candidate (user, item) rows;
:func:`build_preprocessor` makes the scikit-learn transformer (fitted on training rows only) that imputes, scales
and encodes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._util import indexed_by_item, utc_series, utc_timestamp
from .columns import (
    AVAILABLE,
    BRAND,
    CATEGORY,
    COUNTRY,
    DEVICE,
    EVENT,
    HOUR,
    ITEM,
    PRICE,
    TEXT,
    TIMESTAMP,
    USER,
    VALUE,
    WEEKDAY,
)

MISSING = "__missing__"  # category value standing for "unknown" in encoded categorical columns


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


def pair_category_features(
    pairs: pd.DataFrame,
    affinity: pd.DataFrame,
    item_categories: pd.Series,
    *,
    col_user: str = USER,
    col_item: str = ITEM,
    col_category: str = CATEGORY,
) -> pd.DataFrame:
    """For each (user, item) row of ``pairs``: the user's affinity to and RFM in the item's category.

    ``affinity`` comes from :func:`user_category_affinity`; ``item_categories`` maps item key -> category. Rows
    of a known user who never touched the category get affinity, frequency and monetary 0 and recency NaN; unknown
    users or items (or items without category) get NaN.
    Returns a frame aligned with ``pairs`` (same index).
    """
    value_cols = ["cat_affinity", "cat_recency_days", "cat_frequency", "cat_monetary"]
    category = pairs[col_item].astype(str).map(item_categories)
    keyed = affinity.set_index([col_user, col_category])[value_cols]
    lookup = pd.MultiIndex.from_arrays([pairs[col_user].to_numpy(), category.to_numpy()])
    out = keyed.reindex(lookup)
    out.index = pairs.index
    out = out.astype(float)
    known = (category.notna() & pairs[col_user].isin(affinity[col_user])).to_numpy()
    for col in ("cat_affinity", "cat_frequency", "cat_monetary"):
        out.loc[known, col] = out.loc[known, col].fillna(0.0)
    return out


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


def context_features(
    df: pd.DataFrame,
    *,
    col_timestamp: str = TIMESTAMP,
    col_hour: str = HOUR,
    col_weekday: str = WEEKDAY,
    col_device: str = DEVICE,
    col_country: str = COUNTRY,
) -> pd.DataFrame:
    """Cyclical encodings of hour (period 24), weekday (7, Monday = 0) and month (12, January = 0) as ``*_sin`` /
    ``*_cos`` pairs, so 23h is near 0h; ``device`` and ``country`` as pandas categoricals.

    Hour and weekday come from their own columns when present, else from the timestamp; month from the timestamp.
    Returns a frame with the same index as ``df``; a missing source gives NaN.
    """
    out = pd.DataFrame(index=df.index)
    ts = utc_series(df[col_timestamp]) if col_timestamp in df.columns else None
    hour = _numeric(df, col_hour)
    if hour is None and ts is not None:
        hour = ts.dt.hour + ts.dt.minute / 60.0
    weekday = _numeric(df, col_weekday)
    if weekday is None and ts is not None:
        weekday = ts.dt.day_of_week.astype(float)
    month = ts.dt.month.astype(float) - 1.0 if ts is not None else None
    for name, values, period in (("hour", hour, 24.0), ("weekday", weekday, 7.0), ("month", month, 12.0)):
        radians = (
            2.0 * np.pi * values.to_numpy(dtype=float) / period if values is not None else np.full(len(df), np.nan)
        )
        out[f"{name}_sin"] = np.sin(radians)
        out[f"{name}_cos"] = np.cos(radians)
    for col in (col_device, col_country):
        values = df[col] if col in df.columns else pd.Series(None, index=df.index, dtype=object)
        out[col] = values.astype(object).where(values.notna(), None).astype("category")
    return out


def _numeric(df: pd.DataFrame, col: str) -> pd.Series | None:
    return pd.to_numeric(df[col], errors="coerce").astype(float) if col in df.columns else None


def _as_strings(x: Any) -> Any:
    """Categorical columns as object strings, missing values as :data:`MISSING` (picklable, for the encoders)."""
    frame = pd.DataFrame(x).astype(object)
    return frame.where(frame.notna(), MISSING).astype(str)


def build_preprocessor(
    numeric: Sequence[str],
    low_card_categorical: Sequence[str] = (),
    high_card_categorical: Sequence[str] = (),
    imputer: Literal["median", "mean", "iterative"] = "median",
    scaler: Literal["standard", "minmax"] = "standard",
    random_state: int | None = 0,
    target_type: Literal["binary", "continuous"] = "binary",
) -> Any:
    """A scikit-learn ``ColumnTransformer`` for ranker features; fit it on training rows only.

    Numeric columns: imputation (median / mean ``SimpleImputer`` or ``IterativeImputer``) then ``StandardScaler``
    or ``MinMaxScaler``. Low-cardinality categoricals: one-hot (unknown values at predict time become all zeros).
    High-cardinality categoricals: ``TargetEncoder``, whose ``fit_transform`` cross-fits so a row's own label does
    not leak into its encoding (shuffled folds seeded by ``random_state``; ``target_type`` is the ranker label's
    kind). Missing categories are a category of their own. Other columns are dropped.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        MinMaxScaler,
        OneHotEncoder,
        StandardScaler,
        TargetEncoder,
    )

    if imputer == "iterative":
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer

        impute: Any = IterativeImputer(random_state=random_state, keep_empty_features=True)
    elif imputer in ("median", "mean"):
        from sklearn.impute import SimpleImputer

        impute = SimpleImputer(strategy=imputer, keep_empty_features=True)
    else:
        raise ValueError(f"imputer must be 'median', 'mean' or 'iterative', got {imputer!r}")
    if scaler == "standard":
        scale: Any = StandardScaler()
    elif scaler == "minmax":
        scale = MinMaxScaler()
    else:
        raise ValueError(f"scaler must be 'standard' or 'minmax', got {scaler!r}")

    as_strings = FunctionTransformer(_as_strings, feature_names_out="one-to-one")
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("numeric", make_pipeline(impute, scale), list(numeric)))
    if low_card_categorical:
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        transformers.append(("onehot", make_pipeline(as_strings, onehot), list(low_card_categorical)))
    if high_card_categorical:
        target = _target_encoder(TargetEncoder, target_type, random_state)
        transformers.append(("target", make_pipeline(as_strings, target), list(high_card_categorical)))
    if not transformers:
        raise ValueError("give at least one numeric or categorical column")
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)


def _target_encoder(encoder_cls: Any, target_type: str, random_state: int | None) -> Any:
    """A TargetEncoder with seeded shuffled folds, through ``cv`` (scikit-learn >= 1.9) or ``random_state``."""
    import inspect

    if inspect.signature(encoder_cls).parameters["random_state"].default == "deprecated":
        from sklearn.model_selection import KFold, StratifiedKFold

        splitter = StratifiedKFold if target_type == "binary" else KFold
        return encoder_cls(target_type=target_type, cv=splitter(5, shuffle=True, random_state=random_state))
    return encoder_cls(target_type=target_type, random_state=random_state)


def pair_features(
    pairs: pd.DataFrame,
    user_feats: pd.DataFrame,
    item_feats: pd.DataFrame,
    affinity: pd.DataFrame | None = None,
    context: pd.DataFrame | Mapping[str, Any] | None = None,
    *,
    col_user: str = USER,
    col_item: str = ITEM,
    col_category: str = CATEGORY,
) -> pd.DataFrame:
    """The frame a ranker consumes: ``pairs`` (user, item and any candidate score columns) joined with user
    features (:func:`user_features`), item features (:func:`item_features_frame`), category affinity
    (:func:`user_category_affinity`) and context (:func:`context_features` of a frame aligned with ``pairs``, or of a
    single request's mapping such as ``{"timestamp": ..., "device": "mobile"}`` applied to every row).

    Row order and index of ``pairs`` are kept; unknown users or items get NaN (imputed by the preprocessor).
    """
    out = pairs.copy()
    users = pairs[col_user].to_numpy()
    items = pairs[col_item].astype(str).to_numpy()
    user_part = user_feats.reindex(users)
    item_part = item_feats.reindex(items)
    for col in user_part.columns:
        out[col] = user_part[col].to_numpy()
    for col in item_part.columns:
        out[col] = item_part[col].to_numpy()
    if affinity is not None and col_category in item_feats.columns:
        cats = pair_category_features(
            pairs, affinity, item_feats[col_category], col_user=col_user, col_item=col_item, col_category=col_category
        )
        for col in cats.columns:
            out[col] = cats[col].to_numpy()
    if context is not None:
        if isinstance(context, Mapping):
            context = pd.DataFrame([dict(context)] * len(pairs), index=pairs.index)
        if len(context) != len(pairs):
            raise ValueError(f"context has {len(context)} rows but pairs has {len(pairs)}: align them, or pass a "
                             "mapping for one request")
        ctx = context_features(context)
        for col in ctx.columns:
            out[col] = ctx[col].to_numpy()
    return out
