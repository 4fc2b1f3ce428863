"""Does learning from served lists help? Simulated shop traffic with a known preference model and position-biased
clicks; the ranker trained without feedback, with it, and with it but without the position feature, compared on
later traffic.

Run::

    .venv/bin/python benchmarks/feedback.py [--seeds 3] [--visitors 1500] [--products 300]

The shop is the demo's simulator (``storefront_demo/shop/simulator.py``: visitors with a known taste over the
categories, their organic views, carts and purchases). It never reads recommendations, so this script adds what a
site with recommendation slots sees, with a known click model:

* every product has an *appeal* in [0, 1]; a quarter are duds (appeal 0.05) whatever their organic popularity: items
  people look at on their own but rarely click when they are recommended;
* the true relevance of a product to a visitor is ``taste[visitor, category] / max(taste) * appeal`` (the simulator's
  taste, scaled to 1 for the favourite category);
* a visitor examines position ``k`` (0-based) with probability ``1 / (1 + k)`` and clicks an examined item with
  probability = its relevance: clicks are position-biased.

Timeline (days of the simulated window): a first model, trained on days < 45, serves a list of 10 at the start of
each session of a known visitor during days 45-55, with 10% of the positions explored (a random other item, reason
``exploration``); the clicks join the event stream as ``click`` events (every variant sees them). Then four systems
are trained on days < 55 with the default training parameters: ``without`` (the served lists ignored),
``with feedback`` (``RecommenderSystem.fit(feedback=...)``: clicked items positive, shown-and-skipped negative, the
logged position a feature, 0 when serving: what ``TRAINING["impression_feedback"]`` does), ``no position``
(the same rows with the position feature left out: the ranker must explain the top positions' extra clicks by the
items) and ``organic at top`` (the organic rows given the serving position 0 instead of a missing one). Each serves
one list of 10 to every known visitor active in days 55-60; the table gives the expected clicks per list under the
click model (exact expectation, no sampling noise), NDCG@10 against the true relevance, the share of duds in the
lists, and recall@10 of the items each visitor actually viewed or bought in days 55-60 (organic).
Pure ML core: no database.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import markdown_table, write_json  # noqa: E402
from personalization.pipeline.columns import (  # noqa: E402
    CATEGORY,
    CLICKED,
    EVENT,
    EXPLORED,
    ITEM,
    LIST,
    PRICE,
    TEXT,
    TIMESTAMP,
    USER,
)
from personalization.recommenders import ranker_data  # noqa: E402
from personalization.recommenders.features import SERVING_POSITION  # noqa: E402
from personalization.recommenders.ranker_data import FEEDBACK_COLUMNS  # noqa: E402
from personalization.recommenders.system import RecommenderSystem  # noqa: E402
from storefront_demo.shop.simulator import CATEGORIES, simulate_shop  # noqa: E402

#: What ``personalization_train`` fits with the default TRAINING settings (conf.DEFAULTS).
DEFAULT_PARAMS = {"scaling": "log", "half_life_days": 60.0, "random_state": 42}
DAYS, SERVE_FROM, TRAIN_UNTIL = 60, 45, 55
LIST_LENGTH, EXPLORATION_RATE, DUD_SHARE, DUD_APPEAL = 10, 0.1, 0.25, 0.05
EXAMINE = 1.0 / (1.0 + np.arange(LIST_LENGTH))


class Shop:
    """The simulated shop with its known relevance of every product to every visitor."""

    def __init__(self, seed: int, visitors: int, products: int):
        sim = simulate_shop(n_products=products, n_visitors=visitors, days=DAYS, seed=seed)
        rng = np.random.default_rng(seed + 1000)
        self.start = sim.events["timestamp"].min().floor("D")
        events = sim.events.loc[~sim.events["is_bot"].astype(bool)]
        self.events = pd.DataFrame({USER: "v:" + events["visitor"].astype(str), ITEM: events["item"].astype(str),
                                    EVENT: events["event"].astype(str), TIMESTAMP: events["timestamp"]})
        self.items = pd.DataFrame({ITEM: sim.catalog["sku"].astype(str), CATEGORY: sim.catalog["category"],
                                   PRICE: sim.catalog["price"], TEXT: sim.catalog["name"]})
        appeal = rng.uniform(0.4, 1.0, len(self.items))
        self.dud = rng.random(len(self.items)) < DUD_SHARE
        appeal[self.dud] = DUD_APPEAL
        taste = sim.truth.set_index("visitor")[[f"taste_{c}" for c in CATEGORIES]]
        taste = taste.div(taste.max(axis=1), axis=0)
        self.visitors = pd.Index("v:" + taste.index.astype(str))
        cat = pd.Index(CATEGORIES).get_indexer(self.items[CATEGORY])
        self.relevance = taste.to_numpy()[:, cat] * appeal[None, :]  # (visitors, products)
        self.item_index = pd.Index(self.items[ITEM])
        self.rng = rng

    def day(self, d: float) -> pd.Timestamp:
        return self.start + pd.Timedelta(days=d)

    def rel(self, users: list[str], lists: list[list[str]]) -> np.ndarray:
        """True relevance of each listed item, (lists, LIST_LENGTH), 0 padded."""
        out = np.zeros((len(users), LIST_LENGTH))
        rows = self.visitors.get_indexer(users)
        for i, items in enumerate(lists):
            cols = self.item_index.get_indexer(items[:LIST_LENGTH])
            out[i, : len(cols)] = self.relevance[rows[i], cols]
        return out

    def sessions(self, since: float, until: float) -> pd.DataFrame:
        """The first event of each (visitor, day) in the window: when a list is served."""
        ev = self.events.loc[(self.events[TIMESTAMP] >= self.day(since)) & (self.events[TIMESTAMP] < self.day(until))]
        ev = ev.assign(_day=ev[TIMESTAMP].dt.floor("D"))
        return ev.sort_values(TIMESTAMP).drop_duplicates([USER, "_day"])[[USER, TIMESTAMP]].reset_index(drop=True)


def serve_and_click(shop: Shop, system: RecommenderSystem) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lists served during the feedback window (exploration included) and the clicks on them."""
    sessions = shop.sessions(SERVE_FROM, TRAIN_UNTIL)
    known = set(system.matrix_.user_ids.astype(str))
    sessions = sessions.loc[sessions[USER].isin(known)].reset_index(drop=True)
    lists = system.recommend(sessions[USER].tolist(), n=LIST_LENGTH, filter_seen=True)
    all_items = shop.items[ITEM].to_numpy()
    shown_rows, clicks = [], []
    for i, (user, at) in enumerate(zip(sessions[USER], sessions[TIMESTAMP], strict=True)):
        items = [key for key, _, _ in lists[i]]
        explored = [False] * len(items)
        for k in range(len(items)):
            if shop.rng.random() < EXPLORATION_RATE:
                pick = str(shop.rng.choice(all_items))
                if pick not in items:
                    items[k], explored[k] = pick, True
        rel = shop.rel([user], [items])[0]
        clicked = shop.rng.random(len(items)) < EXAMINE[: len(items)] * rel[: len(items)]
        rec_id = f"r{i}"
        for k, item in enumerate(items):
            shown_rows.append((rec_id, user, item, k, at, bool(clicked[k]), explored[k]))
            if clicked[k]:
                clicks.append((user, item, "click", at + pd.Timedelta(seconds=10 + k)))
    return (pd.DataFrame(shown_rows, columns=FEEDBACK_COLUMNS),
            pd.DataFrame(clicks, columns=[USER, ITEM, EVENT, TIMESTAMP]))


def ndcg(rel: np.ndarray, ideal: np.ndarray) -> np.ndarray:
    discount = 1.0 / np.log2(np.arange(LIST_LENGTH) + 2)
    best = np.sort(ideal, axis=1)[:, ::-1][:, :LIST_LENGTH]
    return (rel * discount).sum(axis=1) / np.maximum((best * discount[: best.shape[1]]).sum(axis=1), 1e-12)


def score(shop: Shop, system: RecommenderSystem, test: pd.DataFrame) -> dict[str, float]:
    """Lists for the visitors active in the test window, scored against the click model and organic events."""
    users = sorted(set(test[USER]) & set(system.matrix_.user_ids.astype(str)))
    lists = [[key for key, _, _ in lst] for lst in system.recommend(users, n=LIST_LENGTH, filter_seen=True)]
    rel = shop.rel(users, lists)
    ideal = shop.relevance[shop.visitors.get_indexer(users)]
    dud = set(shop.items[ITEM][shop.dud])
    truth = test.groupby(USER)[ITEM].agg(set)
    recall = [len(set(lst) & truth[u]) / len(truth[u]) for u, lst in zip(users, lists, strict=True)]
    return {"users": len(users), "clicks_per_list": float((rel * EXAMINE).sum(axis=1).mean()),
            "ndcg": float(ndcg(rel, ideal).mean()),
            "dud_share": float(np.mean([np.mean([i in dud for i in lst]) if lst else 0 for lst in lists])),
            "recall": float(np.mean(recall))}


def run(seed: int, visitors: int, products: int) -> list[dict]:
    shop = Shop(seed, visitors, products)
    started = time.perf_counter()
    first = RecommenderSystem(**DEFAULT_PARAMS).fit(shop.events.loc[shop.events[TIMESTAMP] < shop.day(SERVE_FROM)],
                                                    shop.items)
    shown, clicks = serve_and_click(shop, first)
    events = pd.concat([shop.events, clicks], ignore_index=True).sort_values(TIMESTAMP, kind="stable")
    train = events.loc[events[TIMESTAMP] < shop.day(TRAIN_UNTIL)]
    test = shop.events.loc[(shop.events[TIMESTAMP] >= shop.day(TRAIN_UNTIL))
                           & shop.events[EVENT].isin(["view", "add_to_cart", "purchase"])]
    print(f"seed {seed}: {shown[LIST].nunique()} lists served, {int(shown[CLICKED].sum())} clicks "
          f"({shown[CLICKED].mean():.3f} per item shown, {int(shown[EXPLORED].sum())} explored positions); "
          f"first model {time.perf_counter() - started:.0f} s", flush=True)
    rows = []
    variants = [("without", {}, None, np.nan), ("with feedback", {}, shown, np.nan),
                ("feedback, no position", {"without_features": ["position"]}, shown, np.nan),
                ("feedback, organic at top", {}, shown, SERVING_POSITION)]
    for name, extra, feedback, organic_position in variants:
        started = time.perf_counter()
        ranker_data.ORGANIC_POSITION = organic_position  # the design choice this variant measures
        try:
            system = RecommenderSystem(**DEFAULT_PARAMS, **extra).fit(train, shop.items, feedback=feedback)
        finally:
            ranker_data.ORGANIC_POSITION = np.nan
        fit_s = time.perf_counter() - started
        stage1 = system.metrics_.get("stage1", {})
        rows.append({"seed": seed, "variant": name, **score(shop, system, test), "fit_s": fit_s,
                     "feedback_rows": stage1.get("feedback_rows", 0),
                     "auc": (system.metrics_.get("ranker") or {}).get("validation_auc")})
        print(f"  {name}: {rows[-1]}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--visitors", type=int, default=1500)
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default benchmarks/results/feedback.json)")
    args = parser.parse_args()
    rows = [row for seed in range(1, args.seeds + 1) for row in run(seed, args.visitors, args.products)]
    frame = pd.DataFrame(rows)
    mean = frame.groupby("variant", sort=False).mean(numeric_only=True).reset_index()
    base = mean.set_index("variant").loc["without"]
    mean["clicks_change"] = mean["clicks_per_list"] / base["clicks_per_list"] - 1
    mean["ndcg_change"] = mean["ndcg"] / base["ndcg"] - 1
    columns = [("variant", "ranker trained", None), ("clicks_per_list", "clicks/list", ".4f"),
               ("clicks_change", "vs without", "+.1%"), ("ndcg", "NDCG@10 (true rel.)", ".4f"),
               ("ndcg_change", "vs without", "+.1%"), ("dud_share", "duds in lists", ".3f"),
               ("recall", "recall@10 (organic)", ".4f"), ("feedback_rows", "feedback rows", ",.0f"),
               ("fit_s", "fit s", ".1f")]
    print(f"\nMean over {args.seeds} seeds ({args.visitors} visitors, {args.products} products, {DAYS} days):\n")
    print(markdown_table(columns, mean.to_dict("records")))
    per_seed = frame.pivot(index="seed", columns="variant", values="clicks_per_list")
    print("\nclicks/list per seed:\n")
    print(per_seed.to_string(float_format=lambda v: f"{v:.4f}"))
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    if args.out is None:
        print(f"\nwritten to {write_json('feedback', payload)}")
    else:
        args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
