#!/usr/bin/env python
"""Redis memory per visitor: what the app keeps in Redis for each visitor who browses and sees recommendations.

    .venv/bin/python benchmarks/redis_memory.py [--visitors 3000] [--events 5]

Builds the demo shop with a trained live model (``manage.py demo``, small) in the PostgreSQL database
``--database`` (created and dropped), with the Redis collector and the Redis cache on a private ``redis-server``
(``benchmarks/load.py``'s). Then ``--visitors`` new visitors each POST ``--events`` views to ``events/`` and, after
the buffer is flushed to PostgreSQL, GET ``recommendations/`` (Django's test client in this process: the public
path, without a web server). ``INFO memory`` before and after gives bytes per visitor, split into the event-id
de-duplication keys (one per event, kept ``REDIS_DEDUPE_TTL``, default 24 h) and everything else (visitor state,
cached lists, version stamps, rate-limit counters), extrapolated to a million visitors.
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import os
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import BROWSER_UA, logger, manage  # noqa: E402
from benchmarks.load import STREAM_KEY, RedisServer, drop_database, setup_database  # noqa: E402

log = logger("redis-memory")


def used(client) -> int:
    client.execute_command("MEMORY PURGE")
    return int(client.info("memory")["used_memory"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=3000)
    parser.add_argument("--events", type=int, default=5, help="views per visitor (default 5)")
    parser.add_argument("--database", default="bench_redis_memory")
    args = parser.parse_args(argv)
    redis_server = RedisServer("memory").start()
    # At exit, after the app's own exit handlers (background writers) have run: atexit calls the last registered
    # first, and Django registers its handlers after this.
    atexit.register(drop_database, args.database)
    atexit.register(redis_server.remove)
    url, _ = setup_database(args.database)
    env = {"DJANGO_SETTINGS_MODULE": "benchmarks.settings_bench", "DATABASE_URL": url, "DEBUG": "False",
           "CACHE_URL": redis_server.url(0, "rediscache"), "REDIS_URL": redis_server.url(1),
           "PERSONALIZATION_COLLECTOR": "redis", "BENCH_STREAM_KEY": STREAM_KEY, "CELERY_BROKER_URL": "",
           "LOG_LEVEL": "WARNING", "PERSONALIZATION_LOG_LEVEL": "ERROR"}
    log("building the demo shop and training its model (manage.py demo, small)")
    manage(["demo", "--products", "200", "--visitors", "400", "--days", "20", "--seed", "3", "--no-progress"],
           env)
    os.environ.update(env)
    import django

    django.setup()
    import json

    from django.test import Client

    from personalization.tracking.collectors import get_collector
    from storefront_demo.shop.models import Product

    pks = list(Product.objects.values_list("pk", flat=True)[:200])
    cache_db, buffer_db = redis_server.client(0), redis_server.client(1)
    base = used(cache_db)
    keys_before = cache_db.dbsize() + buffer_db.dbsize()
    clients = []
    log(f"{args.visitors} visitors: {args.events} views each to events/")
    start = time.perf_counter()
    for v in range(args.visitors):
        client = Client(HTTP_USER_AGENT=BROWSER_UA, HTTP_ACCEPT_LANGUAGE="en-GB")
        events = [{"event": "view", "item": f"product:{pks[(v * 7 + i * 13) % len(pks)]}",
                   "event_id": str(uuid.uuid4())} for i in range(args.events)]
        response = client.post("/api/personalization/events/", json.dumps({"events": events}),
                               content_type="application/json", HTTP_SEC_FETCH_SITE="same-origin")
        assert response.status_code == 202, response.content
        clients.append(client)
    get_collector().flush()
    after_events = used(cache_db)
    seen = sum(1 for _ in buffer_db.scan_iter(f"{STREAM_KEY}:seen:*", count=10_000))
    log("each visitor GETs recommendations/")
    for client in clients:
        response = client.get("/api/personalization/recommendations/?n=8")
        assert response.status_code == 200, response.content
        assert response.json()["model_version"], "no live model: the measure would miss the visitor state"
    after = used(cache_db)
    seconds = time.perf_counter() - start
    keys_after = cache_db.dbsize() + buffer_db.dbsize()
    sample = list(itertools.islice(buffer_db.scan_iter(f"{STREAM_KEY}:seen:*", count=1000), 1000))
    per_seen_key = sum(buffer_db.memory_usage(k) or 0 for k in sample) / max(len(sample), 1)
    phase1, phase2 = after_events - base, after - after_events
    seen_bytes = per_seen_key * seen
    print()
    print(f"## Redis memory per visitor ({args.visitors:,} new visitors, {args.events} views each to events/, then "
          f"recommendations/ once; {seconds:.0f} s; used_memory after MEMORY PURGE, event buffer flushed)")
    print()
    print("| what | bytes | per visitor | per million visitors |")
    print("|---|--:|--:|--:|")
    rows = [
        (f"after the views: event-id keys ({seen:,}, {per_seen_key:.0f} B each by MEMORY USAGE, TTL 24 h), "
         "visitor version stamps, rate-limit counters", phase1),
        ("  of which event-id keys", seen_bytes),
        ("after recommendations/: visitor state and cached list", phase2),
        ("total", after - base),
    ]
    for label, value in rows:
        print(f"| {label} | {value:,.0f} | {value / args.visitors:,.0f} B | "
              f"{value / args.visitors * 1e6 / 2**30:,.2f} GiB |")
    print(f"\nkeys added: {keys_after - keys_before:,} ({seen:,} event-id keys)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
