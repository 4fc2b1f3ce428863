"""Recommendation quality of the full two-stage system against each of its families and plain baselines.

Run::

    .venv/bin/python benchmarks/quality.py [--datasets online-retail,movielens,yoochoose] [--quick]

Data comes from ``$PERSONALIZATION_DATASETS`` (default ``/work/shared/datasets``); see its README.

Protocols (every model is ranked in the same process, on the same users, items and relevant sets):

* **Online Retail**: purchases; temporal split with the last 30 days as test. Users: customers known in training
  with at least one purchase of an item they had not bought before in the test window (new items only, since every
  model filters items already bought).
* **MovieLens 100K**: ratings; temporal split with the last 20% of the ratings (in time) as test; relevant = test
  ratings >= 4 of films the user had not rated in training; users known in training (few: ~100, most MovieLens
  users rate in one burst, so expect noise of a few points).
* **YOOCHOOSE 100k**: its own train/test files; next click: for each test session, all clicks but the last are
  the (anonymous) history, the last click is the target (``leave_last_out``).

Baselines: popularity (training purchase counts), raw implicit ALS with default parameters
(``implicit.als.AlternatingLeastSquares()`` under ``threadpool_limits(1, "blas")``), item-kNN (implicit
``CosineRecommender``) and EASE (closed form, l2 = 500), all on the plain count matrix of the training events.

The system's configuration (families and their weights, candidates, ranker, and the blend of the ranker with the
EASE family's order: :data:`BLENDS`) is chosen on a validation window carved from the *training* data only (same
protocol, the last test-window-length of training as validation);
the test window is touched once, by the final models. ``--quick`` skips that search and uses the recorded
choice (:data:`PRESETS`). Results go to ``benchmarks/results/quality.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from personalization.evaluation import metrics as M  # noqa: E402
from personalization.pipeline import datasets as D  # noqa: E402
from personalization.pipeline.columns import ITEM, TEXT, TIMESTAMP, VALUE  # noqa: E402
from personalization.pipeline.interactions import build_interactions  # noqa: E402
from personalization.pipeline.split import leave_last_out, temporal_split  # noqa: E402
from personalization.recommenders.system import RecommenderSystem  # noqa: E402

K = 20
SEED = 42

#: System configurations tried on the validation window (the first is the default system).
CANDIDATE_CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "ease+knn+als": {
        "models": {"ease": {"l2": 200.0}, "itemknn": {"k": 100}, "als": {"factors": 64, "regularization": 0.05,
                                                                         "iterations": 15},
                   "popularity": {}, "item2vec": {"vector_size": 64, "epochs": 10, "sample": 0.0}},
        "candidates_per_model": 50,
    },
    "wide": {
        "models": {"ease": {"l2": 200.0}, "itemknn": {"k": 200}, "als": {"factors": 128, "regularization": 0.05,
                                                                         "iterations": 15},
                   "popularity": {}, "item2vec": {"vector_size": 64, "epochs": 10, "sample": 0.0}, "content": {}},
        "candidates_per_model": 100,
    },
}
#: Final orders tried on the validation window for every configuration (no refit: ``blend``/``anchor`` only act
#: at ranking time): the ranker alone, then its percentile blend with the EASE family's order, down to EASE's order
#: over the system's candidates (blend 0), for when the ranker learned too little from the label part.
BLENDS: list[dict[str, Any]] = [{}] + [{"anchor": "ease", "blend": b} for b in (0.75, 0.5, 0.25, 0.0)]
#: Configuration chosen on the validation window by a full run (used by --quick): (configuration, blend).
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "online-retail": ("wide", {}), "movielens": ("ease+knn+als", {"anchor": "ease", "blend": 0.25}),
    "yoochoose": ("ease+knn+als", {}),
}


def blend_name(config: str, blend: dict[str, Any]) -> str:
    return config if not blend else f"{config}+{blend['anchor']}@{blend['blend']:g}"


# -- data -------------------------------------------------------------------------------------------------
def _normalise(catalog: pd.DataFrame, events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The readers' ``item_id``/``title`` as the ML core's ``item``/``text`` columns."""
    events = events.rename(columns={"item_id": ITEM})
    catalog = catalog.rename(columns={"item_id": ITEM, "title": TEXT})
    return catalog, events


def load(name: str, root: Path) -> dict[str, Any]:
    if name == "online-retail":
        catalog, events, _ = D.read_online_retail(root / "online-retail" / "by-day")
        catalog, events = _normalise(catalog, events)
        train, test = temporal_split(events, test_days=30)
        return {"catalog": catalog, "train": train, "test": test, "weights": {"purchase": 1.0}, "kind": "temporal",
                "valid_days": 30.0}
    if name == "movielens":
        catalog, events, _ = D.read_movielens(root / "ml-100k")
        catalog, events = _normalise(catalog, events)
        train, test = temporal_split(events, test_fraction=0.2)
        days = (events[TIMESTAMP].max() - train[TIMESTAMP].max()).total_seconds() / 86400
        return {"catalog": catalog, "train": train, "test": test, "weights": {"rate": 1.0}, "kind": "temporal",
                "valid_days": days, "min_value": 4.0}
    if name == "yoochoose":
        folder = root / "yoochoose-100k"
        _, train, _ = D.read_yoochoose(folder / "yoochoose-clicks-100k_train_full.txt")
        _, test, _ = D.read_yoochoose(folder / "yoochoose-clicks-100k_test.txt")
        _, train = _normalise(pd.DataFrame({"item_id": []}), train)
        _, test = _normalise(pd.DataFrame({"item_id": []}), test)
        return {"catalog": None, "train": train, "test": test, "weights": {"view": 1.0}, "kind": "session",
                "valid_days": 1.0}
    raise SystemExit(f"unknown dataset {name!r}: choose from online-retail, movielens, yoochoose")


# -- protocol ---------------------------------------------------------------------------------------------
class Task:
    """Users, their training histories and relevant items, in the column space of one item index."""

    def __init__(self, train: pd.DataFrame, test: pd.DataFrame, weights: dict[str, float], kind: str,
                 min_value: float | None = None):
        self.kind = kind
        self.weights = weights
        counts = build_interactions(train, {t: 1.0 for t in weights})
        self.train_matrix = counts  # plain counts: what the baselines train on
        self.item_ids = counts.item_ids
        if kind == "temporal":
            if min_value is not None:
                test = test.loc[test[VALUE] >= min_value]
            truth = build_interactions(test, {t: 1.0 for t in weights}, user_ids=counts.user_ids,
                                       item_ids=counts.item_ids).csr
            truth = (truth - truth.multiply(counts.csr > 0)).tocsr()
            truth.eliminate_zeros()
            rows = np.flatnonzero(np.diff(truth.indptr) > 0)
            self.users = counts.user_ids[rows].tolist()
            self.rows = rows
            self.history = counts.csr[rows]
            self.relevant = truth[rows]
            self.histories = None
        else:
            inputs, targets = leave_last_out(test)
            cols_in = counts.cols_for(inputs[ITEM])
            inputs = inputs.assign(_col=cols_in).loc[cols_in >= 0]
            seqs = inputs.groupby("session", sort=True)["_col"].apply(list)
            targets = targets.set_index("session")[ITEM]
            target_cols = counts.cols_for(targets.reindex(seqs.index).astype(str))
            keep = target_cols >= 0
            seqs, target_cols = seqs[keep], target_cols[keep]
            # the target must not be in the history (every model filters seen items)
            fresh = np.array([t not in s for s, t in zip(seqs, target_cols, strict=True)])
            seqs, target_cols = seqs[fresh], target_cols[fresh]
            self.users = [f"session:{s}" for s in seqs.index]
            self.rows = np.full(len(seqs), -1)
            from personalization.recommenders.histories import history_rows

            self.history = history_rows([np.asarray(s) for s in seqs], len(counts.item_ids))
            self.histories = {u: [str(counts.item_ids[c]) for c in s] for u, s in zip(self.users, seqs, strict=True)}
            self.relevant = sparse.csr_matrix(
                (np.ones(len(target_cols), np.float32), (np.arange(len(target_cols)), target_cols)),
                shape=(len(seqs), len(counts.item_ids)))
        self.item_counts = M.item_counts(counts.csr)

    def score(self, ranked: np.ndarray) -> dict[str, float]:
        rel = self.relevant
        return {
            "ndcg@10": M.ndcg_at_k(ranked, rel, 10),
            "recall@20": M.recall_at_k(ranked, rel, 20),
            "precision@10": M.precision_at_k(ranked, rel, 10),
            "map@10": M.map_at_k(ranked, rel, 10),
            "hit_rate@10": M.hit_rate_at_k(ranked, rel, 10),
            "coverage@20": M.catalog_coverage(ranked, len(self.item_ids), 20),
            "novelty@10": M.novelty(ranked, self.item_counts, self.train_matrix.shape[0], 10),
        }


def _to_columns(recs: list[list[tuple]], item_ids: np.ndarray) -> np.ndarray:
    index = {k: i for i, k in enumerate(item_ids.tolist())}
    ranked = np.full((len(recs), K), -1, dtype=np.int64)
    for u, rec in enumerate(recs):
        cols = [index.get(r[0], -1) for r in rec[:K]]
        ranked[u, : len(cols)] = cols
    return ranked


def run_system(system: RecommenderSystem, task: Task, models: bool = True) -> dict[str, dict[str, float]]:
    """The fitted system and (``models``) each of its families alone, ranked through the system's own API."""
    out = {}
    batch = 2000
    names = ["system"] + (list(system.families_) if models else [])
    for name in names:
        recs = []
        for lo in range(0, len(task.users), batch):
            users = task.users[lo : lo + batch]
            hist = None if task.histories is None else {u: task.histories[u] for u in users}
            if name == "system":
                recs += system.recommend(users, n=K, histories=hist)
            else:
                recs += system.recommend_for_model(name, users, n=K, histories=hist)
        out["system (two-stage)" if name == "system" else f"system:{name}"] = task.score(
            _to_columns(recs, task.item_ids))
    return out


# -- baselines --------------------------------------------------------------------------------------------
def _ease(X: sparse.csr_matrix, l2: float = 500.0) -> np.ndarray:
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices_from(G)] += l2
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    B[np.diag_indices_from(B)] = 0.0
    return B.astype(np.float32)


def _top(scores: np.ndarray, seen: sparse.csr_matrix) -> np.ndarray:
    scores = np.array(scores, dtype=np.float32)
    r = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    scores[r, seen.indices] = -np.inf
    part = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def run_baselines(task: Task) -> dict[str, dict[str, float]]:
    import warnings

    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import CosineRecommender
    from threadpoolctl import threadpool_limits

    X = task.train_matrix.csr
    hist = sparse.csr_matrix(task.history, dtype=np.float32)
    out = {}
    pop = np.asarray(X.sum(axis=0)).ravel()
    out["baseline: popularity"] = task.score(_top(np.tile(pop, (hist.shape[0], 1)), hist))
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(random_state=SEED)
        als.fit(X, show_progress=False)
        anonymous = task.rows < 0
        rows = np.where(anonymous, 0, task.rows)
        ids, _ = als.recommend(rows, hist, N=K, recalculate_user=bool(anonymous.any()))
    out["baseline: implicit ALS (defaults)"] = task.score(ids)
    knn = CosineRecommender()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit's own COO -> CSR conversion notice
        knn.fit(X, show_progress=False)
    ids, _ = knn.recommend(np.arange(hist.shape[0]), hist, N=K)
    out["baseline: item-kNN (implicit cosine)"] = task.score(ids)
    B = _ease(X)
    ranked = np.concatenate([_top(hist[lo : lo + 2000] @ B, hist[lo : lo + 2000])
                             for lo in range(0, hist.shape[0], 2000)])
    out["baseline: EASE (closed form, l2=500)"] = task.score(ranked)
    return out


# -- system selection on a validation window carved from training ----------------------------------------
def make_system(config: dict[str, Any], weights: dict[str, float]) -> RecommenderSystem:
    params = {"event_weights": weights, "random_state": SEED, **config}
    return RecommenderSystem(**params)


def validation_task(data: dict[str, Any]) -> tuple[pd.DataFrame, Task]:
    train = data["train"]
    if data["kind"] == "temporal":
        fit, valid = temporal_split(train, test_days=data["valid_days"])
    else:
        fit, valid = temporal_split(train, test_days=data["valid_days"])
        fit = fit.loc[~fit["session"].isin(valid["session"])]
    return fit, Task(fit, valid, data["weights"], data["kind"], data.get("min_value"))


def choose_config(data: dict[str, Any], catalog, log) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The configuration and blend with the best NDCG@10 + Recall@20 on the validation window."""
    fit, task = validation_task(data)
    scores, choices = {}, {}
    for name, config in CANDIDATE_CONFIGS.items():
        started = time.perf_counter()
        system = make_system(config, data["weights"]).fit(fit, catalog)
        for blend in BLENDS:
            if blend.get("anchor") not in (None, *system.families_):
                continue
            system.set_params(**{"anchor": None, "blend": 1.0, **blend})
            result = run_system(system, task, models=False)["system (two-stage)"]
            label = blend_name(name, blend)
            scores[label], choices[label] = result, (name, blend)
            log(f"    validation {label:<22} ndcg@10={result['ndcg@10']:.4f} recall@20={result['recall@20']:.4f} "
                f"({time.perf_counter() - started:.0f}s)")
    best = max(scores, key=lambda n: scores[n]["ndcg@10"] + scores[n]["recall@20"])
    name, blend = choices[best]
    return name, blend, {n: {"ndcg@10": s["ndcg@10"], "recall@20": s["recall@20"]} for n, s in scores.items()}


# -- main -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="online-retail,movielens,yoochoose")
    parser.add_argument("--quick", action="store_true", help="skip the validation search; use PRESETS")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.json"))
    args = parser.parse_args(argv)
    root = Path(os.environ.get("PERSONALIZATION_DATASETS", "/work/shared/datasets"))

    def log(msg: str) -> None:
        print(msg, flush=True)

    report: dict[str, Any] = {"seed": SEED, "quick": args.quick, "datasets": {}}
    started_all = time.perf_counter()
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        started = time.perf_counter()
        log(f"\n== {name}")
        data = load(name, root)
        catalog = data["catalog"]
        if args.quick:
            (chosen, blend), validation = PRESETS.get(name, ("default", {})), None
        else:
            chosen, blend, validation = choose_config(data, catalog, log)
        log(f"    chosen configuration: {blend_name(chosen, blend)}")
        task = Task(data["train"], data["test"], data["weights"], data["kind"], data.get("min_value"))
        system = make_system({**CANDIDATE_CONFIGS[chosen], **blend}, data["weights"]).fit(data["train"], catalog)
        rows = run_baselines(task)
        rows.update(run_system(system, task))
        baselines = {k: v for k, v in rows.items() if k.startswith("baseline")}
        best_ndcg = max(baselines, key=lambda k: baselines[k]["ndcg@10"])
        best_recall = max(baselines, key=lambda k: baselines[k]["recall@20"])
        full = rows["system (two-stage)"]
        ratio = {
            "ndcg@10": full["ndcg@10"] / baselines[best_ndcg]["ndcg@10"],
            "recall@20": full["recall@20"] / baselines[best_recall]["recall@20"],
            "best_baseline_ndcg@10": best_ndcg,
            "best_baseline_recall@20": best_recall,
        }
        log(f"    users evaluated: {len(task.users)}, items: {len(task.item_ids)}")
        header = f"    {'model':<40}{'NDCG@10':>9}{'Recall@20':>11}{'P@10':>8}{'MAP@10':>8}{'HR@10':>8}{'Cov@20':>8}"
        log(header)
        for model, m in rows.items():
            log(f"    {model:<40}{m['ndcg@10']:>9.4f}{m['recall@20']:>11.4f}{m['precision@10']:>8.4f}"
                f"{m['map@10']:>8.4f}{m['hit_rate@10']:>8.4f}{m['coverage@20']:>8.3f}")
        log(f"    system / best baseline: NDCG@10 x{ratio['ndcg@10']:.3f} (vs {best_ndcg}), "
            f"Recall@20 x{ratio['recall@20']:.3f} (vs {best_recall})")
        report["datasets"][name] = {
            "users": len(task.users), "items": len(task.item_ids), "config": blend_name(chosen, blend),
            "config_params": {**CANDIDATE_CONFIGS[chosen], **blend}, "validation": validation, "results": rows,
            "ratio": ratio,
            "system_metrics": system.metrics_, "seconds": round(time.perf_counter() - started, 1),
        }
        log(f"    ({time.perf_counter() - started:.0f}s)")
    report["seconds"] = round(time.perf_counter() - started_all, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=float))
    log(f"\nwrote {out} ({report['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
