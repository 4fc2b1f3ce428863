#!/usr/bin/env python
"""Serving benchmark: what a recommendation costs under gunicorn, next to a bare DRF view and a numpy floor.

    .venv/bin/python benchmarks/serving.py [--quick] [--items 10000,100000] [--requests N]

For each catalog size (items), a fresh catalog (``shop.Product`` rows, 20 categories) and synthetic traffic
(5 events per item: Zipf item popularity, 60% of a visitor's events in their favourite category, anonymous visitors
with 32-hex ids, view / add_to_cart / purchase 85/10/5 over 60 days) are generated with numpy and loaded with
``COPY`` into the PostgreSQL database ``bench_serving``; then one version is trained in this process with
``benchmarks/settings_serving.py``'s configuration (popularity + item-kNN + ALS candidates, 70 per family, gbdt
ranker) and made live. Two gunicorn servers (1 sync worker each, DEBUG off, Redis cache) are started:
``cached`` (the shipped cache) and ``uncached`` (``RECOMMENDATION_CACHE_SECONDS=0``: every request is a miss). One
client, sequential requests (so throughput = 1 / mean latency of one worker), scenarios interleaved in rounds:

* ``bare DRF view``: ``/bench/bare/`` returning a fixed list of 10 items (``benchmarks/urls_serving.py``): baseline.
* ``recommendations, cached``: ``GET recommendations/?n=10``, one returning visitor (signed cookie), cache hits.
* ``recommendations, uncached``: the same on the uncached server, cycling through visitors with a history:
  visitor state from PostgreSQL, candidates from 3 families (~200), gbdt ranking, rules, catalog features.
* ``similar items, uncached``: ``GET items/<key>/similar/?n=10`` cycling through popular items.
* ``product page (2 tags)``: the demo's ``/p/<pk>/`` (``similar_items`` + ``recommended_items``) on the cached
  server, cycling through popular products, one returning visitor (each page view is an action of the visitor,
  which changes its visitor version: the tags are recomputed, as in production).

Beside them, in this process: the numpy floor (the visitor's ALS vector times all item factors + ``argpartition``
of the top 200), ``RecommenderSystem.recommend`` alone, and ``serving.recommend`` uncached, plus a cProfile of
the uncached path at the largest size. Targets (issue): cached within 1.5x of the bare view; uncached with ranking
under 10 ms p50 at 100k items. Results: a markdown table and ``benchmarks/results/serving.json``. The database,
the Redis keys (DB 6, prefix ``bench_serving``), the servers and the temporary folders are removed at the end, also
on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from psycopg import sql  # noqa: E402

from benchmarks._common import (  # noqa: E402
    BROWSER_UA,
    Client,
    GunicornServer,
    database_url,
    finite,
    latency_summary,
    logger,
    manage,
    markdown_table,
    write_json,
)

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = "bench_serving"
REDIS_HOST = "127.0.0.1:6379"
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "6"))  # another database when 6 is in use
PREFIX = "bench_serving"
SEED = 7
DAYS = 60
EVENTS_PER_ITEM = 5
N_CATEGORIES = 20
API = "/api/personalization"
TARGET_CACHED_RATIO = 1.5
TARGET_UNCACHED_P50_MS = 10.0
EVENT_TYPES = np.array([b"view", b"add_to_cart", b"purchase"])
EVENT_COLUMNS = ("event_id", "event_type", "item_key", "visitor_id", "user_id", "occurred_at", "received_at",
                 "value", "recommendation_id", "source", "context")
HEADERS = {"User-Agent": BROWSER_UA, "Accept": "application/json", "Accept-Language": "en-GB"}


log = logger("serving")
db_url = partial(database_url, ADMIN_URL)


@dataclass
class Run:
    args: argparse.Namespace
    static_root: str = ""
    media_root: str = ""
    servers: list[GunicornServer] = field(default_factory=list)
    db_created: bool = False
    failed: bool = False

    def env(self, cache_seconds: int = 300) -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings_serving",
            "DATABASE_URL": f"{db_url(DB_NAME)}?conn_max_age=600",
            "CACHE_URL": f"rediscache://{REDIS_HOST}/{REDIS_DB}",
            "REDIS_URL": f"redis://{REDIS_HOST}/{REDIS_DB}",
            "PERSONALIZATION_COLLECTOR": "database",
            "DEBUG": "False",
            "BENCH_CACHE_PREFIX": PREFIX,
            "BENCH_STREAM_KEY": f"{PREFIX}:events",
            "BENCH_STATIC_ROOT": self.static_root,
            "BENCH_MEDIA_ROOT": self.media_root,
            "BENCH_REC_CACHE_SECONDS": str(cache_seconds),
            "LOG_LEVEL": "WARNING",
            "PERSONALIZATION_LOG_LEVEL": "WARNING",
            "CELERY_BROKER_URL": "",
        }


# --- set-up and clean-up ------------------------------------------------------------------------------------
def admin_execute(query: sql.Composable) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(query)


def delete_redis_keys() -> int:
    client = redis.Redis.from_url(f"redis://{REDIS_HOST}/{REDIS_DB}")
    keys = list(client.scan_iter(match=f"{PREFIX}*", count=10_000))
    deleted = 0
    for i in range(0, len(keys), 10_000):
        deleted += client.unlink(*keys[i:i + 10_000])
    return deleted


def setup(run: Run) -> None:
    admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
    delete_redis_keys()
    admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    run.db_created = True
    run.static_root = tempfile.mkdtemp(prefix="bench-serving-static-")
    run.media_root = tempfile.mkdtemp(prefix="bench-serving-media-")
    env = run.env(cache_seconds=0)  # this process trains and profiles the uncached path
    log("migrating the benchmark database and collecting static files (DEBUG off needs the manifest)")
    manage(["migrate", "--noinput", "-v", "0"], env)
    manage(["collectstatic", "--noinput", "-v", "0"], env)
    os.environ.update(env)
    import django

    django.setup()


def cleanup(run: Run) -> None:
    for server in run.servers:
        try:
            server.stop()
            if not run.failed:
                server.remove_log()
            else:
                log(f"server log kept: {server.log_path}")
        except Exception as exc:  # noqa: BLE001
            log(f"could not stop {server.name}: {exc}")
    run.servers.clear()
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # noqa: BLE001
        pass
    if run.db_created:
        try:
            admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
        except Exception as exc:  # noqa: BLE001
            log(f"could not drop {DB_NAME}: {exc}")
    try:
        delete_redis_keys()
    except Exception as exc:  # noqa: BLE001
        log(f"could not delete the Redis keys: {exc}")
    for folder in (run.static_root, run.media_root):
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


# --- data ------------------------------------------------------------------------------------------------------
def tab_separated(fields: list[np.ndarray]) -> bytes:
    rows = map(b"\t".join, zip(*(f.tolist() for f in fields), strict=True))
    return b"\n".join(rows) + b"\n"


def load_data(n_items: int, seed: int) -> dict[str, Any]:
    """Replace the catalog and the events: ``n_items`` products and ``EVENTS_PER_ITEM * n_items`` events (COPY)."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    n_events = EVENTS_PER_ITEM * n_items
    n_visitors = max(200, n_events // 25)
    with psycopg.connect(db_url(DB_NAME), autocommit=True) as conn:
        conn.execute("TRUNCATE personalization_event, personalization_recommendationlog, "
                     "personalization_modelversion, shop_product, shop_category RESTART IDENTITY CASCADE")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO shop_category (id, name, slug) VALUES (%s, %s, %s)",
                            [(c + 1, f"Category {c}", f"category-{c}") for c in range(N_CATEGORIES)])
        ids = np.arange(1, n_items + 1)
        category = rng.integers(1, N_CATEGORIES + 1, n_items)
        price = rng.lognormal(3.0, 0.8, n_items)
        now = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
        fields = [np.char.encode(ids.astype(str)), np.array([b"SKU-%07d" % i for i in ids]),
                  np.array([b"Product %d" % i for i in ids]), np.full(n_items, b"A product of the benchmark."),
                  np.array([b"%.2f" % p for p in price]), np.char.encode(category.astype(str)),
                  np.full(n_items, b"\\N"), np.full(n_items, b"t"), np.full(n_items, b""),
                  np.full(n_items, now.encode())]
        with conn.cursor() as cur, cur.copy("COPY shop_product (id, sku, name, description, price, category_id, "
                                            "brand_id, in_stock, image_url, created_at) FROM STDIN") as copy:
            copy.write(tab_separated(fields))
        conn.execute("SELECT setval('shop_product_id_seq', %s)", (n_items,))

        # events: Zipf popularity over a random permutation; 60% of a visitor's events in their favourite category
        item_p = 1.0 / np.arange(1, n_items + 1)
        item_p /= item_p.sum()
        by_rank = rng.permutation(n_items)  # rank -> item index
        cat_of = category[by_rank] - 1
        visitor_p = rng.lognormal(0.0, 1.0, n_visitors)
        visitor_p /= visitor_p.sum()
        favourite = rng.integers(0, N_CATEGORIES, n_visitors)
        visitors = rng.choice(n_visitors, n_events, p=visitor_p)
        rank = rng.choice(n_items, n_events, p=item_p)
        # affine events: a popular item (Zipf again) among the favourite category's items
        cat_items = [np.flatnonzero(cat_of == c) for c in range(N_CATEGORIES)]
        affine = rng.random(n_events) < 0.6
        for c in range(N_CATEGORIES):
            sel = affine & (favourite[visitors] == c)
            if sel.any() and len(cat_items[c]):
                p = 1.0 / np.arange(1, len(cat_items[c]) + 1)
                rank[sel] = cat_items[c][rng.choice(len(cat_items[c]), int(sel.sum()), p=p / p.sum())]
        item_index = by_rank[rank]
        kind = rng.choice(3, n_events, p=[0.85, 0.10, 0.05])
        end = np.datetime64(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 3600)), "ms")
        ts = end - rng.integers(1, DAYS * 86400 * 1000, n_events).astype("timedelta64[ms]")
        ts_text = np.datetime_as_string(ts, unit="ms", timezone="UTC").astype("S24")
        hexpairs = np.array([b"%02x" % i for i in range(256)], dtype="S2")
        visitor_ids = hexpairs[rng.integers(0, 256, (n_visitors, 16), dtype=np.uint8)].view("S32").ravel()
        event_id = hexpairs[rng.integers(0, 256, (n_events, 16), dtype=np.uint8)].view("S32").ravel()
        item_key = np.array([b"product:%d" % i for i in ids])
        prices = np.array([b"%.2f" % p for p in price])
        fields = [event_id, EVENT_TYPES[kind], item_key[item_index], visitor_ids[visitors], np.full(n_events, b"\\N"),
                  ts_text, ts_text, np.where(kind > 0, prices[item_index], b"\\N"), np.zeros(n_events, dtype="S1"),
                  np.full(n_events, b"import"), np.full(n_events, b'{"device": "desktop", "country": "GB"}')]
        with conn.cursor() as cur, cur.copy(f"COPY personalization_event ({', '.join(EVENT_COLUMNS)}) "
                                            "FROM STDIN") as copy:
            copy.write(tab_separated(fields))
        conn.execute("VACUUM ANALYZE personalization_event")
        conn.execute("VACUUM ANALYZE shop_product")
    counts = np.bincount(visitors, minlength=n_visitors)
    active = np.argsort(-counts)
    # visitors with a real history (5..300 events): the uncached scenario cycles through them
    mid = [visitor_ids[v].decode() for v in active if 5 <= counts[v] <= 300][:400]
    popular = [int(ids[by_rank[r]]) for r in range(50)]
    return {"items": n_items, "events": n_events, "visitors": n_visitors, "load_s": time.perf_counter() - started,
            "history_visitors": mid, "popular_items": popular}


def train_live() -> dict[str, Any]:
    from personalization.conf import settings
    from personalization.models import ModelVersion
    from personalization.training import train

    started = time.perf_counter()
    version = train(ModelVersion.objects.create(), promote_if_better=True)
    seconds = time.perf_counter() - started
    if version.status != ModelVersion.Status.LIVE:
        raise RuntimeError(f"the trained version is {version.status}: {version.error}")
    system = version.test_metrics.get("system") or {}
    return {"version": version.pk, "train_s": seconds, "families": list(settings.TRAINING["models"]),
            "ranker": settings.TRAINING["ranker"], "candidates_per_model": settings.TRAINING["candidates_per_model"],
            "ndcg@10": system.get("ndcg@10")}


# --- HTTP scenarios --------------------------------------------------------------------------------------------
def signed_cookie(visitor_id: str) -> str:
    from personalization.conf import settings
    from personalization.tracking.identity import _signer

    return f"{settings.VISITOR_COOKIE_NAME}={_signer().sign(visitor_id)}"


@dataclass
class Scenario:
    name: str
    client: Client
    paths: list[str]
    cookies: list[str]
    times: list[float] = field(default_factory=list)
    errors: int = 0
    i: int = 0

    def one(self, record: bool = True) -> None:
        k = self.i
        self.i += 1
        path, cookie = self.paths[k % len(self.paths)], self.cookies[k % len(self.cookies)]
        status, body, _, elapsed = self.client.request("GET", path, headers={"Cookie": cookie})
        if status != 200:
            self.errors += 1
            if self.errors <= 3:
                log(f"{self.name}: HTTP {status} for {path}: {body[:300]!r}")
        elif record:
            self.times.append(elapsed)


def http_scenarios(run: Run, data: dict[str, Any], requests: int, version: int) -> list[Scenario]:
    cached = GunicornServer(env=run.env(300), workers=1, name="cached")
    run.servers.append(cached)
    cached.start(ready_path="/bench/bare/")
    uncached = GunicornServer(env=run.env(0), workers=1, name="uncached")
    run.servers.append(uncached)
    uncached.start(ready_path="/bench/bare/")
    visitors = data["history_visitors"]
    popular = data["popular_items"]
    rec = f"{API}/recommendations/?n=10"
    c1, c2 = Client(cached.port, HEADERS), Client(uncached.port, HEADERS)
    scenarios = [
        Scenario("bare DRF view (baseline)", c1, ["/bench/bare/"], [signed_cookie(visitors[0])]),
        Scenario("recommendations, cached", c1, [rec], [signed_cookie(visitors[0])]),
        Scenario("recommendations, uncached", c2, [rec], [signed_cookie(v) for v in visitors[1:]]),
        Scenario("similar items, uncached", c2, [f"{API}/items/product:{p}/similar/?n=10" for p in popular],
                 [signed_cookie(visitors[0])]),
        Scenario("product page (2 tags)", c1, [f"/p/{p}/" for p in popular[:20]],
                 [signed_cookie(visitors[-1])]),
    ]
    # the served model must be the trained one (else the numbers are a fallback's)
    for client in (c1, c2):
        status, body, _, _ = client.request("GET", rec, headers={"Cookie": signed_cookie(visitors[2])})
        payload = json.loads(body)
        if status != 200 or payload["model_version"] != version or payload["fallback"]:
            raise RuntimeError(f"server on port {client.port} does not serve version {version}: {payload}")
    for s in scenarios:  # warm-up: model load, connections, caches
        for _ in range(20):
            s.one(record=False)
    rounds = 10
    per_round = max(1, requests // rounds)
    for _ in range(rounds):
        for s in scenarios:
            for _ in range(per_round):
                s.one()
    c1.close()
    c2.close()
    for server in (cached, uncached):
        server.stop()
        server.remove_log()
        run.servers.remove(server)
    return scenarios


# --- in-process measurements -------------------------------------------------------------------------------------
def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def in_process(data: dict[str, Any], repeats: int) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    """numpy floor, RecommenderSystem.recommend alone, serving.recommend uncached; cProfile of the latter."""
    from personalization import serving
    from personalization.serving.state import states_from_db
    from personalization.subjects import model_subject

    version_id, system = serving.live_system()
    als = system.families_["als"] if "als" in system.families_ else None
    visitors = [f"v:{v}" for v in data["history_visitors"]]
    rows = []
    floor_info: dict[str, Any] = {}
    if als is not None:
        factors = np.ascontiguousarray(als.item_factors_, dtype=np.float32)
        users = als.user_factors_
        k = 200

        def floor(state=[0]):  # noqa: B006 - a counter
            u = users[state[0] % len(users)]
            state[0] += 1
            scores = factors @ u
            top = np.argpartition(-scores, k)[:k]
            return top[np.argsort(-scores[top])]

        rows.append({"scenario": "numpy floor: ALS dot + argpartition top 200", "where": "in-process",
                     **latency_summary(timed(floor, repeats * 5))})
        floor_info = {"factors": int(factors.shape[1]), "items": int(factors.shape[0])}
    states = states_from_db(visitors[:repeats])
    hist = {s: st.history for s, st in states.items()}

    def system_only(state=[0]):  # noqa: B006
        s = visitors[state[0] % min(len(visitors), repeats)]
        state[0] += 1
        known_as = model_subject(system, s)  # as serving asks: the artifact's pseudonym of the visitor
        system.recommend([known_as], n=50, histories={known_as: hist.get(s) or []} or None)

    system_only()
    rows.append({"scenario": "RecommenderSystem.recommend (candidates + gbdt)", "where": "in-process",
                 **latency_summary(timed(system_only, repeats))})

    def full(state=[0]):  # noqa: B006
        s = visitors[state[0] % len(visitors)]
        state[0] += 1
        result = serving.recommend(s, 10)
        assert result.model_version == version_id and not result.fallback, result

    full()
    rows.append({"scenario": "serving.recommend uncached (state + rank + rules)", "where": "in-process",
                 **latency_summary(timed(full, repeats))})
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        full()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(25)
    return rows, out.getvalue(), floor_info


# --- main ------------------------------------------------------------------------------------------------------
COLUMNS = [("items", "items", ","), ("scenario", "scenario", None), ("where", "where", None),
           ("p50_ms", "p50 ms", ".2f"), ("p99_ms", "p99 ms", ".2f"), ("rps", "req/s", ",.0f"),
           ("vs_bare", "p50 / bare", ".2f"), ("n", "requests", ",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k items only, fewer requests")
    parser.add_argument("--items", default=None, help="comma-separated catalog sizes (default 10000,100000)")
    parser.add_argument("--requests", type=int, default=None, help="measured requests per scenario and size")
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in (args.items or ("10000" if args.quick else "10000,100000")).split(",")]
    requests = args.requests or (200 if args.quick else 1000)
    run = Run(args)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                              "requests_per_scenario": requests, "sizes": {}}
    profile_text = ""
    started = time.perf_counter()
    try:
        setup(run)
        for n_items in sizes:
            log(f"{n_items:,} items: generating and loading {EVENTS_PER_ITEM * n_items:,} events")
            data = load_data(n_items, SEED)
            log(f"loaded in {data['load_s']:.1f} s; training")
            trained = train_live()
            log(f"trained version {trained['version']} in {trained['train_s']:.1f} s "
                f"({'+'.join(trained['families'])}, ranker {trained['ranker']}); serving benchmark")
            scenarios = http_scenarios(run, data, requests, trained["version"])
            size_rows = []
            for s in scenarios:
                summary = latency_summary(s.times)
                mean = sum(s.times) / len(s.times) if s.times else float("nan")
                size_rows.append({"items": n_items, "scenario": s.name, "where": "gunicorn", **summary,
                                  "rps": 1.0 / mean if s.times else None, "n": len(s.times), "errors": s.errors})
            bare = size_rows[0]["p50_ms"]
            for r in size_rows:
                r["vs_bare"] = r["p50_ms"] / bare
            log("in-process: numpy floor, RecommenderSystem.recommend, serving.recommend (+ cProfile)")
            extra, profile, floor_info = in_process(data, 100 if not args.quick else 50)
            for r in extra:
                r.update({"items": n_items, "vs_bare": r["p50_ms"] / bare, "n": None})
            size_rows += extra
            profile_text = profile
            rows += size_rows
            cached = next(r for r in size_rows if r["scenario"] == "recommendations, cached")
            uncached = next(r for r in size_rows if r["scenario"] == "recommendations, uncached")
            report["sizes"][str(n_items)] = {
                "data": {k: data[k] for k in ("items", "events", "visitors", "load_s")}, "training": trained,
                "numpy_floor": floor_info, "rows": [{k: finite(v) for k, v in r.items()} for r in size_rows],
                "targets": {"cached_vs_bare": cached["vs_bare"], "cached_ok": cached["vs_bare"] <= TARGET_CACHED_RATIO,
                            "uncached_p50_ms": uncached["p50_ms"],
                            "uncached_ok": uncached["p50_ms"] < TARGET_UNCACHED_P50_MS},
                "profile_uncached": profile,
            }
            if any(r.get("errors") for r in size_rows):
                run.failed = True
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        run.failed = True
        return 130
    except Exception:
        run.failed = True
        raise
    finally:
        try:  # the recommendation log rows of the in-process runs, before the database goes
            from personalization.serving.log import log_writer

            log_writer.flush()
        except Exception:  # noqa: BLE001
            pass
        cleanup(run)
    report["elapsed_s"] = time.perf_counter() - started
    path = write_json("serving", report)
    print(markdown_table(COLUMNS, rows))
    print()
    for size, info in report["sizes"].items():
        t, tr = info["targets"], info["training"]
        print(f"{int(size):,} items ({info['data']['events']:,} events, {info['data']['visitors']:,} visitors): "
              f"trained {'+'.join(tr['families'])} + {tr['ranker']} ranker, {tr['candidates_per_model']} candidates "
              f"per family, in {tr['train_s']:.0f} s (ndcg@10 {tr['ndcg@10'] or 0:.3f}).")
        print(f"  target cached <= {TARGET_CACHED_RATIO}x bare: {t['cached_vs_bare']:.2f}x "
              f"{'met' if t['cached_ok'] else 'MISSED'}; target uncached p50 < {TARGET_UNCACHED_P50_MS:.0f} ms: "
              f"{t['uncached_p50_ms']:.1f} ms {'met' if t['uncached_ok'] else 'MISSED'}")
    print(f"\ncProfile of serving.recommend uncached at {sizes[-1]:,} items (top by own time, then cumulative):")
    print("\n".join(line for line in profile_text.splitlines() if line.strip())[:6000])
    print(f"\nresults: {path.relative_to(REPO)}; {report['elapsed_s']:.0f} s")
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
