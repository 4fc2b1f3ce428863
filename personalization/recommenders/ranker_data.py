"""The ranker's training examples: candidates, features and labels of the label-part users.

Warm users (known to the fit part) are labelled by the new items they interacted with in the label part; every
label-part session, seen without its user, teaches an anonymous visit: all but its last item form the history, the
last one is the label, exactly how an anonymous visitor is served.

Feedback on served lists (:func:`feedback_rows`) adds what the site showed: every item of a logged list shown in the
label part is a row, positive when the visitor clicked it (or put it in the cart, or bought it) from that list,
negative when it was shown and skipped. Its logged position goes in the position feature, so the ranker attributes
the top positions' extra clicks to the position and not to the items; every candidate at serving takes the top
position (:data:`~.features.SERVING_POSITION`), so none is favoured for where it was shown before. The organic rows
were never shown: their position is missing (NaN). Giving them the serving value instead keeps the organic
validation metric but loses most of what the clicks teach (``benchmarks/feedback.py``, docs/feedback.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..pipeline._util import utc_series
from ..pipeline.columns import CLICKED, EVENT, EXPLORED, ITEM, LIST, POSITION, SESSION, SHOWN_AT, TIMESTAMP, USER
from ..pipeline.interactions import InteractionMatrix
from ..pipeline.split import sessionize
from .base import draw_seed, score_chunks
from .features import Contexts
from .histories import history_rows

#: At most this many users of the label part, and this many negative candidates per user.
MAX_RANKER_USERS = 6000
MAX_NEGATIVES_PER_USER = 50

#: At most this many logged lists teach the ranker (a seeded sample), and this many history items of a visitor
#: unknown to the fit part (their label-part events before the list was shown).
MAX_FEEDBACK_LISTS = 20000
MAX_FEEDBACK_HISTORY = 50
#: The position feature of the organic rows when feedback rows join them: missing, never shown (see the module
#: docstring; ``benchmarks/feedback.py`` also measures the serving value).
ORGANIC_POSITION = np.nan
#: The columns of the feedback frame handed to the ML core.
FEEDBACK_COLUMNS = [LIST, USER, ITEM, POSITION, SHOWN_AT, CLICKED, EXPLORED]

#: ``candidates(user_rows, histories, contexts) -> (candidate item columns (users, width), features (users * width,
#: n))``; ``contexts``: each user's request context (:class:`~.features.Contexts`).
Candidates = Callable[[np.ndarray, sparse.csr_matrix, Contexts], tuple[np.ndarray, np.ndarray]]


def ranker_data(
    matrix: InteractionMatrix,
    label_part: pd.DataFrame,
    weights: Mapping[str, float],
    rng: np.random.Generator,
    candidates: Candidates,
    consumed: sparse.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """``(X, y, groups, info)`` for the ranker: the features of each labelled user's positives and sampled
    negatives among its ``candidates`` (seen items filtered), a group id per user, and sizes / candidate recall.

    ``matrix`` is the fit part's; users with no positive among their candidates teach nothing and are left out.
    ``consumed`` (the fit part's consumed pairs, one row per matrix row) makes it repeat-aware: a warm user's label
    is then any item not consumed before (a viewed item coming back counts), and a session whose last item
    repeats an earlier one teaches too. None: only items new to the user (session) are labels.
    """
    n_items = matrix.shape[1]
    pos_events = label_part.loc[label_part[EVENT].map(lambda t: float(weights.get(t, 0.0)) > 0).to_numpy()]
    cols = matrix.cols_for(pos_events[ITEM].to_numpy())
    rows = matrix.rows_for(pos_events[USER].to_numpy())
    pos_events = pos_events.loc[cols >= 0]
    rows, cols = rows[cols >= 0], cols[cols >= 0]
    # warm users: their fit-part row is the history, their label-part items the labels
    warm_users = np.unique(rows[rows >= 0])
    if len(warm_users) > MAX_RANKER_USERS:
        warm_users = np.sort(rng.choice(warm_users, MAX_RANKER_USERS, replace=False))
    warm_hist = matrix.csr[warm_users]
    # anonymous visitors: every label-part session (of any user, known or not) seen without its user: all but
    # its last item form the history, the last item is the label (how an anonymous visit is served)
    sessions = pos_events.assign(_col=cols)
    if SESSION not in sessions.columns or sessions[SESSION].isna().any():
        sessions = sessionize(sessions.drop(columns=[SESSION], errors="ignore"))
    keys = sessions[USER].astype(str) + "\x1f" + sessions[SESSION].astype(str)
    session_cols, starts, ends = labelled_sessions(keys.to_numpy(), sessions["_col"].to_numpy(),
                                                   repeats=consumed is not None)
    budget = max(MAX_RANKER_USERS - 3 * len(warm_users), MAX_RANKER_USERS // 4)
    if len(starts) > budget:
        pick = np.sort(rng.choice(len(starts), budget, replace=False))
        starts, ends = starts[pick], ends[pick]
    # the context of each row: a warm user's first label-part event, a session's last history event (where it is
    # served from)
    first = label_part.drop_duplicates(USER)
    first_rows = matrix.rows_for(first[USER].to_numpy())
    at_row = pd.Series(np.arange(len(first)), index=first_rows).groupby(level=0).first()
    warm_ctx = Contexts.from_frame(first)[at_row.reindex(warm_users).to_numpy(dtype=np.int64)]
    order = np.argsort(pd.factorize(keys.to_numpy(), sort=True)[0], kind="stable")  # labelled_sessions' grouping
    cold_ctx = Contexts.from_frame(sessions.iloc[order[ends - 2]]) if len(ends) else Contexts.unknown(0)
    contexts = Contexts(*(np.concatenate([a, b]) for a, b in zip(
        (warm_ctx.hour_bucket, warm_ctx.weekend, warm_ctx.device, warm_ctx.country),
        (cold_ctx.hour_bucket, cold_ctx.weekend, cold_ctx.device, cold_ctx.country), strict=True)))
    cold_hist_rows = [session_cols[a : b - 1] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    cold_labels = session_cols[ends - 1].astype(np.int64).tolist()
    cold_hist = history_rows(cold_hist_rows, n_items)
    user_rows = np.concatenate([warm_users, np.full(len(cold_labels), -1)]).astype(np.int64)
    hist = sparse.vstack([warm_hist, cold_hist], format="csr") if len(cold_labels) else warm_hist
    warm_keys = np.unique(rows[rows >= 0] * n_items + cols[rows >= 0])
    seen = matrix.csr[warm_users] if consumed is None else consumed[warm_users]
    seen_keys = np.repeat(warm_users, np.diff(seen.indptr)) * n_items + seen.indices
    warm_keys = warm_keys[np.isin(warm_keys // n_items, warm_users) & ~np.isin(warm_keys, seen_keys)]
    Xs, ys, gs = [], [], []
    found = 0
    sampler = np.random.default_rng(draw_seed(rng))
    for chunk in score_chunks(len(user_rows), n_items):
        cands, features = candidates(user_rows[chunk], hist[chunk], contexts[chunk])
        width = cands.shape[1]
        urows = user_rows[chunk]
        idx = np.arange(chunk.start, chunk.stop)
        valid = cands >= 0
        y = np.isin(urows[:, None] * n_items + cands, warm_keys) & valid & (urows[:, None] >= 0)
        anon = np.flatnonzero(urows < 0)
        if len(anon):
            labels = np.asarray(cold_labels, dtype=np.int64)[idx[anon] - len(warm_users)]
            y[anon] = cands[anon] == labels[:, None]
        found += _sample_examples(features.reshape(len(urows), width, -1), y, valid, idx, sampler, Xs, ys, gs)
    # candidate recall: share of label-part positives (new items of warm users, last items of sessions) proposed
    positives = len(warm_keys) + len(cold_labels)
    info = {"ranker_users": int(len(user_rows)), "warm_users": int(len(warm_users)),
            "anonymous_users": int(len(cold_labels)), "candidate_recall": found / positives if positives else None}
    if not Xs:
        return np.zeros((0, 0), np.float32), np.zeros(0, int), np.zeros(0, int), info
    X = np.concatenate(Xs)
    y = np.concatenate(ys).astype(int)
    groups = np.concatenate(gs)
    info.update({"ranker_rows": int(len(y)), "ranker_positives": int(y.sum())})
    return X, y, groups, info


def labelled_sessions(keys: np.ndarray, cols: np.ndarray,
                      repeats: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions that can teach the ranker an anonymous visit: at least two events, the last item not seen before in
    the session (unless ``repeats``: then a last item coming back teaches too). Returns the item columns grouped
    by session (sessions in sorted key order, events in their given order) and the ``[start, end)`` bounds of the
    qualifying sessions in it; vectorised (no loop over sessions)."""
    codes, _ = pd.factorize(keys, sort=True)
    order = np.argsort(codes, kind="stable")
    codes, cols = codes[order], np.asarray(cols)[order]
    if not len(codes):
        empty = np.zeros(0, dtype=np.int64)
        return cols, empty, empty
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    lengths = ends - starts
    group = np.repeat(np.arange(len(starts)), lengths)
    earlier = np.ones(len(codes), dtype=bool)
    earlier[ends - 1] = False  # every event but the session's last
    repeated = np.zeros(len(starts), dtype=bool)
    repeated[group[earlier & (cols == cols[ends - 1][group])]] = True  # its last item appeared before
    keep = (lengths >= 2) & (repeats | ~repeated)
    return cols, starts[keep], ends[keep]


def feedback_rows(
    matrix: InteractionMatrix,
    feedback: pd.DataFrame,
    label_part: pd.DataFrame,
    weights: Mapping[str, float],
    rng: np.random.Generator,
    candidates: Candidates,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """``(X, y, groups, positions, info)`` of the items shown in logged lists: one row per shown item that is among
    the candidates the stage proposes to that visitor (the ranker never orders anything else), with the features
    of those candidates, ``y`` = clicked, a group id per list (0-based) and the item's logged position.

    ``feedback`` has :data:`FEEDBACK_COLUMNS` (one row per shown item). The visitor's history is their fit-part row
    when ``matrix`` knows them (as for the warm organic rows), else their positive label-part events before the list
    was shown (the session an anonymous visitor is served from); lists of a visitor with neither teach nothing.
    """
    missing = [c for c in FEEDBACK_COLUMNS if c not in feedback.columns]
    if missing:
        raise ValueError(f"feedback lacks column(s) {missing}; expected {FEEDBACK_COLUMNS}")
    n_items = matrix.shape[1]
    info: dict[str, Any] = {"feedback_lists": 0, "feedback_rows": 0, "feedback_clicks": 0,
                            "feedback_explored_rows": 0, "feedback_coverage": None}
    empty = (np.zeros((0, 0), np.float32), np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32), info)
    fb = feedback.assign(_col=matrix.cols_for(feedback[ITEM].astype(str).to_numpy()))
    fb = fb.loc[fb["_col"].to_numpy() >= 0]
    if fb.empty:
        return empty
    lists = fb.groupby(LIST, sort=True, observed=True).agg(user=(USER, "first"), shown_at=(SHOWN_AT, "first"))
    if len(lists) > MAX_FEEDBACK_LISTS:
        lists = lists.iloc[np.sort(rng.choice(len(lists), MAX_FEEDBACK_LISTS, replace=False))]
    rows = matrix.rows_for(lists["user"].astype(str).to_numpy())
    # visitors unknown to the fit part: their positive label-part events before the list, most recent last
    pos_events = label_part.loc[label_part[EVENT].map(lambda t: float(weights.get(t, 0.0)) > 0).to_numpy()]
    pos_cols = matrix.cols_for(pos_events[ITEM].astype(str).to_numpy())
    pos_events = pos_events.assign(_col=pos_cols, _at=_nanoseconds(pos_events[TIMESTAMP])).loc[pos_cols >= 0]
    pos_events = pos_events.sort_values("_at", kind="stable")
    shown_at = _nanoseconds(lists["shown_at"])
    by_user = {str(u): (g["_at"].to_numpy(), g["_col"].to_numpy(dtype=np.int64))
               for u, g in pos_events.loc[pos_events[USER].astype(str).isin(
                   set(lists["user"].astype(str)[rows < 0]))].groupby(USER, observed=True, sort=False)}
    sequences: list[np.ndarray] = []
    keep = np.ones(len(lists), dtype=bool)
    for i in np.flatnonzero(rows < 0):
        times, cols = by_user.get(str(lists["user"].iloc[i]), (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        before = cols[: np.searchsorted(times, shown_at[i], side="left")]
        if not len(before):
            keep[i] = False
        sequences.append(before[-MAX_FEEDBACK_HISTORY:])
    cold_hist = history_rows(sequences, n_items)
    hist = sparse.vstack([matrix.csr[np.where(rows >= 0, rows, 0)], cold_hist], format="csr")
    # row i of the lists: its fit-part row when warm, else its cold history (stacked after the warm rows)
    where = np.where(rows >= 0, np.arange(len(rows)), len(rows) + np.cumsum(rows < 0) - 1)
    lists, rows, where = lists.loc[keep], rows[keep], where[keep]
    hist = hist[where]
    shown = fb.loc[fb[LIST].isin(lists.index)].sort_values([LIST, POSITION], kind="stable")
    list_of = pd.Index(lists.index).get_indexer(shown[LIST])
    Xs, ys, gs, ps, explored = [], [], [], [], 0
    found = 0
    # the context of a list: the time it was shown (its device and country are not logged)
    contexts = Contexts.from_times(utc_series(lists["shown_at"]))
    for chunk in score_chunks(len(rows), n_items):
        cands, features = candidates(rows[chunk], hist[chunk], contexts[chunk])
        width = cands.shape[1]
        X = features.reshape(len(cands), width, -1)
        take = (list_of >= chunk.start) & (list_of < chunk.stop)
        local = list_of[take] - chunk.start
        cols = shown["_col"].to_numpy(dtype=np.int64)[take]
        # each shown item's place among its visitor's candidates (-1: not a candidate)
        hit = cands[local] == cols[:, None]
        at = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
        ok = at >= 0
        found += int(ok.sum())
        Xs.append(X[local[ok], at[ok]])
        ys.append(shown[CLICKED].to_numpy(dtype=bool)[take][ok])
        gs.append(local[ok] + chunk.start)
        ps.append(shown[POSITION].to_numpy(dtype=np.float32)[take][ok])
        explored += int(shown[EXPLORED].to_numpy(dtype=bool)[take][ok].sum())
    y = np.concatenate(ys).astype(int) if ys else np.zeros(0, int)
    info.update({"feedback_lists": int(len(np.unique(np.concatenate(gs)))) if gs else 0,
                 "feedback_rows": int(len(y)), "feedback_clicks": int(y.sum()), "feedback_explored_rows": explored,
                 "feedback_coverage": found / len(shown) if len(shown) else None})
    if not len(y):
        return empty
    return np.concatenate(Xs), y, np.concatenate(gs), np.concatenate(ps), info


def _nanoseconds(times: pd.Series) -> np.ndarray:
    """UTC nanoseconds since the epoch of any timestamps (naive ones are UTC), int64."""
    return utc_series(times).dt.tz_convert(None).astype("datetime64[ns]").to_numpy().view(np.int64)


def with_feedback(
    organic: tuple[np.ndarray, np.ndarray, np.ndarray],
    feedback: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    position_column: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The organic rows ``(X, y, groups)`` and the feedback rows ``(X, y, groups, positions)`` as one training
    set: the position feature holds each feedback row's logged position and :data:`ORGANIC_POSITION` on organic
    rows; feedback groups are numbered after the organic ones."""
    X, y, groups = organic
    fX, fy, fgroups, positions = feedback
    if not len(fy):
        return X, y, groups
    fX = fX.copy()
    fX[:, position_column] = positions
    if not len(y):
        return fX, fy, fgroups
    X = X.copy()
    X[:, position_column] = ORGANIC_POSITION
    offset = int(groups.max()) + 1 if len(groups) else 0
    return np.concatenate([X, fX]), np.concatenate([y, fy]), np.concatenate([groups, fgroups + offset])


#: The session ranker learns from at most this many (visit prefix -> next click) examples (whole visits, a seeded
#: sample), each prefix cut to its last MAX_SESSION_HISTORY clicks; with fewer than MIN_SESSION_EXAMPLES examples
#: from MIN_SESSION_VISITS visits there is no session ranker (the user ranker orders every list).
MAX_SESSION_EXAMPLES = 20000
MAX_SESSION_HISTORY = 50
MIN_SESSION_EXAMPLES = 500
MIN_SESSION_VISITS = 100

#: ``candidates(histories, contexts, sequences) -> (candidate item columns (visits, width), features (visits * width,
#: n))`` of anonymous visits: ``sequences`` are their ordered clicks (item columns, most recent last).
SessionCandidates = Callable[[sparse.csr_matrix, Contexts, list[np.ndarray]], tuple[np.ndarray, np.ndarray]]


def session_ranker_data(
    matrix: InteractionMatrix,
    label_part: pd.DataFrame,
    weights: Mapping[str, float],
    rng: np.random.Generator,
    candidates: SessionCandidates,
    repeats: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """``(X, y, groups, info)`` for the session ranker: every prefix of every label-part visit (seen without its
    user, as an anonymous visitor is served) is one example, its next click the positive among the candidates
    (with at most :data:`MAX_NEGATIVES_PER_USER` sampled negatives); ``groups`` numbers the *visits*, so a visit's
    prefixes stay on one side of the validation split. ``repeats``: a next click on an item of the prefix teaches
    too (else only new items are labels). ``info["skipped"]`` says why there are no rows when there are too few
    examples (:data:`MIN_SESSION_EXAMPLES`, :data:`MIN_SESSION_VISITS`)."""
    n_items = matrix.shape[1]
    pos_events = label_part.loc[label_part[EVENT].map(lambda t: float(weights.get(t, 0.0)) > 0).to_numpy()]
    cols = matrix.cols_for(pos_events[ITEM].to_numpy())
    sessions = pos_events.assign(_col=cols).loc[cols >= 0]
    if SESSION not in sessions.columns or sessions[SESSION].isna().any():
        sessions = sessionize(sessions.drop(columns=[SESSION], errors="ignore"))
    keys = (sessions[USER].astype(str) + "\x1f" + sessions[SESSION].astype(str)).to_numpy()
    grouped, starts, ends = labelled_sessions(keys, sessions["_col"].to_numpy(), repeats=True)
    order = np.argsort(pd.factorize(keys, sort=True)[0], kind="stable")  # labelled_sessions' grouping
    # whole visits in a seeded order until the example budget is spent
    visits = rng.permutation(len(starts))
    lengths = (ends - starts - 1)[visits]
    visits = np.sort(visits[: int(np.searchsorted(np.cumsum(lengths), MAX_SESSION_EXAMPLES, side="right"))])
    prefixes: list[np.ndarray] = []
    labels: list[int] = []
    of_visit: list[int] = []
    at_event: list[int] = []
    for v in visits.tolist():
        a, b = int(starts[v]), int(ends[v])
        for t in range(a + 1, b):
            prefix = grouped[max(a, t - MAX_SESSION_HISTORY):t].astype(np.int64)
            if not repeats and grouped[t] in prefix:
                continue
            prefixes.append(prefix)
            labels.append(int(grouped[t]))
            of_visit.append(v)
            at_event.append(t - 1)
    info: dict[str, Any] = {"session_visits": int(len(np.unique(of_visit))), "session_examples": len(labels)}
    empty = (np.zeros((0, 0), np.float32), np.zeros(0, int), np.zeros(0, int))
    if len(labels) < MIN_SESSION_EXAMPLES or info["session_visits"] < MIN_SESSION_VISITS:
        info["skipped"] = (f"{len(labels)} next clicks in {info['session_visits']} visits of the label part: at least "
                           f"{MIN_SESSION_EXAMPLES} in {MIN_SESSION_VISITS} visits are needed")
        return (*empty, info)
    contexts = Contexts.from_frame(sessions.iloc[order[np.asarray(at_event)]])
    hist = history_rows(prefixes, n_items)
    label_arr = np.asarray(labels, dtype=np.int64)
    visit_arr = np.asarray(of_visit, dtype=np.int64)
    Xs, ys, gs = [], [], []
    found = 0
    sampler = np.random.default_rng(draw_seed(rng))
    for chunk in score_chunks(len(labels), n_items):
        cands, features = candidates(hist[chunk], contexts[chunk], prefixes[chunk])
        width = cands.shape[1]
        valid = cands >= 0
        y = (cands == label_arr[chunk, None]) & valid
        found += _sample_examples(features.reshape(len(cands), width, -1), y, valid, visit_arr[chunk], sampler,
                                  Xs, ys, gs)
    info["session_candidate_recall"] = found / len(labels)
    if not Xs:
        info["skipped"] = "no next click was among its visit's candidates"
        return (*empty, info)
    y_all = np.concatenate(ys).astype(int)
    info.update({"session_rows": int(len(y_all)), "session_positives": int(y_all.sum())})
    return np.concatenate(Xs), y_all, np.concatenate(gs), info


def _sample_examples(X: np.ndarray, y: np.ndarray, valid: np.ndarray, groups: np.ndarray,
                     sampler: np.random.Generator, Xs: list, ys: list, gs: list) -> int:
    """Append each row's positives and at most MAX_NEGATIVES_PER_USER sampled negatives (its group id beside them)
    to ``Xs``, ``ys``, ``gs``; a row without a positive among its candidates teaches nothing about ranking them.
    Returns the number of positives found (candidate recall)."""
    found = 0
    for j in range(len(y)):
        pos = np.flatnonzero(y[j])
        found += len(pos)
        if not len(pos):
            continue
        neg = np.flatnonzero(~y[j] & valid[j])
        if len(neg) > MAX_NEGATIVES_PER_USER:
            neg = sampler.choice(neg, MAX_NEGATIVES_PER_USER, replace=False)
        take = np.concatenate([pos, neg])
        Xs.append(X[j, take])
        ys.append(y[j, take])
        gs.append(np.full(len(take), groups[j]))
    return found
