#!/usr/bin/env python
"""Freshness benchmark: how long after an event the lists change, with updates between retrains (beat-driven).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> CACHE_URL=redis://127.0.0.1:6379/<n> \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/<m> .venv/bin/python benchmarks/freshness.py [--users 8]

Production settings (``storefront_demo.settings``): PostgreSQL, Redis cache and broker, a real Celery worker and
celery beat (the shipped ``BEAT_SCHEDULE``: ``personalization.update_models``, UPDATE_INTERVAL_SECONDS=60), gunicorn
(2 sync workers) serving the API. The database is emptied, the demo shop generated (``manage.py demo``: 400
products, 600 visitors, 60 days) and one version trained and made live in this process (its time is the cost of a
retrain on the same data). Then ``--users`` customers the model was trained on each buy items far from their history
at a random moment of one minute (``personalization.track(user, "purchase", ...)``, as checkout code does) and their
``personalization.recommend(user)`` is polled every second; five new visitors ``POST events/`` to gunicorn, co-viewing
a new product with the most popular one, and the popular one's ``GET items/<key>/similar/`` is polled on gunicorn.
The table gives, from the event: when the customer's list (items and scores) changed (p50 / p95), when their ALS
factors changed in the served model (this process applies published revisions
like the gunicorn workers and reads the ALS family's list and scores), and when the new product appears in
the neighbour's similar items. Logs of the worker and beat: ``$TMPDIR/freshness-*.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import GunicornServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()
    for name in ("DATABASE_URL", "CACHE_URL", "CELERY_BROKER_URL"):
        if not os.environ.get(name):
            parser.error(f"{name} is required (production settings: PostgreSQL and Redis)")
    os.environ["DJANGO_SETTINGS_MODULE"] = "storefront_demo.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from personalization.models import Event, ModelVersion
    from personalization.training import train

    log = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)  # noqa: E731
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    from django.core.cache import cache

    cache.clear()
    log("generating the demo shop")
    call_command("demo", "--products", "400", "--visitors", "600", "--days", "60", "--seed", "7", "--no-progress",
                 "--no-train", stdout=open(os.devnull, "w"))
    events = Event.objects.count()
    log(f"training on {events} events")
    started = time.perf_counter()
    version = train(ModelVersion.objects.create())
    retrain = time.perf_counter() - started
    assert version.status == ModelVersion.Status.LIVE, version.error
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "storefront_demo.settings", "PYTHONUNBUFFERED": "1"}
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    procs = []
    server = None
    try:
        for name, argv in (("worker", ["worker", "--pool=solo", "-l", "INFO", "--without-gossip",
                                       "--without-mingle"]),
                           ("beat", ["beat", "-l", "INFO", "-s", str(logs / "freshness-celerybeat")])):
            out = open(logs / f"freshness-{name}.log", "w")
            procs.append(subprocess.Popen([sys.executable, "-m", "celery", "-A", "storefront_demo", *argv],
                                          cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))
        server = GunicornServer(env, workers=2, name="freshness")
        server.start(ready_path="/api/personalization/events/")
        time.sleep(5)
        results = measure(args, server.port, Event, log)
    finally:
        if server is not None:
            server.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    version.refresh_from_db()
    connection.close()
    factor = sorted(results["factor"])
    print(f"\nEvents: {events}; update revisions published: {version.update_revision}; "
          f"UPDATE_INTERVAL_SECONDS=60\n")
    print("| measure | n | p50 (s) | p95 (s) | target |")
    print("|---|---:|---:|---:|---|")
    listed = sorted(results["list"])
    print(f"| known customer's ALS factors updated in the served model | {len(factor)} | {pct(factor, 50):.1f} | "
          f"{pct(factor, 95):.1f} | < 60 s |")
    print(f"| known customer's `recommend()` list changes | {len(listed)} | {pct(listed, 50):.1f} | "
          f"{pct(listed, 95):.1f} | |")
    new = results["new_item"]
    print(f"| new product in the neighbour's `GET items/<key>/similar/?n=50` | {int(new == new)} | {new:.1f} | "
          f"{new:.1f} | < 120 s |")
    print(f"| full retrain (same data, this process) | 1 | {retrain:.1f} | {retrain:.1f} | |")
    if results["missed"]:
        print(f"\nNo change within {args.timeout:.0f} s for {results['missed']} of the users.")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def _als(subject: str) -> list[tuple[str, float]]:
    """The ALS family's top 10 and scores for ``subject`` in the model this process serves (its factors, as
    updated): this process applies published revisions exactly like the gunicorn workers do."""
    from personalization.serving.live import live_system
    from personalization.subjects import model_subject

    _, system = live_system()
    return [(k, round(s, 4)) for k, s, _ in system.recommend_for_model("als", [model_subject(system, subject)],
                                                                       n=10)[0]]


def _api(port: int, method: str, path: str, jar: dict[str, str], body: dict | None = None) -> dict:
    """One JSON request to the gunicorn server with the visitor's cookie jar (updated from the response)."""
    from _common import BROWSER_UA, Client, cookie_header, cookies_from

    origin = f"http://127.0.0.1:{port}"
    headers = {"User-Agent": BROWSER_UA, "Accept": "application/json", "Content-Type": "application/json",
               "Origin": origin, "Sec-Fetch-Site": "same-origin"}
    if jar:
        headers["Cookie"] = cookie_header(jar)
    client = Client(port, headers)
    try:
        status, data, response, _ = client.request(method, path, json.dumps(body).encode() if body else None)
    finally:
        client.close()
    jar.update(cookies_from(response))
    if status >= 400:
        raise RuntimeError(f"{method} {path}: HTTP {status} {data[:300]!r}")
    return json.loads(data) if data else {}


def _keys(payload: dict) -> list[str]:
    return [row["key"] for row in payload.get("items", [])]


def _listed(result) -> list[tuple[str, float]]:
    return [(r.item, round(r.score, 4)) for r in result.items]


def measure(args, port: int, Event, log) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.db.models import Count

    import personalization
    from storefront_demo.shop.models import Category, Product

    rng = random.Random(7)
    users = list(get_user_model().objects.filter(
        pk__in=Event.objects.filter(user__isnull=False).values("user_id").annotate(c=Count("id")).filter(c__gte=10)
        .values("user_id")).order_by("pk")[: args.users])
    items = [f"product:{pk}" for pk in Product.objects.values_list("pk", flat=True)]
    neighbour = (Event.objects.exclude(item_key="").values("item_key").annotate(c=Count("id")).order_by("-c")
                 .first()["item_key"])
    new = Product.objects.create(sku="FRESH-1", name="Fresh", price=9, category=Category.objects.first()).item_key
    results = {"factor": [], "list": [], "new_item": float("nan"), "missed": 0}
    lock = threading.Lock()
    events_path = "/api/personalization/events/"

    def known_visitor(user) -> None:
        """A customer the model was trained on buys items far from their history, at a random moment: the shop's
        checkout code records the purchases with ``personalization.track`` (a signed-in API call stores them under
        the visitor cookie and links them to the user only at the next login)."""
        try:
            time.sleep(rng.uniform(0, 60))
            before = _listed(personalization.recommend(user, n=10))
            als_before = _als(f"u:{user.pk}")
            seen = set(Event.objects.filter(user=user).values_list("item_key", flat=True))
            far = [k for k in items if k not in seen][-4:]
            at = time.monotonic()
            for key in far:
                personalization.track(user, "purchase", key)
            listed = False
            while time.monotonic() - at < args.timeout:
                time.sleep(1.0)
                if not listed and _listed(personalization.recommend(user, n=10)) != before:
                    listed = True
                    with lock:
                        results["list"].append(time.monotonic() - at)
                if _als(f"u:{user.pk}") != als_before:
                    with lock:
                        results["factor"].append(time.monotonic() - at)
                    return
            with lock:
                results["missed"] += 1
        finally:
            connections.close_all()

    def new_product() -> None:
        """Five new visitors view the new product between two views of a popular one."""
        try:
            at = time.monotonic()
            for _ in range(5):
                jar: dict[str, str] = {}
                _api(port, "POST", events_path, jar,
                     {"events": [{"event": "view", "item": k} for k in (neighbour, new, neighbour)]})
            while time.monotonic() - at < args.timeout:
                time.sleep(1.0)
                if new in _keys(_api(port, "GET", f"/api/personalization/items/{neighbour}/similar/?n=50", {})):
                    results["new_item"] = time.monotonic() - at
                    return
        finally:
            connections.close_all()

    threads = [threading.Thread(target=known_visitor, args=(u,)) for u in users]
    threads.append(threading.Thread(target=new_product))
    log(f"measuring {len(users)} known customers and one new product through gunicorn on port {port}")
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


if __name__ == "__main__":
    main()
