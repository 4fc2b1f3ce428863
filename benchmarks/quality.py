"""Recommendation quality of what a site gets from ``personalization.recommend()``, against tuned baselines.

Run::

    .venv/bin/python benchmarks/quality.py [--datasets online-retail,movielens,yoochoose] [--quick] [--users 1000]
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/quality.py

Data comes from ``$PERSONALIZATION_DATASETS`` (default ``<repo>/../shared/datasets``). Each dataset runs in its own
process with its own database: ``bench_quality_<dataset>`` on the PostgreSQL server of ``BENCH_DATABASE_URL``
(dropped and created; what production uses, COPY extraction included), else an SQLite file in a temporary folder.

Protocol, per dataset (the same events, split and users for every row of the table):

1. ``manage.py personalization_import --format <dataset> <path>``: the project's own importer.
2. For each cutoff, latest first: delete the events at or after the cutoff (serving reads a visitor's stored events,
   which must not include the future), ``manage.py personalization_train --until <cutoff>`` with the DEFAULT
   training settings (the version is made live, forced if the registry keeps an earlier one live), then
   ``personalization.recommend()`` for each test user, uncached (``RECOMMENDATION_CACHE_SECONDS = 0``).
3. Online Retail (purchases, 30-day test windows) and MovieLens (ratings >= 4, 30-day windows): users known before
   the cutoff with items NEW to them in the test window; ``recommend("v:<user>", n=20)``; NDCG@10 and Recall@20.
   YOOCHOOSE (1-day windows): sessions starting in the test window (anonymous: a new visitor each); every next
   click of a session is one prediction, ``recommend(<new visitor>, n=20, history=<the session's clicks before
   it>)``; HR@20 and MRR@20 over all next clicks, and apart for the repeat part (the target is in the history),
   the rest (new items) and the sessions' last clicks alone (one prediction per session).
   At most ``--users`` users (sessions) per cutoff, a seeded sample. Metrics: ``personalization.evaluation.metrics``.
4. Baselines on the same training events (everything before the cutoff): popularity, item-kNN (implicit cosine),
   implicit ALS and EASE on the binary user x item matrix; for sessions also last-click transitions and session
   kNN (SKNN). ALS's factors, regularization and confidence, and EASE's lambda, are chosen on a validation window
   carved from the training data (its last test-window-length, same protocol), then refitted on all training
   data. Temporal datasets exclude the user's training items (the relevant items are new ones); session baselines
   do not (repeats count).
5. Reported: per model the mean and min-max over cutoffs of each metric; the ratio system / best baseline per
   cutoff and of the means; uncached ``recommend()`` latency p50/p99 (in-process, real histories).

``--quick``: Online Retail's last 15 days only, one cutoff (4-day test window), 100 users, a small tuning grid: a
smoke run for CI (``tests/bench/test_quality_quick.py``). Results: ``benchmarks/results/quality.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import database_url, latency_summary, logger, markdown_table  # noqa: E402
from personalization.evaluation import metrics as M  # noqa: E402

K = 20
SEED = 42
ITEM_TYPE = "product"


@dataclass
class Spec:
    """How one dataset is imported, split and scored."""

    fmt: str  # personalization_import --format
    folder: str  # under $PERSONALIZATION_DATASETS
    kind: str  # "temporal" (users, new items) or "session" (next click)
    window: pd.Timedelta  # test (and validation) window length
    cutoffs: list[str]
    min_value: float | None = None  # relevant test events need value >= this (ratings)
    days: tuple[str, str] | None = None  # Online Retail by-day files in this date range only (quick mode)


SPECS: dict[str, Spec] = {
    "online-retail": Spec("online-retail", "online-retail/by-day", "temporal", pd.Timedelta(days=30),
                          ["2011-09-10", "2011-10-10", "2011-11-09"]),
    "movielens": Spec("movielens", "ml-100k", "temporal", pd.Timedelta(days=30),
                      ["1998-01-23", "1998-02-22", "1998-03-24"], min_value=4.0),
    "yoochoose": Spec("yoochoose", "yoochoose-100k", "session", pd.Timedelta(days=1),
                      ["2014-04-05", "2014-04-06", "2014-04-07"]),
}
QUICK = Spec("online-retail", "online-retail/by-day", "temporal", pd.Timedelta(days=4), ["2011-12-06"],
             days=("2011-11-25", "2011-12-09"))

ALS_GRID = [{"factors": f, "regularization": r, "alpha": a}
            for f in (32, 64, 128, 256) for r in (0.01, 0.1, 1.0) for a in (1.0, 10.0)]
EASE_GRID = [2.0, 10.0, 50.0, 200.0, 500.0, 2000.0]
QUICK_ALS_GRID = [{"factors": 32, "regularization": 0.1, "alpha": 1.0}, {"factors": 64, "regularization": 1.0,
                                                                       "alpha": 10.0}]
QUICK_EASE_GRID = [50.0, 500.0]


# -- data and splits (no Django) ----------------------------------------------------------------------------
def read_dataset(spec: Spec, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(catalog, events) as the importer reads them: events with user, item, timestamp (UTC), value as strings."""
    from personalization.pipeline.datasets import READERS

    catalog, frame, _ = READERS[spec.fmt](path)
    item = "item" if "item" in frame.columns else "item_id"
    events = pd.DataFrame({
        "user": frame["user"].astype(str), "item": frame[item].astype(str),
        "timestamp": pd.to_datetime(frame["timestamp"], utc=True),
        "value": pd.to_numeric(frame["value"], errors="coerce") if "value" in frame.columns else np.nan,
    })
    return catalog, events.sort_values("timestamp", kind="stable").reset_index(drop=True)


def fill_catalog(catalog: pd.DataFrame, items: pd.Index) -> None:
    """One ``Item`` row per dataset item, with the reader's title, category and price when it has them."""
    from benchmarks.quality_catalog.models import Item

    info = catalog.assign(item_id=catalog["item_id"].astype(str)).drop_duplicates("item_id").set_index("item_id")
    rows = []
    for key in items:
        row = info.loc[key] if key in info.index else {}
        price = row.get("price") if len(row) else None
        rows.append(Item(key=key, title=str(row.get("title", "") if len(row) else "")[:300],
                         category=str(row.get("category", "") if len(row) else "")[:100],
                         price=None if price is None or pd.isna(price) else float(price)))
    Item.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)


@dataclass
class Split:
    """One evaluation: training events, and the test users with their input and relevant item columns."""

    train: pd.DataFrame
    users: list[str]  # user ids (temporal) or "<session>-<t>": the t first clicks of a session (sessions)
    relevant: sparse.csr_matrix  # users x items
    histories: list[list[int]] | None = None  # sessions: the input clicks (item columns), in order
    repeat: np.ndarray | None = None  # sessions: the target is in the history
    sessions: list[str] | None = None  # sessions: the session of each row
    last: np.ndarray | None = None  # sessions: the target is the session's last click


def make_split(events: pd.DataFrame, items: pd.Index, spec: Spec, cutoff: pd.Timestamp, n_users: int,
               seed: int) -> Split:
    """Training = events before ``cutoff``; test = the window after it, per the dataset's protocol."""
    train = events.loc[events["timestamp"] < cutoff]
    test = events.loc[(events["timestamp"] >= cutoff) & (events["timestamp"] < cutoff + spec.window)]
    rng = np.random.default_rng(seed)
    if spec.kind == "temporal":
        if spec.min_value is not None:
            test = test.loc[test["value"] >= spec.min_value]
        known = set(train["user"].unique())
        seen = set(zip(train["user"], train["item"], strict=True))
        fresh = test.loc[[u in known and (u, i) not in seen for u, i in zip(test["user"], test["item"],
                                                                              strict=True)]]
        users = sorted(fresh["user"].unique())
        if len(users) > n_users:
            users = sorted(rng.choice(users, n_users, replace=False).tolist())
        row = {u: r for r, u in enumerate(users)}
        fresh = fresh.loc[fresh["user"].isin(row)].drop_duplicates(["user", "item"])
        relevant = sparse.csr_matrix(
            (np.ones(len(fresh), np.float32), (fresh["user"].map(row).to_numpy(), items.get_indexer(fresh["item"]))),
            shape=(len(users), len(items)))
        return Split(train, users, relevant)
    # sessions starting in the window, at least two clicks
    starts = events.groupby("user")["timestamp"].min()
    sessions = starts.index[(starts >= cutoff) & (starts < cutoff + spec.window)]
    clicks = test.loc[test["user"].isin(sessions)].groupby("user", sort=True)["item"].apply(list)
    clicks = clicks[clicks.map(len) >= 2]
    users = sorted(clicks.index)
    if len(users) > n_users:
        users = sorted(rng.choice(users, n_users, replace=False).tolist())
    # every next click of a sampled session is one prediction: its clicks before it are the history
    rows, sessions, histories, targets, repeat, last = [], [], [], [], [], []
    for user in users:
        seq = items.get_indexer(clicks[user]).tolist()
        for t in range(1, len(seq)):
            rows.append(f"{user}-{t}")
            sessions.append(user)
            histories.append(seq[:t])
            targets.append(seq[t])
            repeat.append(seq[t] in seq[:t])
            last.append(t == len(seq) - 1)
    relevant = sparse.csr_matrix((np.ones(len(rows), np.float32), (np.arange(len(rows)), targets)),
                                 shape=(len(rows), len(items)))
    return Split(train, rows, relevant, histories, np.array(repeat, dtype=bool), sessions, np.array(last, dtype=bool))


def score(spec: Spec, split: Split, ranked: np.ndarray) -> dict[str, float]:
    """The dataset's metrics of a ranking (users x K item columns, -1 padded)."""
    rel = split.relevant
    if spec.kind == "temporal":
        return {"ndcg@10": M.ndcg_at_k(ranked, rel, 10), "recall@20": M.recall_at_k(ranked, rel, K)}
    hr = M.hit_rate_at_k_per_user(ranked, rel, K)
    mrr = M.mrr_at_k_per_user(ranked, rel, K)
    rep = split.repeat
    out = {"hr@20": float(np.mean(hr)), "mrr@20": float(np.mean(mrr))}
    for part, mask in (("repeat", rep), ("new", ~rep), ("last", split.last)):
        out[f"hr@20 {part}"] = float(np.mean(hr[mask])) if mask.any() else math.nan
        out[f"mrr@20 {part}"] = float(np.mean(mrr[mask])) if mask.any() else math.nan
    out["repeat share"] = float(rep.mean()) if len(rep) else math.nan
    return out


def headline(spec: Spec) -> tuple[str, str]:
    return ("ndcg@10", "recall@20") if spec.kind == "temporal" else ("hr@20", "mrr@20")


# -- baselines ----------------------------------------------------------------------------------------------
class Inputs:
    """The training matrix of a split and its test users' input rows, in the dataset's item columns."""

    def __init__(self, split: Split, items: pd.Index, kind: str):
        self.items_index = items
        train = split.train.drop_duplicates(["user", "item"])
        self.train_users = pd.Index(sorted(train["user"].unique()))
        self.X = sparse.csr_matrix(
            (np.ones(len(train), np.float32),
             (self.train_users.get_indexer(train["user"]), items.get_indexer(train["item"]))),
            shape=(len(self.train_users), len(items)))
        if kind == "temporal":
            rows = self.train_users.get_indexer(split.users)
            self.rows = rows
            self.H = self.X[rows]
            self.filter_seen = True
        else:
            self.rows = None
            h = split.histories or []
            r = np.repeat(np.arange(len(h)), [len(s) for s in h])
            c = np.concatenate([np.asarray(s, np.int64) for s in h]) if h else np.zeros(0, np.int64)
            H = sparse.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(h), len(items)))
            H.data[:] = 1.0
            self.H = H
            self.filter_seen = False


def top_k(scores: np.ndarray, seen: sparse.csr_matrix | None) -> np.ndarray:
    """The K best columns per row (``seen`` entries excluded), best first."""
    scores = np.array(scores, dtype=np.float32)
    if seen is not None:
        r = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        scores[r, seen.indices] = -np.inf
    k = min(K, scores.shape[1] - 1)
    part = np.argpartition(-scores, k, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    ranked = np.take_along_axis(part, order, axis=1)
    ranked[~np.isfinite(np.take_along_axis(scores, ranked, axis=1))] = -1
    return ranked


def _batched(fn, H: sparse.csr_matrix, seen: bool) -> np.ndarray:
    return np.concatenate([top_k(fn(H[lo:lo + 1000]), H[lo:lo + 1000] if seen else None)
                           for lo in range(0, H.shape[0], 1000)] or [np.zeros((0, K), np.int64)])


def popularity(inp: Inputs, _: Split) -> np.ndarray:
    pop = np.asarray(inp.X.sum(axis=0)).ravel()
    return _batched(lambda h: np.tile(pop, (h.shape[0], 1)), inp.H, inp.filter_seen)


def item_knn(inp: Inputs, _: Split) -> np.ndarray:
    from implicit.nearest_neighbours import CosineRecommender

    knn = CosineRecommender(K=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        knn.fit(inp.X, show_progress=False)
    S = knn.similarity.tocsr()
    return _batched(lambda h: (h @ S).toarray(), inp.H, inp.filter_seen)


def als(inp: Inputs, _: Split, factors: int, regularization: float, alpha: float) -> np.ndarray:
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                        iterations=15, random_state=SEED)
        model.fit(inp.X, show_progress=False)
        if inp.rows is not None:
            ids, _ = model.recommend(inp.rows, inp.H, N=K, filter_already_liked_items=True)
        else:
            ids, _ = model.recommend(np.zeros(inp.H.shape[0], np.int64), inp.H, N=K, recalculate_user=True,
                                     filter_already_liked_items=False)
    return ids


def ease_gram(inp: Inputs) -> np.ndarray:
    return (inp.X.T @ inp.X).toarray().astype(np.float64)


def ease(inp: Inputs, _: Split, lam: float, gram: np.ndarray) -> np.ndarray:
    G = gram.copy()
    G[np.diag_indices_from(G)] += lam
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    B[np.diag_indices_from(B)] = 0.0
    B = B.astype(np.float32)
    return _batched(lambda h: h @ B, inp.H, inp.filter_seen)


def transitions(inp: Inputs, split: Split) -> np.ndarray:
    """Last-click transitions: how often each item followed the session's last click in training sessions."""
    t = split.train.sort_values(["user", "timestamp"], kind="stable")
    n = inp.X.shape[1]
    cols = inp.items_index.get_indexer(t["item"])
    same = t["user"].to_numpy()[1:] == t["user"].to_numpy()[:-1]
    T = sparse.csr_matrix((np.ones(int(same.sum()), np.float32), (cols[:-1][same], cols[1:][same])), shape=(n, n))
    pop = np.asarray(inp.X.sum(axis=0)).ravel() * 1e-6  # ties and unseen last clicks: popularity
    last = np.array([s[-1] for s in split.histories or []], np.int64)
    return np.concatenate([top_k(T[last[lo:lo + 1000]].toarray() + pop, None)
                           for lo in range(0, len(last), 1000)] or [np.zeros((0, K), np.int64)])


def sknn(inp: Inputs, _: Split, k: int = 100) -> np.ndarray:
    """Session kNN: items of the k training sessions most similar (cosine of item sets) to the session."""
    X = inp.X
    norms = np.sqrt(np.asarray(X.sum(axis=1)).ravel())
    Xn = sparse.diags(1.0 / np.maximum(norms, 1e-9)) @ X

    def scores(h: sparse.csr_matrix) -> np.ndarray:
        sims = (h @ Xn.T).toarray()
        if sims.shape[1] > k:
            cut = np.partition(sims, -k, axis=1)[:, -k][:, None]
            sims[sims < cut] = 0.0
        return np.asarray((X.T @ sims.T).T)

    return _batched(scores, inp.H, False)


def choose(spec: Spec, events: pd.DataFrame, items: pd.Index, cutoff: pd.Timestamp, n_users: int,
           als_grid: list[dict[str, Any]], ease_grid: list[float], log) -> dict[str, Any]:
    """ALS and EASE parameters with the best headline metrics on the validation window before ``cutoff``."""
    split = make_split(events.loc[events["timestamp"] < cutoff], items, spec, cutoff - spec.window, n_users, SEED)
    inp = Inputs(split, items, spec.kind)
    a, b = headline(spec)

    def value(ranked: np.ndarray) -> float:
        m = score(spec, split, ranked)
        return m[a] + m[b]

    als_scores = [(value(als(inp, split, **p)), i) for i, p in enumerate(als_grid)]
    gram = ease_gram(inp)
    ease_scores = [(value(ease(inp, split, lam, gram)), i) for i, lam in enumerate(ease_grid)]
    best_als = als_grid[max(als_scores)[1]]
    best_ease = ease_grid[max(ease_scores)[1]]
    log(f"    validation ({len(split.users)} users): ALS {best_als}, EASE lambda {best_ease}")
    return {"als": best_als, "ease_lambda": best_ease, "validation_users": len(split.users),
            "als_scores": {str(p): s for (s, _), p in zip(als_scores, als_grid, strict=True)},
            "ease_scores": {str(lam): s for (s, _), lam in zip(ease_scores, ease_grid, strict=True)}}


def run_baselines(spec: Spec, split: Split, items: pd.Index, tuned: dict[str, Any]) -> dict[str, np.ndarray]:
    inp = Inputs(split, items, spec.kind)
    out = {"popularity": popularity(inp, split), "item-kNN (cosine)": item_knn(inp, split)}
    p = tuned["als"]
    out[f"ALS (tuned: f={p['factors']}, reg={p['regularization']:g}, alpha={p['alpha']:g})"] = als(inp, split, **p)
    out[f"EASE (tuned: lambda={tuned['ease_lambda']:g})"] = ease(inp, split, tuned["ease_lambda"], ease_gram(inp))
    if spec.kind == "session":
        out["last-click transitions"] = transitions(inp, split)
        out["SKNN (k=100)"] = sknn(inp, split)
    return out


# -- the system, through Django (worker process) ---------------------------------------------------------------
def system_ranking(spec: Spec, split: Split, items: pd.Index, cutoff: pd.Timestamp) -> tuple[np.ndarray, dict]:
    """``personalization.recommend()`` for each test user (session), uncached; (ranking, serving facts)."""
    import personalization

    prefix = f"{ITEM_TYPE}:"
    ranked = np.full((len(split.users), K), -1, dtype=np.int64)
    seconds, fallbacks, versions = [], {}, set()
    for r, user in enumerate(split.users):
        if spec.kind == "temporal":
            started = time.perf_counter()
            result = personalization.recommend(f"v:{user}", n=K)
        else:
            history = [prefix + str(items[c]) for c in (split.histories or [])[r]]
            started = time.perf_counter()
            result = personalization.recommend(f"v:quality-{cutoff:%Y%m%d}-{user}", n=K, history=history)
        seconds.append(time.perf_counter() - started)
        fallbacks[result.fallback or "model"] = fallbacks.get(result.fallback or "model", 0) + 1
        versions.add(result.model_version)
        keys = [i.item[len(prefix):] if i.item.startswith(prefix) else i.item for i in result.items[:K]]
        cols = items.get_indexer(keys)
        ranked[r, : len(cols)] = cols
    return ranked, {"latency": latency_summary(seconds), "served_by": fallbacks,
                    "model_versions": sorted(v for v in versions if v is not None)}


def train_live(cutoff: pd.Timestamp) -> dict[str, Any]:
    """Drop the events at or after ``cutoff``, run ``personalization_train --until`` and make the version live."""
    from django.core.management import call_command

    from personalization import training
    from personalization.models import Event, ModelVersion

    Event.objects.filter(occurred_at__gte=cutoff.to_pydatetime()).delete()
    started = time.perf_counter()
    call_command("personalization_train", until=cutoff.isoformat(), verbosity=0)
    version = ModelVersion.objects.order_by("-pk").first()
    forced = False
    if version.status != ModelVersion.Status.LIVE:
        version = training.promote(version, force=True)
        forced = True
    return {"version": version.pk, "train_seconds": round(time.perf_counter() - started, 1),
            "promotion_forced": forced, "events_trained": Event.objects.count(),
            "test_metrics": version.test_metrics.get("system", {})}


def worker(name: str, spec: Spec, path: Path, n_users: int, quick: bool, out: Path) -> None:
    """One dataset in this process: import, then per cutoff train, recommend, baselines; JSON to ``out``."""
    import django

    django.setup()
    from django.core.management import call_command

    log = logger(name)
    call_command("migrate", run_syncdb=True, verbosity=0)
    if spec.days is not None:  # a slice of the by-day files, through the same importer
        sliced = Path(tempfile.mkdtemp(prefix="bench-quality-days-"))
        for day in pd.date_range(*spec.days, freq="D"):
            source = path / f"{day:%Y-%m-%d}.csv"
            if source.exists():
                (sliced / source.name).symlink_to(source)
        path = sliced
    started = time.perf_counter()
    call_command("personalization_import", str(path), format=spec.fmt, no_progress=True, verbosity=0)
    import_seconds = round(time.perf_counter() - started, 1)
    catalog, events = read_dataset(spec, path)
    items = pd.Index(sorted(events["item"].unique()))
    fill_catalog(catalog, items)
    log(f"imported {len(events):,} events ({import_seconds}s), {events['user'].nunique():,} users, "
        f"{len(items):,} items")
    als_grid, ease_grid = (QUICK_ALS_GRID, QUICK_EASE_GRID) if quick else (ALS_GRID, EASE_GRID)
    report: dict[str, Any] = {"events": len(events), "items": len(items), "import_seconds": import_seconds,
                              "cutoffs": {}}
    for cutoff in sorted((pd.Timestamp(c, tz="UTC") for c in spec.cutoffs), reverse=True):
        log(f"  cutoff {cutoff:%Y-%m-%d}")
        split = make_split(events, items, spec, cutoff, n_users, SEED)
        trained = train_live(cutoff)
        log(f"    trained version {trained['version']} in {trained['train_seconds']}s"
            + (" (promotion forced)" if trained["promotion_forced"] else ""))
        ranked, serving = system_ranking(spec, split, items, cutoff)
        rows = {"system: recommend()": score(spec, split, ranked)}
        log(f"    system on {len(split.users)} users: "
            + ", ".join(f"{k}={v:.4f}" for k, v in rows["system: recommend()"].items())
            + f"; p50 {serving['latency']['p50_ms']:.1f} ms, p99 {serving['latency']['p99_ms']:.1f} ms")
        tuned = choose(spec, events, items, cutoff, n_users, als_grid, ease_grid, log)
        for label, base in run_baselines(spec, split, items, tuned).items():
            rows[f"baseline: {label.split(' (tuned')[0]}"] = {**score(spec, split, base), "label": label}
        report["cutoffs"][f"{cutoff:%Y-%m-%d}"] = {"users": len(split.users), "rows": rows, "training": trained,
                                                    "sessions": len(set(split.sessions or ())),
                                                    "serving": serving, "tuning": tuned}
    out.write_text(json.dumps(report, default=float))


# -- the parent: one worker per dataset, then the tables ---------------------------------------------------------
def prepare_database(name: str, tmp: Path) -> str:
    """The URL of a fresh database for ``name``: PostgreSQL ``bench_quality_<name>`` or an SQLite file."""
    admin = os.environ.get("BENCH_DATABASE_URL")
    db = "bench_quality_" + name.replace("-", "_")
    if not admin:
        return f"sqlite:///{tmp / (db + '.sqlite3')}"
    import psycopg

    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    return database_url(admin, db)


def _or_minus(value: float | None) -> float:
    return -math.inf if value is None or math.isnan(value) else value


def _ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def summarize(spec: Spec, report: dict[str, Any]) -> dict[str, Any]:
    """Per model the mean, min and max of each metric over cutoffs; system / best baseline per cutoff and of means."""
    cutoffs = report["cutoffs"]
    models = list(next(iter(cutoffs.values()))["rows"])
    metrics = [k for k in next(iter(cutoffs.values()))["rows"][models[0]] if k != "label"]
    table = {}
    for model in models:
        table[model] = {}
        for metric in metrics:
            values = [c["rows"][model][metric] for c in cutoffs.values()]
            finite = [v for v in values if v is not None and not math.isnan(v)]
            table[model][metric] = {"mean": float(np.mean(finite)) if finite else math.nan,
                                    "min": min(finite, default=math.nan), "max": max(finite, default=math.nan)}
    ratios: dict[str, Any] = {"per_cutoff": {}, "of_means": {}}
    baselines = [m for m in models if m.startswith("baseline")]
    for metric in [m for m in metrics if m != "repeat share"]:
        for cut, c in cutoffs.items():
            best = max(baselines, key=lambda m: _or_minus(c["rows"][m][metric]))
            ratios["per_cutoff"].setdefault(cut, {})[metric] = {
                "ratio": _ratio(c["rows"]["system: recommend()"][metric], c["rows"][best][metric]),
                "best_baseline": best}
        best = max(baselines, key=lambda m: _or_minus(table[m][metric]["mean"]))
        ratios["of_means"][metric] = {"ratio": _ratio(table["system: recommend()"][metric]["mean"],
                                                      table[best][metric]["mean"]), "best_baseline": best}
    return {"table": table, "ratios": ratios, "metrics": metrics}


def print_dataset(name: str, spec: Spec, report: dict[str, Any], summary: dict[str, Any]) -> None:
    cutoffs = report["cutoffs"]
    if spec.kind == "session":
        users = ", ".join(f"{c}: {v['users']} next clicks of {v.get('sessions')} sessions" for c, v in cutoffs.items())
    else:
        users = ", ".join(f"{c}: {v['users']} users" for c, v in cutoffs.items())
    print(f"\n### {name} ({len(cutoffs)} cutoff(s); {users})\n")
    metrics = [m for m in summary["metrics"] if m != "repeat share"]
    columns = [("model", "model", None)] + [(m, f"{m} mean (min-max)", None) for m in metrics]
    rows = []
    for model, values in summary["table"].items():
        row = {"model": model}
        for m in metrics:
            v = values[m]
            row[m] = "-" if math.isnan(v["mean"]) else f"{v['mean']:.4f} ({v['min']:.4f}-{v['max']:.4f})"
        rows.append(row)
    print(markdown_table(columns, rows))
    print()
    shown = [*headline(spec), *(["hr@20 new", "mrr@20 new", "hr@20 last", "mrr@20 last"]
                                if spec.kind == "session" else [])]
    for metric in shown:
        r = summary["ratios"]["of_means"][metric]
        per = ", ".join(f"{c} x{v[metric]['ratio']:.2f}" for c, v in summary["ratios"]["per_cutoff"].items())
        print(f"system / best baseline, {metric}: x{r['ratio']:.2f} on the mean (vs {r['best_baseline']}); "
              f"per cutoff: {per}")
    lat = [c["serving"]["latency"] for c in cutoffs.values()]
    print("uncached recommend() latency per cutoff (p50 / p99 ms): "
          + ", ".join(f"{v['p50_ms']:.1f} / {v['p99_ms']:.1f}" for v in lat))
    if "repeat share" in summary["metrics"]:
        share = summary["table"]["system: recommend()"]["repeat share"]["mean"]
        print(f"share of next clicks that go back to an item of the session: {share:.1%}")


def _finite(value: Any) -> Any:
    """NaN and infinities -> None, numpy numbers -> Python numbers, for strict JSON."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=None,
                        help=f"comma-separated, from {', '.join(SPECS)} (default: all; with --quick: online-retail)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: Online Retail's last 15 days, one cutoff, 100 users, a small grid")
    parser.add_argument("--users", type=int, default=None, help="test users (sessions) per cutoff (default 1000)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = Path(os.environ.get("PERSONALIZATION_DATASETS", str(ROOT.parent / "shared" / "datasets")))
    n_users = args.users or (100 if args.quick else 1000)

    def spec_of(name: str) -> Spec:
        if name not in SPECS:
            raise SystemExit(f"unknown dataset {name!r}: choose from {', '.join(SPECS)}")
        return QUICK if args.quick and name == "online-retail" else SPECS[name]

    if args.worker:
        spec = spec_of(args.worker)
        worker(args.worker, spec, root / spec.folder, n_users, args.quick, Path(args.worker_out))
        return 0

    names = [d.strip() for d in (args.datasets or ("online-retail" if args.quick else ",".join(SPECS))).split(",")
             if d.strip()]
    for name in names:
        spec = spec_of(name)
        if not (root / spec.folder).exists():
            raise SystemExit(f"{root / spec.folder} not found: set PERSONALIZATION_DATASETS to the datasets folder")
    log = logger("quality")
    started_all = time.perf_counter()
    result: dict[str, Any] = {"seed": SEED, "quick": args.quick, "users_per_cutoff": n_users, "k": K,
                              "database": "postgresql" if os.environ.get("BENCH_DATABASE_URL") else "sqlite",
                              "datasets": {}}
    print("## Quality: personalization.recommend() with default settings vs tuned baselines")
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        for name in names:
            spec = spec_of(name)
            started = time.perf_counter()
            log(f"{name}: import, {len(spec.cutoffs)} cutoff(s), up to {n_users} users each")
            out = Path(tmp) / f"{name}.json"
            env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings_quality",
                   "BENCH_QUALITY_DATABASE_URL": prepare_database(name, Path(tmp)),
                   "BENCH_QUALITY_MEDIA_ROOT": str(Path(tmp) / f"media-{name}")}
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--worker-out", str(out),
                   "--users", str(n_users)] + (["--quick"] if args.quick else [])
            done = subprocess.run(cmd, cwd=ROOT, env=env)
            if done.returncode != 0:
                raise SystemExit(f"{name}: the worker failed (exit {done.returncode}); see its output above")
            report = json.loads(out.read_text())
            summary = summarize(spec, report)
            report.update(summary, seconds=round(time.perf_counter() - started, 1),
                          cutoff_dates=list(report["cutoffs"]), window_days=spec.window.days)
            result["datasets"][name] = report
            print_dataset(name, spec, report, summary)
    result["seconds"] = round(time.perf_counter() - started_all, 1)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(result), indent=1, allow_nan=False))
    log(f"wrote {path} ({result['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
