#!/usr/bin/env python
"""Ingestion benchmark: what tracking costs a page, and how fast events get from the API into PostgreSQL.

    .venv/bin/python benchmarks/ingest.py [--events N] [--quick] [--requests N]

Everything runs against real services on this machine, each measured next to a baseline from the same run:

1. Page views: ``GET /p/<pk>/`` served by gunicorn (1 sync worker, DEBUG off) with and without
   ``TrackingMiddleware`` (``benchmarks/settings_nomw.py``), sequential requests from one returning visitor
   (cookies kept), interleaved in rounds so drift hits both alike. p50/p99 and their ratio; the view events
   stored must equal the pages served with the middleware (database collector, and Redis collector + flush).
2. ``POST /api/personalization/events/`` in batches of 500 distinct events from 2 client threads against
   gunicorn with 2 sync workers: events/s end to end, then the rows in the Event table must equal the events
   sent ("lost: 0", else exit code 1). Once with the database collector, once with the Redis collector
   (accept rate, then ``RedisCollector().flush()`` draining into PostgreSQL, and the combined rate).
3. Baseline: psycopg ``COPY`` of the very rows the database path stored into ``bench_raw_events``
   (``LIKE personalization_event INCLUDING ALL``: same columns and indexes), one connection, one transaction.

The benchmark creates the PostgreSQL database ``bench_ingest`` (dropped at the end), uses Redis DB 5 with keys
under ``bench_ingest`` (deleted at the end), and a temporary ``collectstatic`` folder; it cleans up on errors
and Ctrl-C too. Results: a markdown table on stdout and ``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
import redis  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks._common import (  # noqa: E402
    BROWSER_UA,
    Client,
    GunicornServer,
    cookie_header,
    cookies_from,
    database_url,
    finite,
    latency_summary,
    logger,
    manage,
    markdown_table,
    write_json,
)

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/test")
DB_NAME = "bench_ingest"
REDIS_HOST = "127.0.0.1:6379"
REDIS_DB = 5
PREFIX = "bench_ingest"  # every Redis key this benchmark writes starts with it
STREAM_KEY = f"{PREFIX}:events"
EVENTS_PATH = "/api/personalization/events/"
BATCH = 500
CLIENTS = 2
API_WORKERS = 2
WARMUP_PAGES = 200
ROUNDS = 10
TRACKING = "personalization.middleware.TrackingMiddleware"
EVENT_COLUMNS = ("event_id", "event_type", "item_key", "visitor_id", "user_id", "occurred_at", "received_at",
                 "value", "recommendation_id", "source", "context")
TARGET_MIDDLEWARE = 0.05
TARGET_API_RATE = 30_000

BROWSER_HEADERS = {"User-Agent": BROWSER_UA, "Accept-Language": "en-GB,en;q=0.9", "Accept": "text/html"}


log = logger("")
db_url = partial(database_url, ADMIN_URL)


@dataclass
class Run:
    """What the benchmark created, so ``cleanup`` can remove exactly that."""

    args: argparse.Namespace
    static_root: str = ""
    servers: list[GunicornServer] = field(default_factory=list)
    db_created: bool = False
    django_ready: bool = False
    failed: bool = False  # keep the server logs to look at

    def env(self, collector: str = "database", settings_module: str = "benchmarks.settings_bench") -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": f"{db_url(DB_NAME)}?conn_max_age={self.args.conn_max_age}",
            "CACHE_URL": f"rediscache://{REDIS_HOST}/{REDIS_DB}",
            "REDIS_URL": f"redis://{REDIS_HOST}/{REDIS_DB}",
            "PERSONALIZATION_COLLECTOR": collector,
            "DEBUG": "False",
            "BENCH_STREAM_KEY": STREAM_KEY,
            "BENCH_CACHE_PREFIX": PREFIX,
            "BENCH_STATIC_ROOT": self.static_root,
            "LOG_LEVEL": "WARNING",
            "PERSONALIZATION_LOG_LEVEL": "WARNING",
            "CELERY_BROKER_URL": "",
        }

    def server(self, name: str, env: dict[str, str], workers: int) -> GunicornServer:
        server = GunicornServer(env=env, workers=workers, name=name)
        self.servers.append(server)
        server.start(ready_path=EVENTS_PATH)  # GET -> 405: the app is loaded, and nothing is recorded
        return server

    def stop(self, server: GunicornServer) -> None:
        server.stop()
        if not self.failed:
            server.remove_log()


# --- set-up and clean-up ------------------------------------------------------------------------------------
def admin_execute(query: sql.Composable) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(query)


def bench_connect() -> psycopg.Connection:
    return psycopg.connect(db_url(DB_NAME), autocommit=True)


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(f"redis://{REDIS_HOST}/{REDIS_DB}")


def delete_redis_keys() -> int:
    client = redis_client()
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{PREFIX}*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted


def drop_database() -> None:
    admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))


def setup(run: Run) -> list[int]:
    drop_database()  # a run killed with SIGKILL may have left it
    delete_redis_keys()
    admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    run.db_created = True
    run.static_root = tempfile.mkdtemp(prefix="bench-ingest-static-")
    env = run.env()
    log("migrating the benchmark database and collecting static files (DEBUG off needs the manifest)")
    manage(["migrate", "--noinput", "-v", "0"], env)
    manage(["collectstatic", "--noinput", "-v", "0"], env)
    # This process talks to the same database (seeding, Redis flush): configure Django like the servers.
    os.environ.update(env)
    import django

    django.setup()
    run.django_ready = True
    from storefront_demo.shop.models import Category, Product

    category = Category.objects.create(name="Benchmark gifts", slug="benchmark-gifts")
    Product.objects.bulk_create(
        Product(sku=f"BENCH-{i:04d}", name=f"Benchmark gift {i}", description="A gift used by the benchmark. " * 8,
                price=Decimal("9.99") + i, category=category, in_stock=True)
        for i in range(50)
    )
    return list(Product.objects.order_by("pk").values_list("pk", flat=True))


def cleanup(run: Run) -> None:
    for server in run.servers:
        try:
            server.stop()
            if not run.failed:
                server.remove_log()
            elif server.log_path:
                log(f"server log kept: {server.log_path}")
        except Exception as exc:  # noqa: BLE001 - keep cleaning up
            log(f"could not stop {server.name}: {exc}")
    if run.django_ready:
        from django.db import connections

        connections.close_all()
    if run.db_created:
        try:
            drop_database()
        except Exception as exc:  # noqa: BLE001
            log(f"could not drop database {DB_NAME}: {exc}")
    try:
        delete_redis_keys()
    except Exception as exc:  # noqa: BLE001
        log(f"could not delete Redis keys {PREFIX}*: {exc}")
    if run.static_root:
        shutil.rmtree(run.static_root, ignore_errors=True)


# --- workload ------------------------------------------------------------------------------------------------
EVENT_MIX = [("view", 60), ("click", 15), ("impression", 10), ("add_to_cart", 8), ("dwell", 4), ("purchase", 3)]


def make_batches(total: int, pks: list[int], seed: int) -> list[tuple[bytes, int]]:
    """JSON bodies of ``{"events": [...]}`` with distinct event ids and valid, varied payloads."""
    rng = random.Random(seed)
    types = [t for t, _ in EVENT_MIX]
    weights = [w for _, w in EVENT_MIX]
    now = datetime.now(timezone.utc)
    bodies = []
    for start in range(0, total, BATCH):
        events = []
        for _ in range(min(BATCH, total - start)):
            event_type = rng.choices(types, weights)[0]
            pk = rng.choice(pks)
            event: dict[str, Any] = {
                "event": event_type,
                "item": f"product:{pk}",
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "timestamp": (now - timedelta(seconds=rng.randint(0, 6 * 3600))).isoformat().replace("+00:00", "Z"),
                "context": {"page": f"/p/{pk}/", "tz": "Europe/London", "slot": "product-page"},
            }
            if event_type in {"purchase", "add_to_cart"}:
                event["value"] = round(rng.uniform(5, 200), 2)
            elif event_type == "dwell":
                event["value"] = rng.randint(1, 300)
            if event_type == "click" and rng.random() < 0.5:
                event["recommendation_id"] = uuid.UUID(int=rng.getrandbits(128)).hex
            events.append(event)
        bodies.append((json.dumps({"events": events}, separators=(",", ":")).encode(), len(events)))
    return bodies


def event_count(where: str = "TRUE", params: tuple = ()) -> int:
    with bench_connect() as conn:
        return conn.execute(f"SELECT count(*) FROM personalization_event WHERE {where}", params).fetchone()[0]


def truncate_events() -> None:
    with bench_connect() as conn:
        conn.execute("TRUNCATE personalization_event")


def flush_redis() -> tuple[int, float]:
    """Drain the Redis buffer into PostgreSQL with the library's flush; (rows written, seconds)."""
    from personalization.tracking.collectors import RedisCollector

    collector = RedisCollector()
    start = time.perf_counter()
    written = 0
    while collector.pending():
        written += collector.flush()
    return written, time.perf_counter() - start


# --- 1. middleware overhead ------------------------------------------------------------------------------------
def bench_pages(run: Run, pks: list[int]) -> list[dict[str, Any]]:
    requests = run.args.requests
    variants = [  # (key, label, collector, settings module)
        ("none", "page GET /p/<pk>/ without TrackingMiddleware (baseline)", "database", "benchmarks.settings_nomw"),
        ("database", "page + TrackingMiddleware, database collector", "database", "benchmarks.settings_bench"),
        ("redis", "page + TrackingMiddleware, Redis collector (+flush)", "redis", "benchmarks.settings_bench"),
    ]
    log(f"page views: 3 gunicorn servers (1 sync worker each), {WARMUP_PAGES} warm-up + {requests} requests each")
    servers = {key: run.server(f"page-{key}", run.env(collector, module), 1) for key, _, collector, module in variants}
    clients: dict[str, Client] = {}
    served = dict.fromkeys(servers, 0)
    visitor: dict[str, str] = {}
    latencies: dict[str, list[float]] = {key: [] for key in servers}
    seconds = dict.fromkeys(servers, 0.0)

    def get(key: str, i: int) -> float:
        status, _, _, elapsed = clients[key].request("GET", f"/p/{pks[i % len(pks)]}/")
        if status != 200:
            raise RuntimeError(f"GET /p/ on {key} returned {status}")
        served[key] += 1
        return elapsed

    for key, server in servers.items():
        client = Client(server.port, BROWSER_HEADERS)
        status, _, response, _ = client.request("GET", f"/p/{pks[0]}/")
        if status != 200:
            raise RuntimeError(f"GET /p/{pks[0]}/ returned {status}:\n{server.log_tail()}")
        served[key] += 1
        jar = cookies_from(response)  # a returning visitor: the visitor and CSRF cookies come back
        if key != "none" and "pvid" not in jar:
            raise RuntimeError(f"the {key} server set no visitor cookie; is the middleware tracking?")
        visitor[key] = jar.get("pvid", "").split(":", 1)[0]
        client.headers["Cookie"] = cookie_header(jar)
        clients[key] = client
        for i in range(WARMUP_PAGES):
            get(key, i)

    per_round = max(1, requests // ROUNDS)
    order = list(servers)
    with tqdm(total=per_round * ROUNDS * len(order), unit="req", desc="pages", disable=not sys.stderr.isatty()) as bar:
        for r in range(ROUNDS):
            for key in order[r % len(order):] + order[:r % len(order)]:  # rotate who goes first
                start = time.perf_counter()
                for i in range(per_round):
                    latencies[key].append(get(key, r * per_round + i))
                seconds[key] += time.perf_counter() - start
                bar.update(per_round)
    for client in clients.values():
        client.close()
    for server in servers.values():
        run.stop(server)  # graceful: the last request's after-response recording completes

    stored = {"database": event_count("source = 'middleware' AND visitor_id = %s", (visitor["database"],))}
    flushed, _ = flush_redis()
    stored["redis"] = event_count("source = 'middleware' AND visitor_id = %s", (visitor["redis"],))
    base = latency_summary(latencies["none"])
    rows = []
    for key, label, _, _ in variants:
        summary = latency_summary(latencies[key])
        n = len(latencies[key])
        row: dict[str, Any] = {
            "path": label,
            "count": n,
            "unit": "requests",
            "seconds": seconds[key],
            "rate": n / seconds[key],
            **summary,
            "ratio": summary["p50_ms"] / base["p50_ms"],
            "p99_ratio": summary["p99_ms"] / base["p99_ms"],
            "served_total": served[key],
        }
        if key != "none":
            row["stored_views"] = stored[key]
            row["lost"] = served[key] - stored[key]
        rows.append(row)
    log(f"views stored: database {stored['database']}/{served['database']}, redis {stored['redis']}/"
        f"{served['redis']} (flushed {flushed})")
    return rows


# --- 2. API ingestion ------------------------------------------------------------------------------------------
def post_all(port: int, bodies: list[tuple[bytes, int]], desc: str) -> dict[str, Any]:
    """POST every body from CLIENTS threads; return timing, per-request latencies and the API's counts."""
    lock = threading.Lock()
    next_index = iter(range(len(bodies)))
    latencies: list[float] = []
    counts = {"accepted": 0, "duplicates": 0, "dropped": 0}
    errors: list[str] = []
    total = sum(n for _, n in bodies)
    bar = tqdm(total=total, unit="ev", unit_scale=True, desc=desc, disable=not sys.stderr.isatty())
    headers = {**BROWSER_HEADERS, "Content-Type": "application/json", "Accept": "application/json"}

    def worker() -> None:
        client = Client(port, headers)  # no cookie: every batch is a new visitor
        try:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                body, n = bodies[index]
                status, data, _, elapsed = client.request("POST", EVENTS_PATH, body)
                with lock:
                    latencies.append(elapsed)
                    if status == 202:
                        result = json.loads(data)
                        for k in counts:
                            counts[k] += int(result.get(k, 0))
                    else:
                        errors.append(f"HTTP {status}: {data[:300]!r}")
                    bar.update(n)
        except Exception as exc:  # noqa: BLE001 - reported, and the row count will show it
            with lock:
                errors.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=worker, name=f"client-{i}") for i in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    bar.close()
    return {"seconds": seconds, "latencies": latencies, "counts": counts, "errors": errors, "sent": total}


def bench_api(run: Run, pks: list[int], collector: str, seed: int) -> dict[str, Any]:
    truncate_events()
    bodies = make_batches(run.args.events, pks, seed)
    server = run.server(f"api-{collector}", run.env(collector), API_WORKERS)
    # Warm both workers up (URL resolver, DRF, first connection) with bodies that fail validation: nothing stored.
    warm = Client(server.port, {**BROWSER_HEADERS, "Content-Type": "application/json"})
    for _ in range(20):
        warm.request("POST", EVENTS_PATH, b'{"events":[{"event":"benchmark-warm-up"}]}')
    warm.close()
    log(f"API -> {collector} collector: {len(bodies)} batches of {BATCH}, {CLIENTS} clients, {API_WORKERS} workers")
    result = post_all(server.port, bodies, f"api/{collector}")
    run.stop(server)
    if result["errors"]:
        log(f"{len(result['errors'])} failed requests, first: {result['errors'][0]}")
    return result


def api_row(label: str, result: dict[str, Any], rows_stored: int | None) -> dict[str, Any]:
    sent = result["sent"]
    row = {
        "path": label,
        "count": sent,
        "unit": "events",
        "seconds": result["seconds"],
        "rate": sent / result["seconds"],
        **latency_summary(result["latencies"]),
        "accepted": result["counts"]["accepted"],
        "dropped": result["counts"]["dropped"],
        "duplicates": result["counts"]["duplicates"],
        "failed_requests": len(result["errors"]),
    }
    if rows_stored is not None:
        row["stored_rows"] = rows_stored
        row["lost"] = sent - rows_stored
    return row


# --- 3. COPY baseline ------------------------------------------------------------------------------------------
def fetch_stored_rows() -> list[tuple]:
    cols = sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))
    with bench_connect() as conn:
        return conn.execute(sql.SQL("SELECT {} FROM personalization_event ORDER BY id").format(cols)).fetchall()


def bench_copy(rows: list[tuple]) -> dict[str, Any]:
    cols = sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))
    with bench_connect() as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_events")
        conn.execute("CREATE TABLE bench_raw_events (LIKE personalization_event INCLUDING ALL)")
    log(f"baseline: COPY {len(rows):,} rows into bench_raw_events (same columns and indexes)")
    ctx = EVENT_COLUMNS.index("context")
    with psycopg.connect(db_url(DB_NAME)) as conn:
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY bench_raw_events ({}) FROM STDIN").format(cols)) as copy:
            for row in rows:
                copy.write_row((*row[:ctx], Jsonb(row[ctx]), *row[ctx + 1:]))
        conn.commit()
        seconds = time.perf_counter() - start
        stored = conn.execute("SELECT count(*) FROM bench_raw_events").fetchone()[0]
    return {"path": "baseline: psycopg COPY, 1 connection, 1 transaction", "count": len(rows), "unit": "events",
            "seconds": seconds, "rate": len(rows) / seconds, "ratio": 1.0, "stored_rows": stored,
            "lost": len(rows) - stored}


# --- main --------------------------------------------------------------------------------------------------------
COLUMNS = [
    ("path", "path", None),
    ("count_label", "events or requests", None),
    ("seconds", "seconds", ",.2f"),
    ("rate_label", "rate", None),
    ("p50_ms", "p50 ms", ",.2f"),
    ("p99_ms", "p99 ms", ",.2f"),
    ("ratio", "ratio to baseline", ".3f"),
    ("lost", "lost", None),
]


class _PagesDone(Exception):
    """--pages-only: leave the run after the page benchmark (cleaning up as usual)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per API run (default 200,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 events and 500 page requests")
    parser.add_argument("--requests", type=int, default=2000, help="measured page requests per server")
    parser.add_argument("--conn-max-age", type=int, default=600,
                        help="CONN_MAX_AGE of the servers' DATABASE_URL (0: a new connection per request)")
    parser.add_argument("--pages-only", action="store_true",
                        help="only the middleware page benchmark (prints its rows; results file untouched)")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.requests = 20_000, 500
    if args.events < BATCH or args.requests < ROUNDS:
        parser.error(f"--events must be >= {BATCH} and --requests >= {ROUNDS}")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`cmd &`)
    run = Run(args)
    load_before = os.getloadavg()
    try:
        pks = setup(run)
        pages = bench_pages(run, pks)
        if args.pages_only:
            rows = pages
            raise _PagesDone

        db = bench_api(run, pks, "database", seed=1)
        db_row = api_row("API POST -> database collector -> PostgreSQL", db, event_count())
        stored_rows = fetch_stored_rows()

        rd = bench_api(run, pks, "redis", seed=2)
        accept_row = api_row("API POST -> Redis collector (accepted into Redis)", rd, None)
        log("flushing the Redis buffer into PostgreSQL with RedisCollector().flush()")
        flushed, flush_seconds = flush_redis()
        stored = event_count()
        flush_row = {"path": "RedisCollector().flush() -> PostgreSQL", "count": flushed, "unit": "events",
                     "seconds": flush_seconds, "rate": flushed / flush_seconds if flush_seconds else None}
        combined_seconds = rd["seconds"] + flush_seconds
        combined_row = {"path": "API POST -> Redis -> flush -> PostgreSQL (combined)", "count": rd["sent"],
                        "unit": "events", "seconds": combined_seconds, "rate": rd["sent"] / combined_seconds,
                        "stored_rows": stored, "lost": rd["sent"] - stored}

        baseline = bench_copy(stored_rows)
        del stored_rows
        for row in (db_row, accept_row, flush_row, combined_row):
            row["ratio"] = row["rate"] / baseline["rate"] if row.get("rate") else None
        rows = [*pages, baseline, db_row, accept_row, flush_row, combined_row]
    except _PagesDone:
        pass
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BaseException:
        run.failed = True
        raise
    finally:
        log("cleaning up: servers, database, Redis keys, static files")
        cleanup(run)

    for row in rows:
        row["count_label"] = f"{row['count']:,} {row['unit']}"
        per = "req/s" if row["unit"] == "requests" else "ev/s"
        row["rate_label"] = f"{row['rate']:,.0f} {per}" if row.get("rate") else "-"
        if "lost" not in row:
            row["lost"] = None

    overhead = pages[1]["ratio"] - 1.0
    overhead_redis = pages[2]["ratio"] - 1.0
    if args.pages_only:
        print()
        print(markdown_table(COLUMNS, rows))
        print(f"\nmiddleware adds {overhead:+.1%} to the page's p50 with the database collector, "
              f"{overhead_redis:+.1%} with Redis; lost: {sum(row['lost'] or 0 for row in rows)}")
        return 1 if any(row["lost"] for row in rows) else 0
    lost_total = sum(row["lost"] or 0 for row in rows)
    failed_requests = db["errors"] + rd["errors"]
    checks = {
        "middleware_p50_overhead": overhead,
        "middleware_p50_overhead_redis": overhead_redis,
        "middleware_target_met": overhead < TARGET_MIDDLEWARE,
        "api_database_rate": db_row["rate"],
        "api_target_met": db_row["rate"] >= TARGET_API_RATE,
        "lost": lost_total,
        "failed_requests": len(failed_requests),
    }
    print()
    print(f"## Ingestion benchmark ({platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()})")
    print(f"gunicorn sync workers on 127.0.0.1, DEBUG off, CONN_MAX_AGE={args.conn_max_age}, Redis cache; "
          f"pages: 1 worker, {args.requests} sequential requests per server after {WARMUP_PAGES} warm-up; "
          f"API: {API_WORKERS} workers, {CLIENTS} client threads, batches of {BATCH}.")
    load_after = os.getloadavg()
    print(f"load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load_before)}, after: "
          f"{'/'.join(f'{x:.2f}' for x in load_after)} (other processes on the machine skew absolute numbers)")
    print("ratio: page rows = p50 / p50 without the middleware; event rows = rate / COPY rate.")
    print()
    print(markdown_table(COLUMNS, rows))
    print()
    print(f"middleware adds {overhead:+.1%} to the page's p50 with the database collector, {overhead_redis:+.1%} "
          f"with Redis (p99: {pages[1]['p99_ratio'] - 1:+.1%} / {pages[2]['p99_ratio'] - 1:+.1%}); "
          f"target < {TARGET_MIDDLEWARE:.0%}: {'met' if checks['middleware_target_met'] else 'MISSED'}")
    print(f"views stored / pages served with the middleware: database {pages[1]['stored_views']}/"
          f"{pages[1]['served_total']}, Redis {pages[2]['stored_views']}/{pages[2]['served_total']}")
    print(f"API -> PostgreSQL: {db_row['rate']:,.0f} events/s; target >= {TARGET_API_RATE:,}: "
          f"{'met' if checks['api_target_met'] else 'MISSED'}")
    print(f"lost: {lost_total}")
    if failed_requests:
        print(f"failed requests: {len(failed_requests)} (first: {failed_requests[0]})")
    path = write_json("ingest", {
        "benchmark": "ingest",
        "when": datetime.now(timezone.utc).isoformat(),
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "params": {"events": args.events, "page_requests": args.requests, "warmup_pages": WARMUP_PAGES,
                   "batch": BATCH, "clients": CLIENTS, "api_workers": API_WORKERS,
                   "conn_max_age": args.conn_max_age},
        "rows": [{k: finite(v) for k, v in row.items() if k not in {"count_label", "rate_label"}} for row in rows],
        "checks": checks,
    })
    print(f"results: {path.relative_to(REPO)}")
    return 1 if lost_total or failed_requests else 0


if __name__ == "__main__":
    sys.exit(main())
