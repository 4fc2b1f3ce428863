#!/usr/bin/env python
"""Freshness benchmark: how long after an event the lists change, with updates between retrains (beat-driven).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> CACHE_URL=redis://127.0.0.1:6379/<n> \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/<m> .venv/bin/python benchmarks/freshness.py [--users 8]

Production settings (``storefront_demo.settings``): PostgreSQL, Redis cache and broker, a real Celery worker and
celery beat (the shipped ``BEAT_SCHEDULE``: ``personalization.update_models`` with UPDATE_INTERVAL_SECONDS=60).
The database is emptied, the demo shop generated (``manage.py demo``) and one version trained and made live here
(its time is the retrain cost). Then, through the public path (``personalization.track`` as the server-side code of
the shop would, ``personalization.recommend`` / ``similar_items`` as a page does): ``--users`` known (training)
users each buy items far from their history at random moments of one minute; five new visitors co-view a new
product with an existing one. Each list is polled every second until it changes: the table gives the time from
event to changed list (p50 / p95) and from the co-views to the new product in its neighbour's similar items.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


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

    import personalization
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
    try:
        for name, argv in (("worker", ["worker", "--pool=solo", "-l", "INFO", "--without-gossip",
                                       "--without-mingle"]),
                           ("beat", ["beat", "-l", "INFO", "-s", str(logs / "freshness-celerybeat")])):
            out = open(logs / f"freshness-{name}.log", "w")
            procs.append(subprocess.Popen([sys.executable, "-m", "celery", "-A", "storefront_demo", *argv],
                                          cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))
        time.sleep(8)
        results = measure(args, personalization, Event, log)
    finally:
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
    print(f"| known user's ALS factors updated in the served model | {len(factor)} | {pct(factor, 50):.1f} | "
          f"{pct(factor, 95):.1f} | < 60 s |")
    print(f"| known user's recommendations change (recommend()) | {len(listed)} | {pct(listed, 50):.1f} | "
          f"{pct(listed, 95):.1f} | |")
    new = results["new_item"]
    print(f"| new product in its neighbour's similar items | 1 | {new:.1f} | {new:.1f} | < 120 s |")
    print(f"| full retrain (same data, this process) | 1 | {retrain:.1f} | {retrain:.1f} | |")
    if results["missed"]:
        print(f"\nNo change within {args.timeout:.0f} s for {results['missed']} of the users.")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def _als(user) -> list[str]:
    """The ALS family's top 10 for ``user`` in the system this process serves (its factors, as updated)."""
    from personalization.serving.live import live_system
    from personalization.subjects import model_subject

    _, system = live_system()
    return [k for k, _, _ in system.recommend_for_model("als", [model_subject(system, f"u:{user.pk}")], n=10)[0]]


def measure(args, personalization, Event, log) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connections

    from storefront_demo.shop.models import Category, Product

    rng = random.Random(7)
    users = list(get_user_model().objects.filter(pk__in=Event.objects.filter(user__isnull=False)
                                                 .values("user_id")).order_by("pk")[: args.users])
    items = list(Product.objects.values_list("pk", flat=True))
    neighbour = Event.objects.exclude(item_key="").values_list("item_key", flat=True).first()
    new = Product.objects.create(sku="FRESH-1", name="Fresh", price=9, category=Category.objects.first()).item_key
    results = {"factor": [], "list": [], "new_item": float("nan"), "missed": 0}
    lock = threading.Lock()

    def one_user(user) -> None:
        try:
            time.sleep(rng.uniform(0, 60))
            before = personalization.recommend(user, n=10).keys()
            als_before = _als(user)
            seen = set(Event.objects.filter(user=user).values_list("item_key", flat=True))
            far = [f"product:{pk}" for pk in items if f"product:{pk}" not in seen][-4:]
            at = time.monotonic()
            for key in far:
                personalization.track(user, "purchase", key)
            listed = False
            while time.monotonic() - at < args.timeout:
                time.sleep(1.0)
                if not listed and personalization.recommend(user, n=10).keys() != before:
                    listed = True
                    with lock:
                        results["list"].append(time.monotonic() - at)
                if _als(user) != als_before:
                    with lock:
                        results["factor"].append(time.monotonic() - at)
                    return
            with lock:
                results["missed"] += 1
        finally:
            connections.close_all()

    def new_product() -> None:
        try:
            at = time.monotonic()
            visitors = list(get_user_model().objects.exclude(pk__in=[u.pk for u in users]).order_by("-pk")[:5])
            for visitor in visitors:
                for key in (neighbour, new, neighbour):
                    personalization.track(visitor, "view", key)
            while time.monotonic() - at < args.timeout:
                time.sleep(1.0)
                if new in [r.item for r in personalization.similar_items(neighbour, n=100)]:
                    results["new_item"] = time.monotonic() - at
                    return
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one_user, args=(u,)) for u in users] + [threading.Thread(target=new_product)]
    log(f"measuring {len(users)} users and one new product")
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


if __name__ == "__main__":
    main()
