"""Online measurement benchmark: the ``personalization.aggregate_list_stats`` task on one simulated day.

Writes ``--lists`` served lists of 8 items for ``--subjects`` visitors on one day with seeded impressions, clicks,
carts and purchases (some purchases without a recommendation id), then times the task through its public path:

- ``full``: the first run (no watermark: every day with lists);
- ``rerun``: the same day again (idempotent: the same numbers);
- ``incremental``: after 1% more events (only the touched days are recomputed);

and checks the rows' totals against a direct count of the generated events. The database is ``DATABASE_URL``
(default: a temporary SQLite file); its personalization tables are migrated, filled and emptied again.

    python -m benchmarks.list_stats --lists 20000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta


def _setup(database_url: str | None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront_demo.settings")
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", "-v", "0")


def _fill(lists: int, subjects: int, seed: int) -> dict[str, int]:
    from personalization.models import Event, RecommendationLog

    rng = random.Random(seed)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    logs, events, counts = [], [], {"impressions": 0, "clicks": 0}

    def add(kind: str, item: str, visitor: str, at: datetime, rec: str = "", value: float | None = None) -> None:
        events.append(Event(event_id=uuid.uuid4(), event_type=kind, item_key=item, visitor_id=visitor, occurred_at=at,
                            received_at=at, recommendation_id=rec, value=value))

    for n in range(lists):
        visitor = f"visitor-{rng.randrange(subjects)}"
        at = day + timedelta(seconds=rng.randrange(86_000))
        items = [f"product:{rng.randrange(5000)}" for _ in range(8)]
        rec_id = uuid.uuid4().hex
        logs.append(RecommendationLog(id=rec_id, subject=f"v:{visitor}", slot=rng.choice(["home", "product"]),
                                      model_version_id=1 + n % 2, created_at=at,
                                      items=[{"item": k, "score": 1.0, "reason": "exploration:epsilon" if i == 7
                                              else "als"} for i, k in enumerate(items)]))
        for item in dict.fromkeys(items[:rng.randrange(9)]):
            add("impression", item, visitor, at + timedelta(seconds=2), rec_id)
            counts["impressions"] += 1
            if rng.random() < 0.05:
                add("click", item, visitor, at + timedelta(seconds=30), rec_id)
                counts["clicks"] += 1
                if rng.random() < 0.3:
                    add("add_to_cart", item, visitor, at + timedelta(minutes=2), rec_id)
                    if rng.random() < 0.5:
                        add("purchase", item, visitor, at + timedelta(hours=1), rec_id if rng.random() < 0.5 else "",
                            value=round(rng.uniform(5, 80), 2))
    RecommendationLog.objects.bulk_create(logs, batch_size=2000)
    Event.objects.bulk_create(events, batch_size=2000)
    return {**counts, "events": len(events), "day": day}


def _timed(days: list[str] | None = None) -> tuple[float, dict]:
    from personalization.tasks import aggregate_list_stats

    start = time.perf_counter()
    result = aggregate_list_stats.apply(kwargs={"days": days}).get()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lists", type=int, default=20000)
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args(argv)
    _setup(args.database_url)
    from django.db.models import Sum

    from personalization.models import Event, ListDailyStat, RecommendationLog, StatWatermark

    for model in (ListDailyStat, StatWatermark, RecommendationLog, Event):
        model.objects.all().delete()
    try:
        filled = _fill(args.lists, args.subjects, args.seed)
        full, result = _timed()
        totals = ListDailyStat.objects.aggregate(i=Sum("impressions"), c=Sum("clicks"), lists=Sum("lists"))
        assert (totals["i"], totals["c"]) == (filled["impressions"], filled["clicks"]), (totals, filled)
        day = filled["day"].date().isoformat()
        rerun, _ = _timed([day])
        again = ListDailyStat.objects.aggregate(i=Sum("impressions"), c=Sum("clicks"), lists=Sum("lists"))
        assert again == totals
        extra = _fill(max(1, args.lists // 100), args.subjects, args.seed + 1)
        incremental, inc = _timed()
        rows = [("full (first run)", full, result["days"]), ("rerun of the day", rerun, 1),
                ("incremental (+1% lists/events)", incremental, inc["days"])]
        print(f"{args.lists} lists x 8 positions, {filled['events']} events (+{extra['events']}), "
              f"{ListDailyStat.objects.count()} rows; database {Event.objects.db}"
              f" ({__import__('django.db').db.connection.vendor})")
        print(f"{'run':34} {'seconds':>8} {'days':>5} {'lists/s':>9}")
        for name, seconds, days in rows:
            print(f"{name:34} {seconds:8.2f} {days:5d} {args.lists / seconds:9.0f}")
    finally:
        for model in (ListDailyStat, StatWatermark, RecommendationLog, Event):
            model.objects.all().delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
