"""The ranker's features: per-stage lookup tables and the feature columns of (user, candidate) pairs.

:func:`fit_tables` turns the events of one fitted stage into arrays aligned with its matrix rows and columns: the
users' RFM (:func:`~personalization.pipeline.features.user_features`), the items' popularity windows, trend,
conversion and price band (:func:`~personalization.pipeline.features.item_features_frame`) and the users' affinity
to categories (:func:`~personalization.pipeline.features.user_category_affinity`).

The feature columns are defined once, in :func:`_feature_groups`: each group names its columns next to the function
that builds them, in order. :func:`feature_names` and :func:`feature_matrix` both derive from it, so the names stored
with a ranker always describe the columns it was trained and served on.

The context group (:data:`CONTEXT_COLUMNS`) is opt-in (``RecommenderSystem(context_features=True)``): the request's
hour bucket, weekday / weekend, device and country (:class:`Contexts`), and the candidate's lift in each, from the
items' context tables (:func:`context_tables`). A system without it has exactly the columns and tables it always had.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import cached_property, partial

import numpy as np
import pandas as pd
from scipy import sparse

from ..pipeline._util import utc_series
from ..pipeline.columns import AVAILABLE, CATEGORY, COUNTRY, DEVICE, EVENT, ITEM, PRICE, TIMESTAMP, USER
from ..pipeline.features import item_features_frame, user_category_affinity, user_features
from ..pipeline.interactions import InteractionMatrix
from .base import entry_rows, row_sums

USER_COLUMNS = ["user_recency_days", "user_frequency", "user_active_days", "user_distinct_items", "user_monetary"]
ITEM_COLUMNS = ["item_pop_7d", "item_pop_30d", "item_pop_90d", "item_trend", "item_conversion", PRICE,
                "item_price_band", AVAILABLE, "item_text_len"]
CATEGORY_COLUMNS = ["cat_recency_days", "cat_frequency", "cat_monetary"]
#: Families whose item-item similarity to the visitor's last item is a feature: what a session's next click
#: follows most (the whole history's sum is already in the family's score).
LAST_ITEM_FAMILIES = ("itemknn", "transitions", "item2vec", "ease")
#: Seasonality: the item's popularity in the same weeks of the previous year and what followed them then.
SEASON_COLUMNS = ["item_pop_last_year", "item_trend_last_year"]
#: "The same weeks": this many days either side of the date one year before the stage's end.
SEASON_HALF_WIDTH_DAYS = 14
#: Context (opt-in, ``RecommenderSystem(context_features=True)``): the request's raw context, and the candidate's
#: lift in it (the log of its share of visitors in that context over everyone's share): what reorders one
#: visitor's candidates by the hour, day, device or country of the request.
CONTEXT_COLUMNS = ["ctx_hour_bucket", "ctx_weekend", "ctx_device", "ctx_country", "item_hour_lift",
                   "item_weekend_lift", "item_device_lift", "item_country_lift"]
#: Session group (the session ranker's own columns, :func:`_session_columns`): the visit's shape (its clicks, the
#: share of distinct items, whether its last click went back to an item, how many times in a row it was clicked),
#: the candidate's place in it (the last item, clicks since its latest click, its clicks) and the sequential rules
#: from the last click and from the last :data:`RULE_ITEMS` clicks: what tells going back from moving on.
SESSION_COLUMNS = ["sess_clicks", "sess_distinct_share", "sess_last_repeated", "sess_last_run", "cand_is_last",
                   "cand_recency", "cand_clicks", "rules_last", "rules_recent", "item_pop_1d"]
#: ``item_pop_1d``: the item's distinct visitors in this many hours before the stage's end (log1p): what visits are
#: clicking now, where the item columns' shortest window is a week.
RECENT_HOURS = 24
#: Sequential rules count a click ``d <= RULE_STEPS`` clicks after another, weighted ``1 / d`` (SR's defaults).
RULE_STEPS = 10
#: ``rules_recent`` sums the rules of the last this many clicks, the click ``d`` back weighted ``1 / d``.
RULE_ITEMS = 3
#: The UTC hour of day in this many buckets of equal length (4 hours each).
HOUR_BUCKETS = 6
#: Add-k smoothing of the lifts: an item with few visitors keeps a lift near 0 (its share pulled to everyone's).
CONTEXT_SMOOTHING = 10.0
#: Devices and countries with their own lift column, the most frequent first; rarer ones get NaN.
MAX_CONTEXT_VALUES = 30
#: The device classes of event contexts (``tracking.context``), coded 0.. in this order for ``ctx_device``.
DEVICE_CODES = ("desktop", "mobile", "tablet", "other")


@dataclass
class Tables:
    """Feature lookups of one fitted stage, as arrays aligned with the matrix rows / columns."""

    user: np.ndarray  # float32 (n_users, len(USER_COLUMNS))
    item: np.ndarray  # float32 (n_items, len(ITEM_COLUMNS) + 1): + log1p of the matrix column sum
    item_category: np.ndarray  # int32 (n_items,), -1 = no category
    categories: np.ndarray  # str (n_categories,)
    category_keys: np.ndarray  # int64 sorted: user_row * n_categories + category code
    category_values: np.ndarray  # float32 (len(keys), len(CATEGORY_COLUMNS))
    unavailable: np.ndarray  # bool (n_items,)
    # the (user row, item column) pairs with a consuming event (a purchase, a rating): CSR structure, no data
    consumed_indptr: np.ndarray | None = None  # int64 (n_users + 1,); None (an older artifact): every pair consumed
    consumed_indices: np.ndarray | None = None  # int32
    # float32 (n_items, len(SEASON_COLUMNS)): the item's same weeks last year; None (an older artifact): NaN
    season: np.ndarray | None = None
    # context lifts (float32 (n_items, values)) and the device / country values of their columns: None when the
    # system was fitted without context features (or saved before them): NaN columns
    ctx_hour: np.ndarray | None = None
    ctx_weekend: np.ndarray | None = None
    ctx_device: np.ndarray | None = None
    ctx_devices: np.ndarray | None = None
    ctx_country: np.ndarray | None = None
    ctx_countries: np.ndarray | None = None
    # sequential rules (CSR n_items x n_items, :func:`sequential_rules`): what followed each item within a few clicks
    # of the same visit; None when the stage was fitted without the session group (or saved before it)
    rules_indptr: np.ndarray | None = None  # int64
    rules_indices: np.ndarray | None = None  # int32
    rules_data: np.ndarray | None = None  # float32
    recent_pop: np.ndarray | None = None  # float32 (n_items,): log1p visitors in the last RECENT_HOURS (session group)

    @cached_property
    def rules(self) -> sparse.csr_matrix | None:
        """The sequential rules as a CSR matrix (None without them)."""
        if self.rules_indptr is None:
            return None
        n = len(self.rules_indptr) - 1
        return sparse.csr_matrix((self.rules_data, self.rules_indices, self.rules_indptr), shape=(n, n))

    def state(self) -> dict[str, np.ndarray]:
        return {f"tables_{k}": getattr(self, k) for k in self.__dataclass_fields__ if getattr(self, k) is not None}

    def consumed_rows(self, user_rows: np.ndarray, n_items: int) -> sparse.csr_matrix | None:
        """The consumed items of ``user_rows`` (-1: anonymous, nothing) as a CSR of ones; None when unknown."""
        if self.consumed_indptr is None:
            return None
        user_rows = np.asarray(user_rows, dtype=np.int64)
        known = user_rows >= 0
        starts = np.where(known, self.consumed_indptr[np.where(known, user_rows, 0)], 0)
        ends = np.where(known, self.consumed_indptr[np.where(known, user_rows, 0) + 1], 0)
        lengths = ends - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # each row's entries: its start repeated over its length, plus the position within the row (no Python loop)
        take = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1], dtype=np.int64)
        indices = self.consumed_indices[take]
        return sparse.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                                 shape=(len(user_rows), n_items))

    @cached_property
    def price_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """(1.0 where the item has a price, the price or 0.0), float32 per item: built once."""
        price = self.item[:, ITEM_COLUMNS.index(PRICE)]
        has_price = np.isfinite(price)
        return has_price.astype(np.float32), np.where(has_price, price, 0.0).astype(np.float32)

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> Tables:
        return cls(**{k: state[f"tables_{k}"] for k in cls.__dataclass_fields__ if f"tables_{k}" in state})


def fit_tables(events: pd.DataFrame, catalog: pd.DataFrame | None, matrix: InteractionMatrix, now: pd.Timestamp,
               weights: Mapping[str, float], consumed_events: Sequence[str] = (), context: bool = False,
               sessions: Sequence[Sequence[int]] | None = None) -> Tables:
    """The feature tables of the users and items of ``matrix`` from its ``events`` and the optional ``catalog``
    (indexed by item key), as of ``now``; the pairs with an event of ``consumed_events`` are the consumed ones.
    ``context``: also the items' context lifts (:func:`context_tables`); ``sessions`` (item columns per visit, in
    time order): also the sequential rules of the session group (:func:`sequential_rules`)."""
    n_users, n_items = matrix.shape
    used = events.loc[events[EVENT].isin(list(consumed_events))]
    u, c = matrix.rows_for(used[USER].to_numpy()), matrix.cols_for(used[ITEM].to_numpy())
    ok = (u >= 0) & (c >= 0)
    consumed = sparse.csr_matrix((np.ones(int(ok.sum()), dtype=np.float32), (u[ok], c[ok])), shape=(n_users, n_items))
    consumed.sum_duplicates()
    consumed.sort_indices()
    known = events.loc[events[USER].isin(matrix.user_index)]
    uf = user_features(known, now=now)
    user = uf.reindex(matrix.user_ids)[USER_COLUMNS].to_numpy(dtype=np.float32, na_value=np.nan)
    catalog_frame = catalog.reset_index() if catalog is not None else None
    itf = item_features_frame(known, catalog_frame, now=now, windows=(7, 30, 90)).reindex(matrix.item_ids)
    for col in ITEM_COLUMNS:
        if col not in itf:
            itf[col] = np.nan
    pop = np.log1p(np.asarray((matrix.csr > 0).sum(axis=0), dtype=np.float64).ravel())
    item = np.column_stack([itf[ITEM_COLUMNS].astype(float).to_numpy(), pop]).astype(np.float32)
    unavailable = (itf[AVAILABLE] == 0).to_numpy(dtype=bool)
    if catalog is not None and CATEGORY in catalog:
        category = catalog[CATEGORY].reindex(matrix.item_ids)
        codes, categories = pd.factorize(category)
        categories = np.asarray(categories, dtype=str)
    else:
        codes, categories = np.full(n_items, -1), np.zeros(0, dtype=str)
    keys = np.zeros(0, dtype=np.int64)
    values = np.zeros((0, len(CATEGORY_COLUMNS)), dtype=np.float32)
    if len(categories):
        item_frame = pd.DataFrame({ITEM: matrix.item_ids, CATEGORY: category.to_numpy()})
        aff = user_category_affinity(known, item_frame, weights=weights, now=now)
        if len(aff):
            rows = matrix.rows_for(aff[USER])
            cat = pd.Index(categories).get_indexer(aff[CATEGORY].astype(str))
            ok = (rows >= 0) & (cat >= 0)
            keys = rows[ok] * len(categories) + cat[ok]
            order = np.argsort(keys)
            keys = keys[order]
            values = aff[CATEGORY_COLUMNS].to_numpy(dtype=np.float32)[ok][order]
    return Tables(user=user, item=item, item_category=np.asarray(codes, dtype=np.int32),
                  categories=categories, category_keys=keys.astype(np.int64), category_values=values,
                  unavailable=unavailable, consumed_indptr=consumed.indptr.astype(np.int64),
                  consumed_indices=consumed.indices.astype(np.int32),
                  season=season_table(events, matrix, now),
                  **(context_tables(events, matrix, weights) if context else {}),
                  **(rules_state(sequential_rules(sessions, n_items)) if sessions is not None else {}),
                  **({"recent_pop": recent_popularity(events, matrix, now)} if sessions is not None else {}))


def recent_popularity(events: pd.DataFrame, matrix: InteractionMatrix, now: pd.Timestamp) -> np.ndarray:
    """Per item column: log1p of its distinct visitors in the :data:`RECENT_HOURS` before ``now``, float32."""
    recent = events.loc[(events[TIMESTAMP] >= now - pd.Timedelta(hours=RECENT_HOURS)).to_numpy(), [USER, ITEM]]
    recent = recent.drop_duplicates()
    cols = matrix.cols_for(recent[ITEM].to_numpy())
    return np.log1p(np.bincount(cols[cols >= 0], minlength=matrix.shape[1])).astype(np.float32)


def sequential_rules(sessions: Sequence[Sequence[int]], n_items: int, steps: int | None = None) -> sparse.csr_matrix:
    """Sequential rules (Ludewig & Jannach's SR): ``rules[a, b]`` sums ``1 / d`` over the visits where ``b`` was
    clicked ``d`` clicks after ``a``, ``d <= steps`` (:data:`RULE_STEPS`); a click on the same item is no rule.
    Rows are scaled to a largest entry of 1, so one item's rules compare with another's. float32 CSR."""
    steps = RULE_STEPS if steps is None else steps
    src, dst, val = [], [], []
    for seq in sessions:
        seq = np.asarray(seq, dtype=np.int64)
        for d in range(1, min(steps, len(seq) - 1) + 1):
            src.append(seq[:-d])
            dst.append(seq[d:])
            val.append(np.full(len(seq) - d, 1.0 / d, dtype=np.float32))
    if not src:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    a, b, v = np.concatenate(src), np.concatenate(dst), np.concatenate(val)
    keep = a != b
    rules = sparse.csr_matrix((v[keep], (a[keep], b[keep])), shape=(n_items, n_items), dtype=np.float32)
    rules.sum_duplicates()
    top = np.zeros(n_items, dtype=np.float32)
    if rules.nnz:
        np.maximum.at(top, entry_rows(rules), rules.data)
    rules.data = rules.data / top[entry_rows(rules)]
    rules.sort_indices()
    return rules


def rules_state(rules: sparse.csr_matrix) -> dict[str, np.ndarray]:
    """:class:`Tables` fields of a rules matrix."""
    return {"rules_indptr": rules.indptr.astype(np.int64), "rules_indices": rules.indices.astype(np.int32),
            "rules_data": rules.data.astype(np.float32)}


def _lift(cols: np.ndarray, values: np.ndarray, n_items: int, n_values: int) -> np.ndarray:
    """float32 (n_items, n_values): log of each item's smoothed share of its counts at each value over the share of
    all counts there (0: as usual; > 0: more than usual). ``cols``/``values``: one count per entry."""
    counts = np.zeros((n_items, n_values), dtype=np.float64)
    np.add.at(counts, (cols, values), 1.0)
    prior = (counts.sum(axis=0) + 1.0) / (counts.sum() + n_values)
    share = (counts + CONTEXT_SMOOTHING * prior) / (counts.sum(axis=1, keepdims=True) + CONTEXT_SMOOTHING)
    return np.log(share / prior).astype(np.float32)


def context_tables(events: pd.DataFrame, matrix: InteractionMatrix, weights: Mapping[str, float]) -> dict:
    """The items' context lifts (:func:`_lift`) per hour bucket, weekday / weekend, device and country, counted in
    distinct visitors of each item in each context over the events with a positive weight."""
    n_items = matrix.shape[1]
    positive = events[EVENT].map(lambda t: float(weights.get(t, 0.0)) > 0).to_numpy(dtype=bool)
    used = events.loc[positive]
    cols = matrix.cols_for(used[ITEM].astype(str).to_numpy())
    used = used.loc[cols >= 0]
    cols = cols[cols >= 0]
    ctx = Contexts.from_frame(used)
    out: dict[str, np.ndarray] = {}
    users = pd.factorize(used[USER])[0] if len(used) else np.zeros(0, dtype=np.int64)

    def lift(values: np.ndarray, n_values: int) -> np.ndarray:
        known = values >= 0
        keys = np.unique(np.stack([users[known], cols[known], values[known]]), axis=1)  # distinct visitors
        return _lift(keys[1], keys[2], n_items, n_values)

    out["ctx_hour"] = lift(np.nan_to_num(ctx.hour_bucket, nan=-1).astype(np.int64), HOUR_BUCKETS)
    out["ctx_weekend"] = lift(np.nan_to_num(ctx.weekend, nan=-1).astype(np.int64), 2)
    for name, vocab_name, column in (("ctx_device", "ctx_devices", ctx.device),
                                     ("ctx_country", "ctx_countries", ctx.country)):
        values = pd.Series(column, dtype=object)
        top = values.dropna().value_counts().index[:MAX_CONTEXT_VALUES]
        vocab = np.asarray(top, dtype=str)
        out[vocab_name] = vocab
        out[name] = lift(pd.Index(vocab).get_indexer(values.where(values.notna(), None)), len(vocab))
    return out


def season_table(events: pd.DataFrame, matrix: InteractionMatrix, now: pd.Timestamp) -> np.ndarray:
    """Per item column: log1p of its distinct visitors in the same weeks one year before ``now``
    (``now - 365 d`` +- :data:`SEASON_HALF_WIDTH_DAYS`), and the log ratio of the following four weeks then to
    those weeks (> 0: it was rising at this time last year). NaN where the events do not reach back that far."""
    out = np.full((matrix.shape[1], len(SEASON_COLUMNS)), np.nan, dtype=np.float32)
    if not len(events):
        return out
    ts = events[TIMESTAMP]
    center = now - pd.Timedelta(days=365)
    half = pd.Timedelta(days=SEASON_HALF_WIDTH_DAYS)
    if ts.min() > center - half:
        return out  # less than a year (and two weeks) of history: no season to read

    def visitors(start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
        part = events.loc[((ts >= start) & (ts < end)).to_numpy(), [USER, ITEM]].drop_duplicates()
        cols = matrix.cols_for(part[ITEM].to_numpy())
        return np.bincount(cols[cols >= 0], minlength=matrix.shape[1]).astype(np.float32)

    same = visitors(center - half, center + half)
    after = visitors(center + half, center + half + pd.Timedelta(days=28))
    out[:, 0] = np.log1p(same)
    out[:, 1] = np.log1p(after) - np.log1p(same)
    return out


def _utc(value: object) -> pd.Timestamp:
    """A request's time as a UTC Timestamp (datetime, ISO 8601 or Unix seconds / milliseconds); NaT if unreadable."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return pd.Timestamp(value, unit="ms" if value > 1e11 else "s", tz="UTC")
        ts = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError):
        return pd.NaT
    if ts is pd.NaT:
        return pd.NaT
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _text(value: object) -> str | None:
    """``value`` as text; None for a missing one (None, NaN, "")."""
    return str(value) if value is not None and value == value and str(value) != "" else None


@dataclass
class Contexts:
    """The request context of each user of a batch: at training the user's first event in the label part (the
    last history event of an anonymous session), at serving the request. NaN / None: unknown."""

    hour_bucket: np.ndarray  # float32 (users,): the UTC hour's bucket of :data:`HOUR_BUCKETS`
    weekend: np.ndarray  # float32 (users,): 1 on Saturday and Sunday (UTC)
    device: np.ndarray  # object (users,): device class or None
    country: np.ndarray  # object (users,): country (an ISO code from the tracker, a name in some data sets) or None

    def __len__(self) -> int:
        return len(self.hour_bucket)

    def __getitem__(self, rows) -> Contexts:
        return Contexts(self.hour_bucket[rows], self.weekend[rows], self.device[rows], self.country[rows])

    @classmethod
    def unknown(cls, n: int) -> Contexts:
        return cls(np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32), np.full(n, None, object),
                   np.full(n, None, object))

    @classmethod
    def from_times(cls, times: pd.Series, device: Sequence | None = None, country: Sequence | None = None) -> Contexts:
        """Contexts at ``times`` (any datetimes; naive ones are UTC) with the given device and country values."""
        ts = utc_series(pd.Series(times, dtype="datetime64[ns, UTC]") if not len(times) else pd.Series(times))
        hour = ts.dt.hour.to_numpy(dtype=np.float64, na_value=np.nan)
        day = ts.dt.day_of_week.to_numpy(dtype=np.float64, na_value=np.nan)
        n = len(ts)
        return cls((hour // (24 // HOUR_BUCKETS)).astype(np.float32),
                   np.where(np.isnan(day), np.nan, day >= 5).astype(np.float32),
                   np.array([_text(v) for v in (device if device is not None else [None] * n)], dtype=object),
                   np.array([_text(v) for v in (country if country is not None else [None] * n)], dtype=object))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Contexts:
        """The context of each event of ``frame`` (its timestamp, device and country columns when it has them)."""
        return cls.from_times(frame[TIMESTAMP], frame[DEVICE].to_numpy() if DEVICE in frame else None,
                              frame[COUNTRY].to_numpy() if COUNTRY in frame else None)

    @classmethod
    def from_mappings(cls, contexts: Sequence[Mapping | None]) -> Contexts:
        """From request contexts: ``timestamp`` (the time of the request), ``device`` and ``country``."""
        got = [c or {} for c in contexts]
        return cls.from_times(pd.Series([_utc(c.get(TIMESTAMP)) for c in got], dtype="datetime64[ns, UTC]"),
                              [c.get(DEVICE) for c in got], [c.get(COUNTRY) for c in got])

    def bucket(self, i: int = 0) -> tuple:
        """User ``i``'s context as the ranker sees it: (hour bucket, weekend, device, country), None unknown."""
        def num(v: float) -> int | None:
            return None if np.isnan(v) else int(v)

        return num(self.hour_bucket[i]), num(self.weekend[i]), self.device[i], self.country[i]


def context_bucket(context: Mapping | None) -> tuple:
    """The request ``context``'s bucket (:meth:`Contexts.bucket`): what a ranker with context features sees of it."""
    return Contexts.from_mappings([context]).bucket(0)


@dataclass
class CandidatePairs:
    """One batch of users with their candidates: everything the feature columns are computed from."""

    families: list[str]  # fitted families, in the stage's order
    scorers: list[Callable[[np.ndarray], np.ndarray]]  # per family: its scores at (users x width) item columns
    list_pos: np.ndarray  # float32 (families, users, width): position in each family's own list, NaN = not in it
    best_pos: np.ndarray  # (users, width): the best of those positions, inf = in no list
    n_sources: np.ndarray  # float32 (users, width): how many families proposed the candidate
    cands: np.ndarray  # int64 (users, width): item columns, -1 = padding
    user_rows: np.ndarray  # int64 (users,): training rows, -1 = anonymous
    hist: sparse.csr_matrix  # (users, n_items): the users' histories
    tables: Tables
    # per family of LAST_ITEM_FAMILIES that is fitted (in family order): its similarity of each candidate to the
    # history's strongest item (the last click of an ordered history), NaN without one
    last_sims: list[np.ndarray] = dataclass_field(default_factory=list)
    contexts: Contexts | None = None  # the users' request contexts (None: unknown)
    # per user, the ordered history (item columns, most recent last) the session group reads; None: derived from
    # ``hist`` (its items by weight, the strongest last: the order of a decay-weighted history without repeats)
    sequences: Sequence[np.ndarray] | None = None

    @cached_property
    def ordered(self) -> list[np.ndarray]:
        """Each user's ordered history (see :attr:`sequences`)."""
        if self.sequences is not None:
            return [np.asarray(s, dtype=np.int64) for s in self.sequences]
        out = []
        for i in range(self.hist.shape[0]):
            lo, hi = self.hist.indptr[i], self.hist.indptr[i + 1]
            order = np.argsort(self.hist.data[lo:hi], kind="stable")
            out.append(self.hist.indices[lo:hi][order].astype(np.int64))
        return out

    @cached_property
    def valid(self) -> np.ndarray:
        return self.cands >= 0

    @cached_property
    def safe(self) -> np.ndarray:
        """The candidates with padding at column 0 (index-safe; mask with :attr:`valid`)."""
        return np.where(self.valid, self.cands, 0)

    @property
    def anonymous(self) -> np.ndarray:
        return self.user_rows < 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.cands.shape


def _family_columns(i: int, pairs: CandidatePairs) -> list[np.ndarray]:
    """Family ``i``'s score, rank among the candidates, gap to the user's best candidate, position in its list."""
    n_users, width = pairs.shape
    s = np.array(pairs.scorers[i](pairs.safe), dtype=np.float32)
    s[~pairs.valid] = -np.inf
    finite = np.isfinite(s)
    s_nan = np.where(finite, s, np.nan)
    order = np.argsort(-np.where(finite, s, -np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(width)[None, :].repeat(n_users, 0), axis=1)
    with np.errstate(invalid="ignore", all="ignore"):
        # no candidate at all (everything excluded): nothing to compare with, and nanmax has no empty answer
        best = (np.nanmax(np.where(finite, s, -np.inf), axis=1, keepdims=True) if width
                else np.zeros((n_users, 1), dtype=np.float32))
        gap = np.where(finite, s - best, np.nan)
    return [s_nan, np.where(finite, rank, np.nan).astype(np.float32), gap, pairs.list_pos[i]]


def _list_columns(pairs: CandidatePairs) -> list[np.ndarray]:
    n_users, width = pairs.shape
    hist_len = np.diff(pairs.hist.indptr).astype(np.float32)
    return [pairs.n_sources, np.where(np.isfinite(pairs.best_pos), pairs.best_pos, np.nan),
            np.broadcast_to(pairs.anonymous[:, None].astype(np.float32), (n_users, width)),
            np.broadcast_to(hist_len[:, None], (n_users, width))]


def _user_columns(pairs: CandidatePairs) -> list[np.ndarray]:
    """The user's RFM (NaN for anonymous users)."""
    n_users, width = pairs.shape
    tables, anonymous = pairs.tables, pairs.anonymous
    user_part = np.full((n_users, tables.user.shape[1]), np.nan, dtype=np.float32)
    user_part[~anonymous] = tables.user[pairs.user_rows[~anonymous]]
    return [np.broadcast_to(user_part[:, j : j + 1], (n_users, width)) for j in range(user_part.shape[1])]


def _item_columns(pairs: CandidatePairs) -> list[np.ndarray]:
    item_part = pairs.tables.item[pairs.safe]  # (users, width, n_item_features)
    return [item_part[:, :, j] for j in range(item_part.shape[2])]


def _category_columns(pairs: CandidatePairs) -> list[np.ndarray]:
    """The history's share in the item's category (any user), the user's RFM in it (known users)."""
    n_users, width = pairs.shape
    tables, anonymous, user_rows = pairs.tables, pairs.anonymous, pairs.user_rows
    n_cat = len(tables.categories)
    if not n_cat:
        return [np.full((n_users, width), np.nan, dtype=np.float32)] * (1 + len(CATEGORY_COLUMNS))
    item_cat = tables.item_category[pairs.safe]
    rows_idx = np.arange(n_users)[:, None]
    share, total = category_sums(pairs.hist, tables.item_category, n_cat)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = share / np.where(total > 0, total, np.nan)
    aff = np.where(item_cat >= 0, share[rows_idx, np.where(item_cat >= 0, item_cat, 0)], np.nan)
    keys = np.where(~anonymous[:, None] & (item_cat >= 0), user_rows[:, None] * n_cat + item_cat, -1)
    at = np.searchsorted(tables.category_keys, keys)
    at = np.clip(at, 0, max(len(tables.category_keys) - 1, 0))
    hit = (keys >= 0) & (len(tables.category_keys) > 0)
    if len(tables.category_keys):
        hit &= tables.category_keys[at] == keys
    cat_vals = np.full((n_users, width, len(CATEGORY_COLUMNS)), np.nan, dtype=np.float32)
    if hit.any():
        cat_vals[hit] = tables.category_values[at[hit]]
    known_cat = ~anonymous[:, None] & (item_cat >= 0) & ~hit
    cat_vals[known_cat, 1] = 0.0  # frequency 0
    cat_vals[known_cat, 2] = 0.0  # monetary 0
    return [aff.astype(np.float32), *(cat_vals[:, :, j] for j in range(cat_vals.shape[2]))]


def _price_columns(pairs: CandidatePairs) -> list[np.ndarray]:
    """The item's price over the history's weighted mean price, and that mean."""
    n_users, width = pairs.shape
    tables = pairs.tables
    price = tables.item[:, ITEM_COLUMNS.index(PRICE)]
    has_price, price_or_zero = tables.price_terms
    num, den = price_sums(pairs.hist, has_price, price_or_zero)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_price = np.where(den > 0, num / den, np.nan).astype(np.float32)
        ratio = price[pairs.safe] / mean_price[:, None]
    return [ratio.astype(np.float32), np.broadcast_to(mean_price[:, None], (n_users, width))]


def _history_columns(pairs: CandidatePairs) -> list[np.ndarray]:
    """For candidates the visitor already interacted with (a repeat): the item's weight in the history, that weight
    over the history's largest, and its rank in the history by weight (0 = the strongest: the most recent of an
    ordered history); 0, 0 and NaN for new items. They let the ranker learn when a viewed item comes back."""
    n_users, width = pairs.shape
    hist = pairs.hist
    n_items = hist.shape[1]
    weight = np.zeros((n_users, width), dtype=np.float32)
    rank = np.full((n_users, width), np.nan, dtype=np.float32)
    if hist.nnz:
        rows = entry_rows(hist)
        keys = rows.astype(np.int64) * n_items + hist.indices  # sorted: rows ascending, indices sorted per row
        query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + pairs.safe
        at = np.clip(np.searchsorted(keys, query), 0, len(keys) - 1)
        hit = (keys[at] == query) & pairs.valid
        weight[hit] = hist.data[at[hit]]
        # rank within the row by weight, descending
        order = np.lexsort((-hist.data, rows))
        within = np.empty(len(order), dtype=np.float32)
        within[order] = np.arange(len(order)) - hist.indptr[rows[order]]
        rank[hit] = within[at[hit]]
    top = np.zeros(n_users, dtype=np.float32)
    if hist.nnz:
        np.maximum.at(top, entry_rows(hist), hist.data)
    rel = np.where(top[:, None] > 0, weight / np.where(top > 0, top, 1.0)[:, None], 0.0)
    return [weight, rel.astype(np.float32), rank]


def _season_columns(pairs: CandidatePairs) -> list[np.ndarray]:
    """The candidate's :data:`SEASON_COLUMNS` (NaN for a system saved before they existed)."""
    season = pairs.tables.season
    if season is None:
        return [np.full(pairs.shape, np.nan, dtype=np.float32) for _ in SEASON_COLUMNS]
    part = season[pairs.safe]
    return [part[:, :, j] for j in range(part.shape[2])]


def _country_code(country: object) -> float:
    """A fixed number per country (the same in every stage and artifact): 0-675 for a two-letter code, a CRC-32
    bucket above them for another name (a data set's "United Kingdom"); NaN when unknown."""
    if country is None:
        return np.nan
    text = str(country).strip().upper()
    if len(text) == 2 and text.isalpha() and text.isascii():
        return float((ord(text[0]) - 65) * 26 + ord(text[1]) - 65)
    return float(676 + zlib.crc32(text.encode()) % 100_000) if text else np.nan


def _context_columns(pairs: CandidatePairs) -> list[np.ndarray]:
    """The request's :data:`CONTEXT_COLUMNS`: hour bucket, weekend, device and country codes, then the candidate's
    lift in each (NaN: unknown context, or tables without context lifts)."""
    n_users, width = pairs.shape
    tables = pairs.tables
    ctx = pairs.contexts if pairs.contexts is not None else Contexts.unknown(n_users)
    device_code = np.array([DEVICE_CODES.index(d) if d in DEVICE_CODES else np.nan for d in ctx.device],
                           dtype=np.float32).reshape(n_users)
    country_code = np.array([_country_code(c) for c in ctx.country], dtype=np.float32).reshape(n_users)
    raw = [np.broadcast_to(v.astype(np.float32)[:, None], (n_users, width))
           for v in (ctx.hour_bucket, ctx.weekend, device_code, country_code)]

    def lift(table: np.ndarray | None, at: np.ndarray) -> np.ndarray:
        out = np.full((n_users, width), np.nan, dtype=np.float32)
        known = at >= 0
        if table is None or not known.any() or not table.shape[1]:
            return out
        out[known] = table[pairs.safe[known], at[known][:, None]]
        return out

    def codes(values: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(values), -1, values).astype(np.int64)

    def index(vocab: np.ndarray | None, values: np.ndarray) -> np.ndarray:
        if vocab is None or not len(vocab):
            return np.full(n_users, -1, np.int64)
        return pd.Index(vocab).get_indexer(pd.Index(values.astype(object))).astype(np.int64)

    return [*raw,
            lift(tables.ctx_hour, codes(ctx.hour_bucket)),
            lift(tables.ctx_weekend, codes(ctx.weekend)),
            lift(tables.ctx_device, index(tables.ctx_devices, ctx.device)),
            lift(tables.ctx_country, index(tables.ctx_countries, ctx.country))]


def _session_columns(pairs: CandidatePairs) -> list[np.ndarray]:
    """The :data:`SESSION_COLUMNS` of each (visit, candidate) pair, from the users' ordered histories
    (:attr:`CandidatePairs.ordered`) and the stage's sequential rules (NaN rules without them)."""
    n_users, width = pairs.shape
    out = {name: np.full((n_users, width), np.nan, dtype=np.float32) for name in SESSION_COLUMNS}
    rules = pairs.tables.rules
    cands, valid = pairs.cands, pairs.valid
    for i, seq in enumerate(pairs.ordered):
        if not len(seq):
            continue
        last = seq[-1]
        run = len(seq) - (np.flatnonzero(seq != last)[-1] + 1) if (seq != last).any() else len(seq)
        items, back_first = np.unique(seq[::-1], return_index=True)  # the latest click of each item
        counts = np.bincount(np.searchsorted(items, seq), minlength=len(items))
        row = cands[i]
        for name, value in (("sess_clicks", len(seq)), ("sess_distinct_share", len(items) / len(seq)),
                            ("sess_last_repeated", float((seq[:-1] == last).any())), ("sess_last_run", run)):
            out[name][i] = value
        at = np.clip(np.searchsorted(items, row), 0, len(items) - 1)
        hit = (items[at] == row) & valid[i]
        out["cand_is_last"][i] = (row == last).astype(np.float32)
        out["cand_recency"][i] = np.where(hit, back_first[at], np.nan)
        out["cand_clicks"][i] = np.where(hit, counts[at], 0.0)
        if rules is None:
            continue
        recent = np.zeros(width, dtype=np.float32)
        for d, item in enumerate(seq[::-1][:RULE_ITEMS], start=1):
            lo, hi = rules.indptr[item], rules.indptr[item + 1]
            idx, val = rules.indices[lo:hi], rules.data[lo:hi]
            got = np.zeros(width, dtype=np.float32)
            if len(idx):
                pos = np.clip(np.searchsorted(idx, row), 0, len(idx) - 1)
                got = np.where(idx[pos] == row, val[pos], 0.0).astype(np.float32)
            if d == 1:
                out["rules_last"][i] = got
            recent += got / d
        out["rules_recent"][i] = recent
    if pairs.tables.recent_pop is not None:
        out["item_pop_1d"][:] = pairs.tables.recent_pop[pairs.safe]
    for column in out.values():
        column[~valid] = np.nan
    return [out[name] for name in SESSION_COLUMNS]


#: Where the item was shown in a served list. Feedback rows (impressions of logged lists) carry their logged
#: position, so the ranker explains the position's share of a click by it; every list it ranks is built at
#: :data:`SERVING_POSITION` for all candidates, so no candidate is favoured for where it was shown before.
POSITION_FEATURE = "shown_position"
SERVING_POSITION = 0.0


def _position_columns(pairs: CandidatePairs) -> list[np.ndarray]:
    """The position feature at serving: the same constant for every candidate (training overwrites it)."""
    return [np.full(pairs.shape, SERVING_POSITION, dtype=np.float32)]


def _feature_groups(families: Sequence[str], context: bool = False,
                    session: bool = False) -> list[tuple[list[str], Callable[[CandidatePairs], list[np.ndarray]]]]:
    """The ranker's feature columns in order: each group's names next to the function building those columns
    (``context``: the opt-in context group, then ``session``: the session ranker's group, last, so a system without
    them has exactly the columns it always had)."""
    groups: list[tuple[list[str], Callable[[CandidatePairs], list[np.ndarray]]]] = [
        ([f"{f}_score", f"{f}_rank", f"{f}_gap", f"{f}_list_pos"], partial(_family_columns, i))
        for i, f in enumerate(families)
    ]
    groups += [
        (["n_sources", "best_list_pos", "anonymous", "history_len"], _list_columns),
        (list(USER_COLUMNS), _user_columns),
        ([*ITEM_COLUMNS, "item_users_log"], _item_columns),
        (["cat_affinity", *CATEGORY_COLUMNS], _category_columns),
        (["price_ratio", "user_mean_price"], _price_columns),
        (["hist_weight", "hist_weight_rel", "hist_rank"], _history_columns),
        ([f"{f}_last_sim" for f in families if f in LAST_ITEM_FAMILIES], lambda pairs: list(pairs.last_sims)),
        (list(SEASON_COLUMNS), _season_columns),
        ([POSITION_FEATURE], _position_columns),
    ]
    if context:
        groups.append((list(CONTEXT_COLUMNS), _context_columns))
    if session:
        groups.append((list(SESSION_COLUMNS), _session_columns))
    return groups


#: The feature groups, in column order (``family`` holds every family's score, rank, gap and list position);
#: the groups of :data:`OPT_IN_GROUPS` are there only when the system is fitted with them.
FEATURE_GROUPS = ("family", "lists", "user", "item", "category", "price", "history", "last_item", "season",
                  "position", "context", "session")
#: Groups a system builds only when asked (``RecommenderSystem(context_features=True)``); ``session`` is built for
#: the session ranker only (``RecommenderSystem(session_ranker=True)``), and left out like the others.
OPT_IN_GROUPS = ("context",)


def feature_groups(families: Sequence[str], context: bool = False, session: bool = False) -> list[str]:
    """The group (of :data:`FEATURE_GROUPS`) of each feature column, in column order: what an ablation drops."""
    groups = _feature_groups(families, context, session)
    chosen = {"context": context, "session": session}
    per_group = ["family"] * len(families) + [g for g in FEATURE_GROUPS[1:] if chosen.get(g, True)]
    return [group for group, (names, _) in zip(per_group, groups, strict=True) for _ in names]


def feature_names(families: Sequence[str], context: bool = False, session: bool = False) -> list[str]:
    """Names of the feature columns of a stage with these fitted ``families`` (and the context group when
    ``context``, the session group when ``session``), in column order."""
    return [name for names, _ in _feature_groups(families, context, session) for name in names]


def feature_matrix(pairs: CandidatePairs, context: bool = False, session: bool = False) -> np.ndarray:
    """The features of every (user, candidate) pair: float32 (users * width, len(feature_names(families)))."""
    n_users, _ = pairs.shape
    cols: list[np.ndarray] = []
    for names, build in _feature_groups(pairs.families, context, session):
        built = build(pairs)
        if len(built) != len(names):
            raise RuntimeError(f"feature group {names[0]}... built {len(built)} columns for {len(names)} names")
        cols += built
    stacked = np.stack([np.asarray(c, dtype=np.float32) for c in cols], axis=-1)
    return stacked.reshape(n_users * pairs.shape[1], len(cols))  # not -1: no candidate at all is (0, columns)


def category_sums(hist: sparse.csr_matrix, item_category: np.ndarray, n_cat: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the history's weight in each category (users x categories) and in all (users x 1), float32.

    What ``hist @ onehot`` (the item -> category indicator; float32 sums in stored order) and ``hist.sum(axis=1)``
    give, bit for bit, without scipy's sparse product: for one visitor its set-up cost more than the sums."""
    rows = entry_rows(hist)
    cats = item_category[hist.indices]
    share = np.zeros((hist.shape[0], n_cat), dtype=np.float32)
    has = cats >= 0
    np.add.at(share, (rows[has], cats[has]), hist.data[has])
    return share, row_sums(hist.indptr, hist.data)[:, None]


def price_sums(hist: sparse.csr_matrix, has_price: np.ndarray,
               price_or_zero: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the history's price-weighted sum and its weight over priced items: what ``hp @ price_or_zero``
    and ``hp.sum(axis=1)`` give for ``hp = hist.multiply(has_price)`` (explicit zeros kept), bit for bit."""
    rows = entry_rows(hist)
    weights = hist.data * has_price[hist.indices]
    num = np.zeros(hist.shape[0], dtype=np.float32)
    np.add.at(num, rows, weights * price_or_zero[hist.indices])
    return num, row_sums(hist.indptr, weights)
