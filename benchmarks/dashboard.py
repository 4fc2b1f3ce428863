"""Render time of the admin dashboard at 10^5 and 10^6 events, through the admin page (the public path).

    .venv/bin/python -m benchmarks.dashboard                      # SQLite in a temporary folder
    .venv/bin/python -m benchmarks.dashboard --sizes 100000 --database-url postgres://postgres@127.0.0.1/bench_dash

Seeds a site with events over 60 days (views, clicks, impressions, carts, purchases; a fifth of the impressions,
clicks and purchases carry the id of one of 20,000 served lists in three slots and two versions) and 12 evaluated
model versions, then times, as a staff member, ``GET /admin/personalization/dashboard/`` with an empty cache (every
panel queried and drawn) and again (figures from the cache), and the two heavy queries on their own. The baseline is
the naive "events per day" (load the window's rows, group them in Python) on the same data in the same run. Grows
one database from the smallest size to the largest. Prints a markdown table; JSON in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from benchmarks._common import markdown_table, write_json

TYPES = [("view", 0.62), ("impression", 0.2), ("click", 0.1), ("add_to_cart", 0.05), ("purchase", 0.03)]
LISTS = 20_000
DAYS = 60


def setup(database_url: str | None) -> None:
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        folder = tempfile.mkdtemp(prefix="bench-dashboard-")
        os.environ["DATABASE_URL"] = f"sqlite:///{folder}/dashboard.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront_demo.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connection

    if connection.vendor == "sqlite":  # seeding speed only: a benchmark database need not survive a power cut
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=OFF")


def seed_static() -> int:
    """Served lists and evaluated versions (the second to last is live)."""
    from django.utils import timezone

    from personalization.models import ModelVersion, RecommendationLog

    versions = []
    for i in range(12):
        status = ModelVersion.Status.LIVE if i == 10 else ModelVersion.Status.RETIRED
        system = {"ndcg@10": 0.05 + 0.01 * i, "recall@20": 0.1 + 0.012 * i, "precision@10": 0.02 + 0.002 * i,
                  "n_users": 5000}
        versions.append(ModelVersion.objects.create(status=status, test_metrics={"system": system},
                                                    metrics={"system": {"ndcg@10": 0.06 + 0.01 * i}}))
    now = timezone.now()
    live, previous = versions[10].pk, versions[9].pk
    RecommendationLog.objects.bulk_create([
        RecommendationLog(id=f"rec{i:08d}", subject=f"v:{i}", slot=("home", "product", "cart")[i % 3],
                          model_version_id=live if i % 2 else previous, items=[], created_at=now)
        for i in range(LISTS)
    ], batch_size=5000)
    return live


def seed_events(start: int, stop: int, seed: int = 7) -> None:
    """Events ``start`` .. ``stop`` - 1 (deterministic), inserted in batches."""
    import numpy as np
    from django.db import transaction
    from django.utils import timezone

    from personalization.models import Event

    rng = np.random.default_rng(seed + start)
    now = timezone.now()
    names = [t for t, _ in TYPES]
    probs = [p for _, p in TYPES]
    batch = 20_000
    for lo in range(start, stop, batch):
        n = min(batch, stop - lo)
        kinds = rng.choice(len(names), size=n, p=probs)
        ages = rng.uniform(0, DAYS * 86400, size=n)
        lists = rng.integers(0, LISTS, size=n)
        attributed = rng.random(n) < 0.2
        items = rng.integers(1, 5000, size=n)
        visitors = rng.integers(1, 50_000, size=n)
        rows = []
        for j in range(n):
            kind = names[kinds[j]]
            when = now - timedelta(seconds=float(ages[j]))
            rec = f"rec{lists[j]:08d}" if attributed[j] and kind in ("impression", "click", "purchase") else ""
            rows.append(Event(event_id=uuid.uuid4(), event_type=kind, item_key=f"product:{items[j]}",
                              visitor_id=f"{visitors[j]:032x}", occurred_at=when, received_at=when,
                              recommendation_id=rec, source="import"))
        with transaction.atomic():
            Event.objects.bulk_create(rows, batch_size=5000)


def naive_events_per_day(days: int) -> dict[Any, Counter]:
    """The baseline: every row of the window into Python, grouped there."""
    from django.utils import timezone

    from personalization.models import Event
    from personalization.monitoring.dashboard import _since

    out: dict[Any, Counter] = {}
    for when, kind in Event.objects.filter(occurred_at__gte=_since(days)).values_list("occurred_at", "event_type"):
        out.setdefault(timezone.localdate(when), Counter())[kind] += 1
    return out


def events_per_day_sql(days: int) -> tuple[str, Any]:
    """The SQL of dashboard.events_per_day (captured, not executed)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from personalization.monitoring import dashboard

    with CaptureQueriesContext(connection) as captured:
        dashboard.events_per_day(days)
    return captured.captured_queries[-1]["sql"], None


def timed(func: Any, repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(size: int, repeats: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client

    from personalization.conf import settings
    from personalization.monitoring import dashboard

    user = get_user_model().objects.filter(username="bench").first() or get_user_model().objects.create_superuser(
        "bench", "bench@example.com", "pw")
    client = Client()
    client.force_login(user)
    url = "/admin/personalization/dashboard/"

    def cold() -> None:
        cache.clear()
        client.force_login(user)  # the session lives in the database, but be safe after a clear
        response = client.get(url)
        assert response.status_code == 200 and response.content.count(b"<svg") >= 4, response.status_code

    def warm() -> None:
        response = client.get(url)
        assert response.status_code == 200

    cold()  # the first request imports matplotlib and builds the admin: not what is measured
    days = settings.DASHBOARD["event_days"]
    row = {
        "events": size,
        "page_cold_ms": 1000 * timed(cold, repeats),
        "page_warm_ms": 1000 * timed(warm, repeats),
        "per_day_ms": 1000 * timed(lambda: dashboard.events_per_day(days), repeats),
        "ctr_ms": 1000 * timed(lambda: dashboard.attributed_outcomes(settings.DASHBOARD["ctr_days"]), repeats),
        "naive_per_day_ms": 1000 * timed(lambda: naive_events_per_day(days), 1),
    }
    row["speedup"] = row["naive_per_day_ms"] / row["per_day_ms"]
    with connection.cursor() as cursor:
        sql, params = events_per_day_sql(days)
        prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
        cursor.execute(prefix + sql, params)
        row["plan"] = " / ".join(str(r[-1]) for r in cursor.fetchall())
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated event counts, ascending")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    setup(args.database_url)
    from django.db import connection

    seed_static()
    rows, have = [], 0
    for size in sizes:
        started = time.perf_counter()
        seed_events(have, size)
        have = size
        print(f"seeded {size:,} events in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE personalization_event")
        else:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        rows.append(measure(size, args.repeats))
        print(f"{size:,}: {rows[-1]}", file=sys.stderr)
    columns = [("events", "events", ","), ("page_cold_ms", "page, empty cache (ms)", ".0f"),
               ("page_warm_ms", "page, cached figures (ms)", ".0f"), ("per_day_ms", "events/day query (ms)", ".0f"),
               ("ctr_ms", "CTR join (ms)", ".0f"), ("naive_per_day_ms", "baseline: group in Python (ms)", ".0f"),
               ("speedup", "speed-up", ".1f")]
    print(f"\nDashboard render, {connection.vendor}, median of {args.repeats}\n")
    print(markdown_table(columns, rows))
    print("\nevents/day plan: " + rows[-1]["plan"])
    write_json("dashboard", {"vendor": connection.vendor, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
