"""YOOCHOOSE through the ML core: the quality benchmark's session protocol without the database, in minutes.

Run::

    .venv/bin/python benchmarks/session_core.py [--params '{"candidates_per_model": 35}'] [--seed 42]
        [--train-days 2] [--sessions 1000]

For each of the quality benchmark's YOOCHOOSE cutoffs (``benchmarks/quality.py``): the events before it, cleaned as
training cleans them, fit ``RecommenderSystem`` with the parameters ``personalization_train`` uses by default (plus
``--params``), and every next click of the same 1,000 sampled sessions is one ``recommend(history=...)`` call, scored
beside item-kNN and session-kNN fitted on the same training clicks. The quality benchmark's figures come from the
same fit through the app (import, ``personalization_train``, ``personalization.recommend()``) and agree with these
to the third digit; use this one to try a change of the model on three cutoffs in about two minutes, and the quality
benchmark for a figure. ``--train-days D``: the system and the baselines see only the last D days before each
cutoff (how the methods grow with the amount of training data). ``--sessions N``: sample N sessions per day (the
quality benchmark's 1,000) or, with a number above the day's count, score all of them. ``--seed``: how much of a
change is noise (about 0.5% of HR@20).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import quality as Q  # noqa: E402
from benchmarks._common import markdown_table  # noqa: E402
from benchmarks.ablation import DEFAULT_PARAMS, core_ranking, load  # noqa: E402
from personalization.pipeline.clean import clean_events  # noqa: E402
from personalization.recommenders.system import RecommenderSystem  # noqa: E402

METRICS = ("hr@20", "mrr@20", "hr@20 new", "hr@20 repeat")


def run_cutoff(events: pd.DataFrame, items: pd.DataFrame, index: pd.Index, cutoff: pd.Timestamp,
               params: dict[str, Any], train_days: float | None, sessions: int = 1000) -> dict[str, dict[str, float]]:
    """The system's and the baselines' scores on one cutoff's next clicks: method -> metric -> value."""
    spec = Q.SPECS["yoochoose"]
    if train_days is not None:
        events = events.loc[events["timestamp"] >= cutoff - pd.Timedelta(days=train_days)]
    train = events.loc[events["timestamp"] < cutoff]
    fit_events, _ = clean_events(train, known_items=set(items["item"]), now=cutoff)
    split = Q.make_split(events[["user", "item", "timestamp", "value"]], index, spec, cutoff, sessions, Q.SEED)
    system = RecommenderSystem(**{**DEFAULT_PARAMS, **params}).fit(fit_events, items)
    inputs = Q.Inputs(split, index, "session")
    return {"recommend()": Q.score(spec, split, core_ranking(system, spec, split, index)),
            "item-kNN": Q.score(spec, split, Q.item_knn(inputs, split)),
            "SKNN": Q.score(spec, split, Q.sknn(inputs, split))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="{}", help="RecommenderSystem keyword arguments (JSON) over the "
                        "defaults of personalization_train")
    parser.add_argument("--seed", type=int, default=DEFAULT_PARAMS["random_state"])
    parser.add_argument("--train-days", type=float, default=None, help="train on the last D days before each "
                        "cutoff only (default: everything before it)")
    parser.add_argument("--sessions", type=int, default=1000, help="test sessions sampled per day (default: the "
                        "quality benchmark's 1,000)")
    args = parser.parse_args(argv)
    if args.sessions < 1:
        raise SystemExit("--sessions must be at least 1")
    try:
        params = {**json.loads(args.params), "random_state": args.seed}
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--params is not JSON ({exc}); e.g. --params '{{\"candidates_per_model\": 35}}'") from exc
    spec = Q.SPECS["yoochoose"]
    root = Path(os.environ.get("PERSONALIZATION_DATASETS", str(ROOT.parent / "shared" / "datasets")))
    if not (root / spec.folder).exists():
        raise SystemExit(f"{root / spec.folder} not found: set PERSONALIZATION_DATASETS to the datasets folder")
    events, items = load(spec, root / spec.folder)
    index = pd.Index(sorted(events["item"].unique()))
    per_cutoff = []
    for cutoff in spec.cutoffs:
        started = time.perf_counter()
        scores = run_cutoff(events, items, index, pd.Timestamp(cutoff, tz="UTC"), params, args.train_days,
                            args.sessions)
        per_cutoff.append(scores)
        ours, knn = scores["recommend()"], scores["item-kNN"]
        print(f"{cutoff}: HR@20 {ours['hr@20']:.4f} (x{ours['hr@20'] / knn['hr@20']:.3f} of item-kNN), MRR@20 "
              f"{ours['mrr@20']:.4f} (x{ours['mrr@20'] / knn['mrr@20']:.3f}), {time.perf_counter() - started:.0f} s",
              flush=True)
    rows = []
    for method in per_cutoff[0]:
        mean = {m: float(np.mean([s[method][m] for s in per_cutoff])) for m in METRICS}
        ratio = {m: float(np.mean([s[method][m] / s["item-kNN"][m] for s in per_cutoff])) for m in METRICS[:2]}
        rows.append({"method": method, **{m: f"{mean[m]:.4f}" for m in METRICS},
                     **{f"{m} / item-kNN": f"x{ratio[m]:.3f}" for m in METRICS[:2]}})
    days = f"last {args.train_days:g} days" if args.train_days is not None else "all days"
    print(f"\n### YOOCHOOSE, mean of {len(spec.cutoffs)} cutoffs ({days} of training, up to {args.sessions} sessions a "
          f"day, params {params})\n")
    columns = ["method", *METRICS, *(f"{m} / item-kNN" for m in METRICS[:2])]
    print(markdown_table([(c, c, None) for c in columns], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
