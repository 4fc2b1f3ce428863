"""Updates between retrains: fold events that arrived after training into a fitted system, as a small *delta*.

A :class:`Delta` holds what changed since the system was trained: the subjects and items that are new (appended to
the :class:`~personalization.pipeline.interactions.InteractionMatrix`, so every trained row and column keeps its
number), the interactions added, and the rows of the learned tables it recomputed:

* ALS: the factors of the users with new events and of the items that are new or got new interactions
  (``implicit``'s ``partial_fit_users`` / ``partial_fit_items``, BLAS on one thread);
* item-kNN: the cosine neighbours of the touched items, and those items inserted into their neighbours' rows (so a
  new item gets similar items and shows up among theirs);
* transitions: the successors of the items clicked, blended with the trained probabilities;
* popularity and the ranker's item popularity / consumed pairs.

The other families (EASE, item2vec, content, BPR) keep their trained rows; for new items they score nothing until
the next retrain. Deltas are cumulative (:func:`merge`): ``apply_delta(base, delta)`` rebuilds the served system
from the trained one in any process. Pure numpy/scipy/pandas: no Django.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..pipeline.columns import EVENT, ITEM, TIMESTAMP, USER
from .content import ContentRecommender
from .ease import EASERecommender
from .factorization import ALSRecommender, _FactorModel, _one_blas_thread
from .features import Tables, rules_state
from .item2vec import Item2VecRecommender, item_sessions
from .neighbors import ItemKNNRecommender
from .popularity import PopularityRecommender
from .transitions import TransitionsRecommender, _row_normalized, _row_top_k

#: Version of the delta file layout.
DELTA_FORMAT = 1


def _ints(values: Any = ()) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).ravel()


def _floats(values: Any = ()) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).ravel()


@dataclass
class Delta:
    """What changed in a fitted system since training (indices in the grown matrix's rows and columns).

    Per family name: ``factor_*`` (rows and their new user / item vectors) and ``neighbour_*`` (replaced rows of
    the similarity matrix as ``(row, column, value)`` triples, the whole row each time)."""

    user_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    item_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    rows: np.ndarray = field(default_factory=_ints)
    cols: np.ndarray = field(default_factory=_ints)
    values: np.ndarray = field(default_factory=_floats)
    user_factors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    item_factors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    neighbours: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    popularity: np.ndarray | None = None  # the whole grown vector
    consumed_rows: np.ndarray = field(default_factory=_ints)
    consumed_cols: np.ndarray = field(default_factory=_ints)
    item_pop_cols: np.ndarray = field(default_factory=_ints)
    item_pop: np.ndarray = field(default_factory=_floats)
    events: int = 0  # events folded in, all revisions together

    # -- persistence (npz, no pickles) -------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The delta as a compressed ``.npz`` (loaded with ``allow_pickle=False``)."""
        arrays: dict[str, np.ndarray] = {"format": np.array([DELTA_FORMAT]), "events": np.array([self.events])}
        for f in ("user_ids", "item_ids", "rows", "cols", "values", "consumed_rows", "consumed_cols",
                  "item_pop_cols", "item_pop"):
            arrays[f] = np.asarray(getattr(self, f))
        if self.popularity is not None:
            arrays["popularity"] = self.popularity
        for fam, (idx, vec) in self.user_factors.items():
            arrays[f"uf.{fam}.idx"], arrays[f"uf.{fam}.vec"] = idx, vec
        for fam, (idx, vec) in self.item_factors.items():
            arrays[f"if.{fam}.idx"], arrays[f"if.{fam}.vec"] = idx, vec
        for fam, (rows, r, c, v) in self.neighbours.items():
            arrays[f"nb.{fam}.rows"], arrays[f"nb.{fam}.r"] = rows, r
            arrays[f"nb.{fam}.c"], arrays[f"nb.{fam}.v"] = c, v
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Delta:
        """Inverse of :meth:`to_bytes`; ValueError for a file of another layout."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            a = {k: npz[k] for k in npz.files}
        if int(a.get("format", [0])[0]) != DELTA_FORMAT:
            raise ValueError(f"delta format {a.get('format')} is not {DELTA_FORMAT}")
        delta = cls(user_ids=a["user_ids"].astype(str), item_ids=a["item_ids"].astype(str), rows=a["rows"],
                    cols=a["cols"], values=a["values"], popularity=a.get("popularity"),
                    consumed_rows=a["consumed_rows"], consumed_cols=a["consumed_cols"],
                    item_pop_cols=a["item_pop_cols"], item_pop=a["item_pop"], events=int(a["events"][0]))
        for key in a:
            kind, _, rest = key.partition(".")
            fam, _, part = rest.rpartition(".")
            if kind == "uf" and part == "idx":
                delta.user_factors[fam] = (a[key], a[f"uf.{fam}.vec"])
            elif kind == "if" and part == "idx":
                delta.item_factors[fam] = (a[key], a[f"if.{fam}.vec"])
            elif kind == "nb" and part == "rows":
                delta.neighbours[fam] = (a[key], a[f"nb.{fam}.r"], a[f"nb.{fam}.c"], a[f"nb.{fam}.v"])
        return delta


def _keep_last(idx: np.ndarray, vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``idx`` / ``vec`` with each index once, its last occurrence kept."""
    rev = idx[::-1]
    _, first = np.unique(rev, return_index=True)
    keep = len(idx) - 1 - first
    return idx[keep], vec[keep]


def merge(old: Delta | None, new: Delta) -> Delta:
    """One cumulative delta: ``old`` then ``new`` (whose indices already count ``old``'s new users and items)."""
    if old is None:
        return new
    out = Delta(user_ids=np.concatenate([old.user_ids, new.user_ids]),
                item_ids=np.concatenate([old.item_ids, new.item_ids]),
                rows=np.concatenate([old.rows, new.rows]), cols=np.concatenate([old.cols, new.cols]),
                values=np.concatenate([old.values, new.values]),
                popularity=new.popularity if new.popularity is not None else old.popularity,
                consumed_rows=np.concatenate([old.consumed_rows, new.consumed_rows]),
                consumed_cols=np.concatenate([old.consumed_cols, new.consumed_cols]),
                events=old.events + new.events)
    out.item_pop_cols, out.item_pop = _keep_last(np.concatenate([old.item_pop_cols, new.item_pop_cols]),
                                                 np.concatenate([old.item_pop, new.item_pop]))
    for name in ("user_factors", "item_factors"):
        merged = dict(getattr(old, name))
        for fam, (idx, vec) in getattr(new, name).items():
            if fam in merged:
                idx, vec = _keep_last(np.concatenate([merged[fam][0], idx]), np.concatenate([merged[fam][1], vec]))
            merged[fam] = (idx, vec)
        setattr(out, name, merged)
    out.neighbours = dict(old.neighbours)
    for fam, (rows, r, c, v) in new.neighbours.items():
        if fam in out.neighbours:
            o_rows, o_r, o_c, o_v = out.neighbours[fam]
            keep = ~np.isin(o_r, rows)  # a replaced row: the newer one only
            rows = np.union1d(o_rows, rows)
            r, c, v = np.concatenate([o_r[keep], r]), np.concatenate([o_c[keep], c]), np.concatenate([o_v[keep], v])
        out.neighbours[fam] = (rows, r, c, v)
    return out


# -- applying a delta -------------------------------------------------------------------------------
def _pad_rows(array: np.ndarray, extra: int, fill: Any = 0) -> np.ndarray:
    if not extra:
        return array
    pad = [(0, extra)] + [(0, 0)] * (array.ndim - 1)
    return np.pad(array, pad, constant_values=fill)


def _pad_csr(matrix: sparse.csr_matrix, rows: int, cols: int) -> sparse.csr_matrix:
    """``matrix`` with ``rows`` empty rows and ``cols`` empty columns appended (no copy of the entries)."""
    if not rows and not cols:
        return matrix
    indptr = np.concatenate([matrix.indptr, np.full(rows, matrix.indptr[-1], dtype=matrix.indptr.dtype)])
    return sparse.csr_matrix((matrix.data, matrix.indices, indptr),
                             shape=(matrix.shape[0] + rows, matrix.shape[1] + cols))


def _grown_family(model: Any, add_users: int, add_items: int) -> Any:
    """A copy of a fitted family sized for ``add_users`` / ``add_items`` more rows / columns (zeros: no score)."""
    if not add_users and not add_items:
        return copy.copy(model)
    state = dict(model._get_state())
    if isinstance(model, _FactorModel):
        state["user_factors"] = _pad_rows(state["user_factors"], add_users)
        state["item_factors"] = _pad_rows(state["item_factors"], add_items)
    elif isinstance(model, ItemKNNRecommender):
        state = _csr_state(_pad_csr(model.similarity_, add_items, add_items), "similarity")
    elif isinstance(model, PopularityRecommender):
        state["popularity"] = _pad_rows(state["popularity"], add_items)
        if "segment_popularity" in state:
            state["segment_popularity"] = np.pad(state["segment_popularity"], [(0, 0), (0, add_items)])
        if "trend_scores" in state:
            state["trend_scores"] = _pad_rows(state["trend_scores"], add_items)
    elif isinstance(model, EASERecommender):
        state["B"] = np.pad(state["B"], [(0, add_items), (0, add_items)]) if add_items else state["B"]
    elif isinstance(model, Item2VecRecommender):
        state["item_vectors"] = _pad_rows(state["item_vectors"], add_items)
        state["has_vector"] = _pad_rows(state["has_vector"], add_items, False)
    elif isinstance(model, ContentRecommender):
        state = _csr_state(_pad_csr(model.item_vectors_, add_items, 0), "item_vectors")
    elif add_items:
        raise ValueError(f"family {getattr(model, 'family', type(model).__name__)!r} cannot take new items: retrain")
    grown = copy.copy(model)
    grown.__dict__ = {k: v for k, v in model.__dict__.items() if not k.startswith("_")}  # caches: rebuilt
    grown._set_state(state)
    return grown


def _csr_state(matrix: sparse.csr_matrix, prefix: str) -> dict[str, np.ndarray]:
    from .base import csr_state

    return csr_state(prefix, matrix)


def _replace_rows(matrix: sparse.csr_matrix, rows: np.ndarray, r: np.ndarray, c: np.ndarray,
                  v: np.ndarray) -> sparse.csr_matrix:
    """``matrix`` with the rows ``rows`` replaced by the entries ``(r, c, v)``."""
    n = matrix.shape[0]
    keep = np.ones(n, dtype=np.float32)
    keep[rows] = 0.0
    kept = sparse.diags(keep).tocsr() @ matrix
    new = sparse.csr_matrix((v.astype(np.float32), (r, c)), shape=matrix.shape)
    out = sparse.csr_matrix(kept + new, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _grown_tables(tables: Tables, add_users: int, add_items: int, delta: Delta, n_users: int,
                  n_items: int) -> Tables:
    user = _pad_rows(tables.user, add_users, np.nan)
    item = _pad_rows(tables.item, add_items, np.nan)
    if add_items:
        item[-add_items:, -1] = 0.0  # log1p of the column's users, updated below
    if len(delta.item_pop_cols):
        item = item.copy() if item is tables.item else item
        item[delta.item_pop_cols, -1] = delta.item_pop
    indptr, indices = tables.consumed_indptr, tables.consumed_indices
    if indptr is not None and (add_users or len(delta.consumed_rows)):
        old_n = len(indptr) - 1
        consumed = sparse.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                                     shape=(old_n, n_items))
        consumed = _pad_csr(consumed, n_users - old_n, 0)
        if len(delta.consumed_rows):
            consumed = consumed + sparse.csr_matrix(
                (np.ones(len(delta.consumed_rows), dtype=np.float32), (delta.consumed_rows, delta.consumed_cols)),
                shape=(n_users, n_items))
            consumed = sparse.csr_matrix(consumed)
        consumed.sum_duplicates()
        consumed.sort_indices()
        indptr, indices = consumed.indptr.astype(np.int64), consumed.indices.astype(np.int32)
    return Tables(user=user, item=item, item_category=_pad_rows(tables.item_category, add_items, -1),
                  categories=tables.categories, category_keys=tables.category_keys,
                  category_values=tables.category_values,
                  unavailable=_pad_rows(tables.unavailable, add_items, False),
                  consumed_indptr=indptr, consumed_indices=indices,
                  # a new item had no visitors last year: NaN, as for any item without a season
                  season=None if tables.season is None else _pad_rows(tables.season, add_items, np.nan),
                  **_grown_context(tables, add_items), **_grown_session(tables, add_items))


def _grown_session(tables: Tables, add_items: int) -> dict[str, np.ndarray]:
    """The session group's tables with the new items: no sequential rules from or to them yet, no visitors in the
    last day counted; nothing for a system without them."""
    if tables.rules is None:
        return {}
    return {**rules_state(_pad_csr(tables.rules, add_items, add_items)),
            **({"recent_pop": _pad_rows(tables.recent_pop, add_items, 0.0)} if tables.recent_pop is not None else {})}


def _grown_context(tables: Tables, add_items: int) -> dict[str, np.ndarray]:
    """The context tables with a lift of 0 (as usual: what smoothing gives an item with few visitors) for the new
    items; nothing for a system without them."""
    out: dict[str, np.ndarray] = {}
    for name in ("ctx_hour", "ctx_weekend", "ctx_device", "ctx_country"):
        table = getattr(tables, name)
        if table is not None:
            out[name] = _pad_rows(table, add_items, 0.0)
    for name in ("ctx_devices", "ctx_countries"):
        if getattr(tables, name) is not None:
            out[name] = getattr(tables, name)
    return out


def apply_delta(base: Any, delta: Delta) -> Any:
    """A new fitted system: ``base`` (a fitted RecommenderSystem, left unchanged) with ``delta`` applied."""
    base.check_fitted()
    matrix = base.matrix_.grown(delta.user_ids, delta.item_ids, delta.rows, delta.cols, delta.values)
    n_users, n_items = matrix.shape
    add_users, add_items = n_users - base.matrix_.shape[0], n_items - base.matrix_.shape[1]
    families = {}
    for name, model in base.families_.items():
        grown = _grown_family(model, add_users, add_items)
        if name in delta.user_factors or name in delta.item_factors:
            users, items = grown.user_factors_.copy(), grown.item_factors_.copy()
            if name in delta.user_factors:
                idx, vec = delta.user_factors[name]
                users[idx] = vec
            if name in delta.item_factors:
                idx, vec = delta.item_factors[name]
                items[idx] = vec
            grown._set_state({"user_factors": users, "item_factors": items})
        if name in delta.neighbours:
            grown._set_state(_csr_state(_replace_rows(grown.similarity_, *delta.neighbours[name]), "similarity"))
        if name == "popularity" and delta.popularity is not None and isinstance(grown, PopularityRecommender):
            state = grown._get_state()
            state["popularity"] = np.asarray(delta.popularity, dtype=np.float32)
            grown._set_state(state)
        families[name] = grown
    system = copy.copy(base)
    system.__dict__ = {k: v for k, v in base.__dict__.items() if k != "_column_entries_cache"}
    system.matrix_ = matrix
    system.families_ = families
    system.tables_ = _grown_tables(base.tables_, add_users, add_items, delta, n_users, n_items)
    return system


# -- computing a delta --------------------------------------------------------------------------------
@dataclass
class Changes:
    """What :func:`compute_delta` changed: the delta, and the subject ids / item keys whose lists it touched."""

    delta: Delta
    users: list[str]
    items: list[str]


def compute_delta(system: Any, events: pd.DataFrame, max_neighbour_rows: int = 20_000) -> Changes:
    """The delta folding ``events`` (columns of ``pipeline.columns``; subject ids as the system knows them) into
    the fitted ``system``; its indices count the system's current rows and columns."""
    system.check_fitted()
    weights = system.interaction_weights()
    w = events[EVENT].astype(str).map(weights).fillna(0.0).to_numpy(dtype=np.float32)
    used = events.loc[w != 0]
    w = w[w != 0]
    matrix = system.matrix_
    users = used[USER].astype(str).to_numpy()
    items = used[ITEM].astype(str).to_numpy()
    new_users = [u for u in pd.unique(users) if u not in matrix.user_index]
    new_items = [k for k in pd.unique(items[w > 0]) if k not in matrix.item_index]
    user_pos = {u: matrix.shape[0] + i for i, u in enumerate(new_users)}
    item_pos = {k: matrix.shape[1] + i for i, k in enumerate(new_items)}
    rows = np.fromiter((matrix.user_index.get(u, user_pos.get(u, -1)) for u in users), dtype=np.int64, count=len(users))
    cols = np.fromiter((matrix.item_index.get(k, item_pos.get(k, -1)) for k in items), dtype=np.int64, count=len(items))
    ok = (rows >= 0) & (cols >= 0)
    delta = Delta(user_ids=np.asarray(new_users, dtype=str), item_ids=np.asarray(new_items, dtype=str),
                  rows=rows[ok], cols=cols[ok], values=w[ok], events=int(len(events)))
    if not ok.any():
        return Changes(delta, [], [])
    grown = apply_delta(system, delta)
    csr = grown.matrix_.csr
    t_rows = np.unique(rows[ok])
    t_cols = np.unique(cols[ok])
    touched_items = set(t_cols.tolist())
    for name, model in grown.families_.items():
        if isinstance(model, ALSRecommender):
            delta.user_factors[name], delta.item_factors[name] = _als_rows(model, csr, t_rows, t_cols)
        elif isinstance(model, TransitionsRecommender):
            delta.neighbours[name] = _transition_rows(model, used.loc[ok], grown.matrix_)
        elif isinstance(model, ItemKNNRecommender):
            delta.neighbours[name] = _cosine_rows(model, csr, t_cols, max_neighbour_rows)
            touched_items.update(delta.neighbours[name][0].tolist())
        elif isinstance(model, PopularityRecommender):
            added = np.bincount(cols[ok], weights=np.clip(w[ok], 0, None), minlength=csr.shape[1])
            delta.popularity = (model.popularity_ + added).astype(np.float32)
    delta.item_pop_cols = t_cols
    delta.item_pop = np.log1p(np.diff(csr.tocsc()[:, t_cols].indptr)).astype(np.float32)
    consumed = used[EVENT].astype(str).isin(system._consumed_events()).to_numpy() & ok
    delta.consumed_rows, delta.consumed_cols = rows[consumed], cols[consumed]
    keys = grown.matrix_.item_ids
    return Changes(delta, sorted(set(users[ok].tolist())), sorted(str(keys[c]) for c in touched_items))


def _als_rows(model: ALSRecommender, csr: sparse.csr_matrix, t_rows: np.ndarray,
              t_cols: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """New factors of the touched users (solved against the item factors), then of the touched items (against the
    users' factors, the new ones included): one half-step of ALS each, as ``implicit`` does for new data."""
    with _one_blas_thread():
        als = model._implicit()
        als.user_factors = model.user_factors_.copy()
        als.item_factors = model.item_factors_.copy()
        als.partial_fit_users(t_rows.astype(np.int32), csr[t_rows])
        als.partial_fit_items(t_cols.astype(np.int32), csr.T.tocsr()[t_cols])
        users = np.asarray(als.user_factors, dtype=np.float32)[t_rows]
        items = np.asarray(als.item_factors, dtype=np.float32)[t_cols]
    return (t_rows, users), (t_cols, items)


def _triples(matrix: sparse.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    coo = matrix.tocoo()
    return rows, rows[coo.row], coo.col.astype(np.int64), coo.data.astype(np.float32)


def _cosine_rows(model: ItemKNNRecommender, csr: sparse.csr_matrix, t_cols: np.ndarray,
                 max_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cosine neighbours (top ``k``) of the touched items, and the rows of their neighbours with them inserted."""
    csc = csr.tocsc()
    norms = np.sqrt(np.asarray(csc.multiply(csc).sum(axis=0), dtype=np.float64).ravel())
    inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)
    block = sparse.csr_matrix(csc[:, t_cols].T @ csc, dtype=np.float32)  # touched x all items
    block = sparse.csr_matrix(sparse.diags(inv[t_cols]) @ block @ sparse.diags(inv), dtype=np.float32)
    block.setdiag(0)
    block.eliminate_zeros()
    own = _row_top_k(block, model.k)
    # the neighbours' rows: their stored entries, the touched items' entries replaced by the new similarities
    reached = np.setdiff1d(np.unique(block.indices), t_cols)[:max_rows]
    col_keep = np.ones(csr.shape[1], dtype=np.float32)
    col_keep[t_cols] = 0.0
    sim = model.similarity_
    theirs = sparse.csr_matrix(sim[reached] @ sparse.diags(col_keep), dtype=np.float32)
    back = sparse.csr_matrix(block.T.tocsr()[reached], dtype=np.float32)  # (reached, touched)
    spread = sparse.csr_matrix((np.ones(len(t_cols), dtype=np.float32), (np.arange(len(t_cols)), t_cols)),
                               shape=(len(t_cols), csr.shape[1]))
    theirs = _row_top_k(sparse.csr_matrix(theirs + back @ spread, dtype=np.float32), model.k)
    rows = np.concatenate([t_cols, reached])
    return _triples(sparse.vstack([own, theirs]).tocsr(), rows)


def _transition_rows(model: TransitionsRecommender, events: pd.DataFrame,
                     matrix: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Successor rows of the items clicked in ``events``: the trained probabilities blended with the new clicks'
    (each row's new transitions weigh as much as its trained ones when it had any)."""
    n = matrix.shape[1]
    src, dst = [], []
    for seq in item_sessions(events[[USER, ITEM, TIMESTAMP]], matrix):
        seq = np.asarray(seq, dtype=np.int64)
        moved = seq[:-1] != seq[1:]
        src.append(seq[:-1][moved])
        dst.append(seq[1:][moved])
    a = np.concatenate(src) if src else _ints()
    b = np.concatenate(dst) if dst else _ints()
    if not len(a):
        return _ints(), _ints(), _ints(), _floats()
    counts = sparse.csr_matrix((np.ones(len(a), dtype=np.float32), (a, b)), shape=(n, n))
    counts.sum_duplicates()
    rows = np.unique(a)
    merged = _row_normalized(model.similarity_[rows] + _row_normalized(counts[rows]))
    return _triples(_row_top_k(merged, model.k), rows)
