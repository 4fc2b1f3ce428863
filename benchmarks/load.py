#!/usr/bin/env python
"""Load benchmark: many concurrent visitors send events through gunicorn, the Redis collector and a real Celery
worker into PostgreSQL, once with Redis up and once with Redis stopped in the middle; every accepted event must be
stored exactly once.

    .venv/bin/python benchmarks/load.py [--events 200000] [--visitors 100] [--outage 10] [--quick]

Processes, all on this machine and started by the benchmark:

* two ``redis-server`` instances of its own on free ports (``--save '' --appendonly no``): the *app Redis*
  (cache, rate limits, the collector's buffer), which is stopped and started again, and the *broker Redis*
  (Celery), which stays up. The machine's shared Redis is never touched. The stop is SIGTERM with
  ``--shutdown-on-sigterm save``: a clean stop of a Redis that keeps its data, as the buffer's Redis must
  (docs/deployment.md); the restart loads that snapshot.
* gunicorn (``--web-workers`` sync workers, DEBUG off) on ``benchmarks/settings_bench.py``: the demo settings with
  ``RATE_LIMIT_EVENTS`` and ``RATE_LIMIT_EVENTS_PER_IP`` raised (every visitor here comes from 127.0.0.1 and sends
  far more than a person would; the limiters still run), the Redis collector, the app Redis as cache.
* one Celery worker (solo pool) consuming a private queue; this process plays beat and sends
  ``personalization.flush_events`` to it every ``--flush-every`` seconds (beat's shipped schedule says 5 s).

The client is ``httpx.AsyncClient``, one per visitor (each keeps its own visitor cookie, sends
``Sec-Fetch-Site: same-origin`` like a browser's tracker, and batches of ``--batch`` events with client-generated
event ids). After the load it waits until the worker has drained the buffer, then compares the event ids answered
2xx with the rows in PostgreSQL (missing, duplicated, stored although refused). The first run (Redis up) is the
baseline of the second; the second also reports the requests sent before, during and after the outage.

The benchmark creates the PostgreSQL database ``--database`` (default ``bench_load``; dropped at the end).
Results: a markdown table on stdout and ``benchmarks/results/load.json``. ``tests/integration/test_load.py`` runs
a small version (``run_scenario``) in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from psycopg import sql  # noqa: E402

from benchmarks._common import (  # noqa: E402
    BROWSER_UA,
    GunicornServer,
    cookie_header,
    database_url,
    finite,
    latency_summary,
    logger,
    manage,
    markdown_table,
    write_json,
)

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
EVENTS_PATH = "/api/personalization/events/"
STREAM_KEY = "bench_load:events"
EVENT_MIX = [("view", 60), ("click", 15), ("impression", 10), ("add_to_cart", 8), ("dwell", 4), ("purchase", 3)]
REQUEST_TIMEOUT = 30.0  # seconds per request (client side)

log = logger("load")


# --- processes -------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    """A private ``redis-server`` on a free loopback port; ``stop()`` saves a snapshot that ``start()`` reloads."""

    name: str
    port: int = 0
    directory: str = ""
    process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        if not self.directory:
            self.directory = tempfile.mkdtemp(prefix=f"bench-load-{self.name}-")
        restart = bool(self.port)  # a restart keeps its port: the app is configured with it
        for _ in range(1 if restart else 5):  # a port picked free may be taken before redis binds it: retry
            self.port = self.port or free_port()
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--shutdown-on-sigterm", "save",
                 "--dir", self.directory, "--dbfilename", "dump.rdb", "--logfile", "redis.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if self.client().ping():
                        return self
                except redis.RedisError:
                    time.sleep(0.05)
            self.process.kill()
            self.process.wait()
            if not restart:
                self.port = 0
        raise RuntimeError(f"redis-server {self.name} did not start; see {self.directory}/redis.log")

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, socket_timeout=5, socket_connect_timeout=2)

    def url(self, db: int = 0, scheme: str = "redis") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{db}"

    def stop(self, save: bool = True) -> None:
        """SIGTERM, which saves a snapshot (``--shutdown-on-sigterm save``), or a kill without saving; then wait
        until the process is gone."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        if save:
            proc.terminate()
            try:
                proc.wait(timeout=30)
                return
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
        proc.wait(timeout=10)

    def remove(self) -> None:
        self.stop(save=False)
        if self.directory:
            import shutil

            shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Stack:
    """App Redis, broker Redis, gunicorn and a Celery worker on one PostgreSQL database."""

    db_url: str
    web_workers: int = 4
    settings_module: str = "benchmarks.settings_bench"
    app_redis: RedisServer = field(default_factory=lambda: RedisServer("app"))
    broker_redis: RedisServer = field(default_factory=lambda: RedisServer("broker"))
    server: GunicornServer | None = None
    worker: subprocess.Popen | None = None
    worker_log: Path | None = None
    queue: str = field(default_factory=lambda: f"bench-load-{uuid.uuid4().hex[:8]}")
    celery: Any = None

    def env(self) -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": self.settings_module,
            "DATABASE_URL": f"{self.db_url}?conn_max_age=600",
            "CACHE_URL": self.app_redis.url(0, "rediscache"),
            "REDIS_URL": self.app_redis.url(1),
            "PERSONALIZATION_COLLECTOR": "redis",
            "CELERY_BROKER_URL": self.broker_redis.url(0),
            "CELERY_RESULT_BACKEND": "",
            "DEBUG": "False",
            "BENCH_STREAM_KEY": STREAM_KEY,
            "BENCH_CACHE_PREFIX": "bench_load",
            "LOG_LEVEL": "WARNING",
            "PERSONALIZATION_LOG_LEVEL": "ERROR",  # one warning per request while Redis is down would flood the log
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> Stack:
        from celery import Celery

        self.app_redis.start()
        self.broker_redis.start()
        env = self.env()
        self.worker_log = Path(tempfile.mkstemp(prefix="bench-load-worker-", suffix=".log")[1])
        with self.worker_log.open("w") as out:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "storefront_demo", "worker", "--pool=solo", "-Q", self.queue,
                 "-n", f"{self.queue}@%h", "--without-heartbeat", "--without-gossip", "--without-mingle",
                 "-l", "INFO"],
                cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.server = GunicornServer(env=env, workers=self.web_workers, name="load")
        self.server.start(ready_path=EVENTS_PATH)  # GET -> 405: the app is loaded, and nothing is recorded
        deadline = time.monotonic() + 60
        while "ready." not in self.worker_log.read_text(errors="replace"):
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start:\n{self.worker_log.read_text()[-3000:]}")
            time.sleep(0.2)
        self.celery = Celery("bench-load-client", broker=self.broker_redis.url(0), set_as_current=False)
        return self

    def send_flush(self) -> None:
        self.celery.send_task("personalization.flush_events", queue=self.queue)

    def pending(self) -> int:
        return int(self.app_redis.client(1).llen(STREAM_KEY))

    def stop(self, keep_logs: bool = False) -> None:
        if self.server is not None:
            self.server.stop()
            if not keep_logs:
                self.server.remove_log()
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)  # its own session: the worker only
                self.worker.wait(timeout=10)
        if self.worker_log is not None and not keep_logs:
            self.worker_log.unlink(missing_ok=True)
        if self.celery is not None:
            self.celery.close()
        self.app_redis.remove()
        self.broker_redis.remove()


class Flusher(threading.Thread):
    """Plays beat: sends ``flush_events`` to the worker's queue every ``every`` seconds until stopped."""

    def __init__(self, stack: Stack, every: float):
        super().__init__(name="bench-load-flusher", daemon=True)
        self.stack, self.every, self.done = stack, every, threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            try:
                self.stack.send_flush()
            except Exception as exc:  # noqa: BLE001 - the broker stays up; report and go on
                log(f"could not send flush_events: {exc!r}")


# --- workload --------------------------------------------------------------------------------------------------
def cookies_from_headers(set_cookie: Sequence[str]) -> dict[str, str]:
    """name -> value of ``Set-Cookie`` header values."""
    jar = {}
    for header in set_cookie:
        name, _, rest = header.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]
    return jar


def make_plan(total: int, visitors: int, batch: int, items: Sequence[str], seed: int) -> list[list[list[dict]]]:
    """Per visitor, the batches of events it sends: ``total`` events with distinct client-generated ids."""
    rng = random.Random(seed)
    types = [t for t, _ in EVENT_MIX]
    weights = [w for _, w in EVENT_MIX]
    now = datetime.now(timezone.utc)
    counts = [total // visitors + (1 if i < total % visitors else 0) for i in range(visitors)]
    plan = []
    for n in counts:
        events = []
        for _ in range(n):
            event_type = rng.choices(types, weights)[0]
            item = rng.choice(items)
            event: dict[str, Any] = {
                "event": event_type,
                "item": item,
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "timestamp": (now - timedelta(seconds=rng.randint(0, 3600))).isoformat().replace("+00:00", "Z"),
                "context": {"page": f"/p/{item.rsplit(':', 1)[-1]}/", "slot": "product-page"},
            }
            if event_type in {"purchase", "add_to_cart"}:
                event["value"] = round(rng.uniform(5, 200), 2)
            elif event_type == "dwell":
                event["value"] = rng.randint(1, 300)
            events.append(event)
        plan.append([events[i:i + batch] for i in range(0, len(events), batch)])
    return plan


@dataclass
class Sent:
    """One request: when it started (perf_counter), how long it took, its HTTP status (None: no answer)."""

    start: float
    seconds: float
    status: int | None
    ids: list[str]
    counts: dict[str, int]
    error: str = ""


async def drive(port: int, plan: list[list[list[dict]]], rate: float | None,
                on_progress: Callable[[int], Any] | None = None) -> tuple[list[Sent], float]:
    """Send every visitor's batches concurrently; ``rate`` caps requests per second overall (None: as fast as the
    server answers). Returns the requests and the wall time."""
    origin = f"http://127.0.0.1:{port}"
    headers = {"User-Agent": BROWSER_UA, "Content-Type": "application/json", "Accept": "application/json",
               "Accept-Language": "en-GB,en;q=0.9", "Origin": origin, "Sec-Fetch-Site": "same-origin"}
    sent: list[Sent] = []
    progress = {"events": 0}
    visitors = len(plan)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    t0 = time.perf_counter()

    async def visitor(index: int, batches: list[list[dict]]) -> None:
        async with httpx.AsyncClient(base_url=origin, headers=headers, timeout=REQUEST_TIMEOUT,
                                     limits=limits) as client:
            jar: dict[str, str] = {}
            for k, events in enumerate(batches):
                if rate:
                    wait = t0 + (k * visitors + index) / rate - time.perf_counter()
                    if wait > 0:
                        await asyncio.sleep(wait)
                body = json.dumps({"events": events}, separators=(",", ":")).encode()
                ids = [e["event_id"] for e in events]
                start = time.perf_counter()
                try:
                    response = await client.post(EVENTS_PATH, content=body,
                                                 headers={"Cookie": cookie_header(jar)} if jar else None)
                    # A browser on HTTPS keeps the Secure visitor cookie; httpx would not send it over http.
                    jar.update(cookies_from_headers(response.headers.get_list("set-cookie")))
                    client.cookies.clear()
                    status, error = response.status_code, ""
                    counts = response.json() if status == 202 else {}
                    if status != 202:
                        error = f"HTTP {status}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    status, counts, error = None, {}, repr(exc)
                sent.append(Sent(start - t0, time.perf_counter() - start, status, ids, counts, error))
                progress["events"] += len(events)
                if on_progress is not None:
                    on_progress(progress["events"])

    await asyncio.gather(*(visitor(i, batches) for i, batches in enumerate(plan)))
    return sent, time.perf_counter() - t0


# --- one run -----------------------------------------------------------------------------------------------------
def stored_counts(db_url: str) -> dict[str, int]:
    """event id (text) -> rows, for every row of the Event table."""
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute(
            "SELECT event_id::text, count(*) FROM personalization_event GROUP BY event_id").fetchall())


def truncate_events(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE personalization_event")


def run_scenario(stack: Stack, items: Sequence[str], *, events: int, visitors: int, batch: int = 20,
                 outage: float = 0.0, outage_at: float = 0.35, rate: float | None = None, seed: int = 1,
                 drain_timeout: float = 180.0, label: str = "") -> dict[str, Any]:
    """Send ``events`` from ``visitors`` concurrent visitors through ``stack``; with ``outage`` > 0, stop the app
    Redis for that many seconds once ``outage_at`` of the events are sent. Then drain the buffer and compare the
    accepted event ids with PostgreSQL. Returns the figures and the check (``lost``, ``duplicated``...)."""
    plan = make_plan(events, visitors, batch, items, seed)
    window: dict[str, float] = {}
    t_origin = {"t0": 0.0}

    async def main() -> tuple[list[Sent], float]:
        trigger = asyncio.Event()

        def on_progress(done: int) -> None:
            if outage and done >= outage_at * events:
                trigger.set()

        async def outage_controller() -> None:
            await trigger.wait()
            window["down"] = time.perf_counter() - t_origin["t0"]
            await asyncio.to_thread(stack.app_redis.stop)
            log(f"{label}: app Redis stopped at {window['down']:.1f} s")
            await asyncio.sleep(outage)
            await asyncio.to_thread(stack.app_redis.start)
            window["up"] = time.perf_counter() - t_origin["t0"]
            log(f"{label}: app Redis started again at {window['up']:.1f} s")

        t_origin["t0"] = time.perf_counter()
        tasks = [asyncio.create_task(drive(stack.server.port, plan, rate, on_progress))]
        controller = asyncio.create_task(outage_controller()) if outage else None
        sent, seconds = await tasks[0]
        if controller is not None:
            if not trigger.is_set():
                trigger.set()
            await controller
        return sent, seconds

    flusher = Flusher(stack, FLUSH_EVERY[0])
    flusher.start()
    load_before = os.getloadavg()
    log(f"{label}: {events:,} events from {visitors} visitors in batches of {batch}"
        + (f", app Redis down {outage:g} s" if outage else ""))
    try:
        sent, seconds = asyncio.run(main())
    finally:
        flusher.done.set()
        flusher.join()
    load_after = os.getloadavg()

    # Drain: keep flushing until the buffer is empty (the flush trims a batch only after PostgreSQL has it).
    drain_start = time.perf_counter()
    pending = -1
    while time.perf_counter() - drain_start < drain_timeout:
        try:
            pending = stack.pending()
        except redis.RedisError:
            pending = -1
        if pending == 0:
            break
        stack.send_flush()
        time.sleep(0.5)
    drain_seconds = time.perf_counter() - drain_start

    stored = stored_counts(stack.db_url)
    accepted_ids = {i for s in sent if s.status is not None and 200 <= s.status < 300 for i in s.ids}
    refused_ids = {i for s in sent if s.status is None or not 200 <= s.status < 300 for i in s.ids}
    partly = [s for s in sent if s.status == 202 and s.counts.get("accepted", 0) != len(s.ids)]
    check = {
        "sent": sum(len(s.ids) for s in sent),
        "accepted": len(accepted_ids),
        "refused": len(refused_ids),
        "refused_but_stored": len(refused_ids & stored.keys()),
        "lost": len(accepted_ids - stored.keys()),
        "duplicated": sum(1 for n in stored.values() if n > 1),
        "unexpected_rows": len(stored.keys() - accepted_ids - refused_ids),
        "stored_rows": sum(stored.values()),
        "partly_accepted_requests": len(partly),
        "pending_after_drain": pending,
        "drain_seconds": drain_seconds,
        "failed_requests": sum(1 for s in sent if s.status is None or not 200 <= s.status < 300),
        "errors": sorted({s.error for s in sent if s.error})[:5],
    }
    with psycopg.connect(stack.db_url) as conn:
        check["visitors_stored"] = conn.execute(
            "SELECT count(DISTINCT visitor_id) FROM personalization_event").fetchone()[0]
    phases = {"all": sent}
    if outage and window:
        down, up = window["down"], window.get("up", float("inf"))
        phases["before outage"] = [s for s in sent if s.start + s.seconds < down]
        phases["during outage"] = [s for s in sent if s.start + s.seconds >= down and s.start < up]
        phases["after outage"] = [s for s in sent if s.start >= up]
    rows = []
    for phase, requests in phases.items():
        n_events = sum(len(s.ids) for s in requests)
        span = (max(s.start + s.seconds for s in requests) - min(s.start for s in requests)) if requests else 0.0
        rows.append({
            "run": label, "phase": phase, "requests": len(requests), "events": n_events,
            "seconds": seconds if phase == "all" else span,
            "rate": n_events / (seconds if phase == "all" else span) if requests and span else None,
            **latency_summary([s.seconds for s in requests]),
            "failed": sum(1 for s in requests if s.status is None or not 200 <= s.status < 300),
        })
    return {"label": label, "rows": rows, "check": check, "outage_window": window, "seconds": seconds,
            "loadavg_before": load_before, "loadavg_after": load_after,
            "params": {"events": events, "visitors": visitors, "batch": batch, "outage": outage,
                       "outage_at": outage_at, "rate": rate, "web_workers": stack.web_workers,
                       "flush_every": FLUSH_EVERY[0]}}


#: How often the benchmark (playing beat) sends flush_events; a one-element list so tests and main can set it.
FLUSH_EVERY = [1.0]


def failures(result: dict[str, Any]) -> list[str]:
    """What broke the promise of a run: accepted events missing or stored twice, or left in the buffer."""
    c = result["check"]
    problems = []
    if c["lost"]:
        problems.append(f"{c['lost']} accepted events are not in PostgreSQL")
    if c["duplicated"]:
        problems.append(f"{c['duplicated']} event ids are stored more than once")
    if c["pending_after_drain"]:
        problems.append(f"{c['pending_after_drain']} events still buffered in Redis after the drain")
    if c["unexpected_rows"]:
        problems.append(f"{c['unexpected_rows']} rows nobody sent")
    return problems


# --- the benchmark command ---------------------------------------------------------------------------------------
COLUMNS = [
    ("run", "run", None),
    ("phase", "requests sent", None),
    ("events", "events", ",d"),
    ("seconds", "seconds", ",.1f"),
    ("rate_label", "rate", None),
    ("p50_ms", "p50 ms", ",.1f"),
    ("p99_ms", "p99 ms", ",.1f"),
    ("p50_ratio", "p50 / baseline", ".2f"),
    ("failed", "refused", ",d"),
]


def setup_database(name: str) -> tuple[str, list[str]]:
    """Create the benchmark database, migrate it and seed 50 products; (its URL, their item keys)."""
    admin = psycopg.connect(ADMIN_URL, autocommit=True)
    with admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(ADMIN_URL, name)
    env = {"DJANGO_SETTINGS_MODULE": "benchmarks.settings_bench", "DATABASE_URL": url, "DEBUG": "False"}
    manage(["migrate", "--noinput", "-v", "0"], env)
    with psycopg.connect(url, autocommit=True) as conn:
        category = conn.execute("INSERT INTO shop_category (name, slug) VALUES ('Load gifts', 'load-gifts') "
                                "RETURNING id").fetchone()[0]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO shop_product (sku, name, description, price, category_id, in_stock, image_url, created_at)"
                " VALUES (%s, %s, %s, %s, %s, true, '', now())",
                [(f"LOAD-{i:04d}", f"Load gift {i}", "A gift used by the load benchmark.", Decimal("9.99") + i,
                  category) for i in range(50)])
        pks = [r[0] for r in conn.execute("SELECT id FROM shop_product ORDER BY id").fetchall()]
    return url, [f"product:{pk}" for pk in pks]


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def table(results: list[dict[str, Any]]) -> str:
    base = results[0]["rows"][0]
    rows = []
    for result in results:
        for row in result["rows"]:
            row = dict(row)
            row["rate_label"] = f"{row['rate']:,.0f} ev/s" if row.get("rate") else "-"
            row["p50_ratio"] = row["p50_ms"] / base["p50_ms"] if base["p50_ms"] else None
            rows.append(row)
    return markdown_table(COLUMNS, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per run (default 200,000)")
    parser.add_argument("--visitors", type=int, default=100, help="concurrent visitors (default 100)")
    parser.add_argument("--batch", type=int, default=20, help="events per request (default 20)")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the app Redis is down (default 10)")
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn sync workers (default 4)")
    parser.add_argument("--flush-every", type=float, default=1.0, help="seconds between flush_events (default 1)")
    parser.add_argument("--rate", type=float, default=None,
                        help="cap on requests per second overall (default: as fast as the server answers)")
    parser.add_argument("--database", default="bench_load", help="PostgreSQL database to create and drop")
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = 20_000
    FLUSH_EVERY[0] = args.flush_every

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stack = None
    failed = True
    results = []
    try:
        log(f"creating database {args.database}")
        url, items = setup_database(args.database)
        stack = Stack(url, web_workers=args.web_workers).start()
        results.append(run_scenario(stack, items, events=args.events, visitors=args.visitors, batch=args.batch,
                                    rate=args.rate, seed=1, label="baseline: Redis up"))
        truncate_events(url)
        results.append(run_scenario(stack, items, events=args.events, visitors=args.visitors, batch=args.batch,
                                    rate=args.rate, outage=args.outage, seed=2, label=f"Redis down {args.outage:g} s"))
        failed = False
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        log("cleaning up: gunicorn, worker, Redis servers, database")
        if stack is not None:
            stack.stop(keep_logs=failed)
            if failed and stack.server and stack.server.log_path:
                log(f"logs kept: {stack.server.log_path} {stack.worker_log}")
        drop_database(args.database)

    problems = [f"{r['label']}: {p}" for r in results for p in failures(r)]
    print()
    print(f"## Load benchmark ({platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()})")
    print(f"{args.visitors} visitors (httpx.AsyncClient each, own visitor cookie), batches of {args.batch} events "
          f"-> gunicorn {args.web_workers} sync workers (DEBUG off, rate limits raised: benchmarks/settings_bench.py)"
          f" -> Redis collector -> 1 Celery worker (solo) flushing every {args.flush_every:g} s -> PostgreSQL.")
    for r in results:
        print(f"load average (1/5/15 min) during '{r['label']}': before "
              f"{'/'.join(f'{x:.2f}' for x in r['loadavg_before'])}, after "
              f"{'/'.join(f'{x:.2f}' for x in r['loadavg_after'])}")
    print()
    print(table(results))
    print()
    for r in results:
        c = r["check"]
        print(f"{r['label']}: sent {c['sent']:,}, accepted (2xx) {c['accepted']:,}, refused {c['refused']:,} "
              f"({c['refused_but_stored']:,} of them stored anyway), stored rows {c['stored_rows']:,}, "
              f"lost {c['lost']}, stored twice {c['duplicated']}, left in Redis {c['pending_after_drain']}, "
              f"drained in {c['drain_seconds']:.1f} s, distinct visitors stored {c['visitors_stored']}")
        if c["errors"]:
            print(f"  first errors: {c['errors']}")
    print(f"exactly once: {'yes' if not problems else 'NO: ' + '; '.join(problems)}")
    path = write_json("load", {
        "benchmark": "load",
        "when": datetime.now(timezone.utc).isoformat(),
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": [{**r, "rows": [{k: finite(v) for k, v in row.items()} for row in r["rows"]]} for r in results],
        "problems": problems,
    })
    print(f"results: {path.relative_to(REPO)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
