"""Ablation of the ranker's feature groups on a validation window: which groups earn their place.

Run::

    .venv/bin/python benchmarks/ablation.py [--datasets online-retail,movielens,yoochoose] [--users 1000]
        [--groups context,item] [--seed 42]

Per dataset: the events before its latest quality-benchmark cutoff (``benchmarks/quality.py``) are the training
data; its last test-window-length is the validation window (the same protocol and metrics as the quality
benchmark: new items of known users for Online Retail and MovieLens, every next click of each session, repeats
included, for YOOCHOOSE). The events are cleaned as training cleans them. One system with the default training
settings is fitted with every feature group, then one per group with that group left out of the ranker
(``RecommenderSystem(without_features=[group])``); the table gives each metric and its change. An opt-in group
(:data:`~personalization.recommenders.features.OPT_IN_GROUPS`: ``context``) is added instead
(``context_features=True``): its row is the change when the ranker also has it. Every validation visitor is served
in the context of their first validation event (a session: of its last input click), with its time and, where the
dataset has one, its country (Online Retail). The test windows the quality benchmark reports are never touched.
Pure ML core: no database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import quality as Q  # noqa: E402
from benchmarks._common import markdown_table  # noqa: E402
from personalization.pipeline.clean import clean_events  # noqa: E402
from personalization.pipeline.datasets import READERS  # noqa: E402
from personalization.recommenders.features import FEATURE_GROUPS, OPT_IN_GROUPS  # noqa: E402
from personalization.recommenders.system import RecommenderSystem  # noqa: E402

#: What ``personalization_train`` fits with the default TRAINING settings (conf.DEFAULTS).
DEFAULT_PARAMS = {"scaling": "log", "half_life_days": 60.0, "random_state": 42}


def load(spec: Q.Spec, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events with event types, items) as the importer and the catalog give them to training."""
    catalog, frame, _ = READERS[spec.fmt](path)
    item = "item" if "item" in frame.columns else "item_id"
    events = pd.DataFrame({"user": frame["user"].astype(str), "item": frame[item].astype(str),
                           "event": frame["event"], "timestamp": pd.to_datetime(frame["timestamp"], utc=True),
                           "value": pd.to_numeric(frame["value"], errors="coerce") if "value" in frame else np.nan})
    if "session" in frame.columns:
        events["session"] = frame["session"].astype(str)
    if "country" in frame.columns:
        events["country"] = frame["country"].astype(str)
    cat = catalog.assign(item=catalog["item_id"].astype(str)).drop_duplicates("item")
    items = pd.DataFrame({"item": cat["item"].to_numpy(), "available": True})
    for col in ("category", "price"):
        if col in cat:
            items[col] = cat[col].to_numpy()
    items["text"] = cat["title"].astype(str).to_numpy() if "title" in cat else ""
    return events.sort_values("timestamp", kind="stable").reset_index(drop=True), items


def request_contexts(spec: Q.Spec, window: pd.DataFrame, split: Q.Split) -> list[dict]:
    """The context each validation prediction is served in: the visitor's first event in the validation ``window``
    (a session: the last click of its history), its time and country when the dataset has one."""
    def context(row: pd.Series) -> dict:
        return {"timestamp": row["timestamp"], **({"country": row["country"]} if "country" in row else {})}

    if spec.kind == "temporal":
        rows = window.groupby("user", sort=False).nth(0).set_index("user")
        return [context(rows.loc[user]) if user in rows.index else {} for user in split.users]
    clicks = {user: frame for user, frame in window.loc[window["user"].isin(set(split.sessions or ()))]
              .groupby("user", sort=False)}
    return [context(clicks[session].iloc[len(history) - 1])
            for session, history in zip(split.sessions or (), split.histories or (), strict=True)]


def core_ranking(system: RecommenderSystem, spec: Q.Spec, split: Q.Split, index: pd.Index,
                 contexts: list[dict] | None = None) -> np.ndarray:
    """The fitted ``system``'s top K for each row of ``split`` (item columns of ``index``, -1 padded): known users as
    themselves, each session prefix as a new visitor with that history."""
    if spec.kind == "temporal":
        recs = system.recommend(split.users, n=Q.K, context=contexts)
    else:
        histories = {f"s{u}": [str(index[c]) for c in h] for u, h in zip(split.users, split.histories, strict=True)}
        recs = system.recommend(list(histories), n=Q.K, histories=histories, context=contexts)
    ranked = np.full((len(split.users), Q.K), -1, dtype=np.int64)
    for r, lst in enumerate(recs):
        cols = index.get_indexer([k for k, _, _ in lst])
        ranked[r, : len(cols)] = cols
    return ranked


def ablate(name: str, spec: Q.Spec, path: Path, n_users: int, groups: list[str] | None = None,
           seed: int = DEFAULT_PARAMS["random_state"]) -> list[dict]:
    events, items = load(spec, path)
    cutoff = max(pd.Timestamp(c, tz="UTC") for c in spec.cutoffs)
    train = events.loc[events["timestamp"] < cutoff]
    validation_start = cutoff - spec.window
    fit_events = train.loc[train["timestamp"] < validation_start]
    fit_events, _ = clean_events(fit_events, known_items=set(items["item"]), now=validation_start)
    index = pd.Index(sorted(events["item"].unique()))
    split = Q.make_split(train[["user", "item", "timestamp", "value"]], index, spec, validation_start, n_users, Q.SEED)
    window = train.loc[train["timestamp"] >= validation_start]
    contexts = request_contexts(spec, window, split)
    rows = []
    for group in (None, *(g for g in FEATURE_GROUPS if groups is None or g in groups)):
        started = time.perf_counter()
        opt_in = group in OPT_IN_GROUPS
        knobs = {"context_features": True} if opt_in else {"without_features": [group] if group else []}
        system = RecommenderSystem(**{**DEFAULT_PARAMS, "random_state": seed}, **knobs).fit(fit_events, items)
        scores = Q.score(spec, split, core_ranking(system, spec, split, index, contexts))
        label = f"+{group} (added)" if opt_in else group or "(none: all groups)"
        rows.append({"dropped": label, **{m: scores[m] for m in Q.headline(spec)},
                     "seconds": time.perf_counter() - started})
        print(f"[{name}] {'with' if opt_in else 'without'} {group}: "
              + ", ".join(f"{m}={scores[m]:.4f}" for m in Q.headline(spec))
              + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(Q.SPECS))
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--groups", default="", help="only these groups (comma-separated; default: all of "
                        "FEATURE_GROUPS) beside the system with every default group")
    parser.add_argument("--seed", type=int, default=DEFAULT_PARAMS["random_state"],
                        help="random_state of every fitted system (another seed: how much of a change is noise)")
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.groups.split(",") if g.strip()] or None
    unknown = sorted(set(groups or ()) - set(FEATURE_GROUPS))
    if unknown:
        raise SystemExit(f"--groups: unknown group(s) {unknown}; choose from {FEATURE_GROUPS}")
    root = Path(os.environ.get("PERSONALIZATION_DATASETS", str(ROOT.parent / "shared" / "datasets")))
    print("## Ablation of the ranker's feature groups (validation window before the latest cutoff)")
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        spec = Q.SPECS[name]
        if not (root / spec.folder).exists():
            raise SystemExit(f"{root / spec.folder} not found: set PERSONALIZATION_DATASETS to the datasets folder")
        rows = ablate(name, spec, root / spec.folder, args.users, groups, args.seed)
        base = rows[0]
        metrics = list(Q.headline(spec))
        table = [{"dropped": r["dropped"], **{m: f"{r[m]:.4f} ({(r[m] / base[m] - 1) * 100:+.1f}%)" if base[m]
                                            else f"{r[m]:.4f}" for m in metrics}} for r in rows]
        print(f"\n### {name}\n")
        print(markdown_table([("dropped", "group left out (+: added)", None)] + [(m, m, None) for m in metrics], table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
