#!/usr/bin/env python
"""Audit and export benchmark: ``personalization_audit`` and ``personalization_export`` on a day of N events.

    DATABASE_URL=postgres://.../<db> CACHE_URL=redis://.../<n> .venv/bin/python benchmarks/audit_export.py \
        [--events 1000000] [--baseline-per-day 20000]

The database named by DATABASE_URL (PostgreSQL; migrated here) is emptied of events and filled with ``--events``
events on yesterday's UTC day (6 types, 5000 products of the demo shop, 50 000 visitors) plus
``--baseline-per-day`` events on each of the 28 days before. Then, each command in its own process as a user runs it
(wall time and peak RSS from ``/usr/bin/time``):

1. baseline: ``manage.py check`` (the memory of a Django process that loads the app) and ``psql``-free
   ``COPY (SELECT ... ) TO STDOUT`` of the same events as CSV through psycopg (the raw dump a Parquet export
   competes with);
2. ``personalization_audit --days 2 --no-save --fail-on never`` (the last 48 complete hours hold yesterday);
3. ``personalization_export --to <tmp>`` (first run: every complete day, yesterday's ``--events`` rows in one
   partition), a second run (nothing new), and a first run with ``--chunk-size 10000`` (memory follows the chunk,
   not the day).

Prints a markdown table; writes ``benchmarks/results/audit_export.json``. Events are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import logger, manage, markdown_table, write_json  # noqa: E402

log = logger("audit_export")


def timed(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run a command under /usr/bin/time; its wall seconds and peak RSS in MiB."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        result = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", out.name, *args], cwd=REPO,
                                env={**os.environ, **env}, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        seconds, kib = out.read().split()[-2:]
    return {"seconds": float(seconds), "peak_mib": int(kib) / 1024, "stdout": result.stdout.strip()[-200:]}


def fill(url: str, events: int, baseline_per_day: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE personalization_event, personalization_auditreport, personalization_ingestioncounter")
        conn.execute("DELETE FROM shop_product")
        conn.execute("INSERT INTO shop_category (name, slug) SELECT 'Bench', 'bench' "
                     "WHERE NOT EXISTS (SELECT 1 FROM shop_category WHERE slug = 'bench')")
        category = conn.execute("SELECT id FROM shop_category WHERE slug = 'bench'").fetchone()[0]
        conn.execute("""
            INSERT INTO shop_product (id, sku, name, description, price, category_id, brand_id, in_stock, image_url,
                                      created_at)
            SELECT i, 'B' || i, 'Product ' || i, '', 10, %s, NULL, true, '', now()
            FROM generate_series(1, 5000) i""", (category,))
        insert = """
            INSERT INTO personalization_event (event_id, event_type, item_key, visitor_id, user_id, occurred_at,
                received_at, value, recommendation_id, source, context)
            SELECT gen_random_uuid(), (ARRAY['view','view','view','click','add_to_cart','impression'])[1 + i %% 6],
                   'product:' || (1 + i %% 5000), 'v' || (i %% 50000), NULL, ts, ts + interval '2 seconds', NULL,
                   '', 'tracker', jsonb_build_object('device', 'desktop', 'os', 'Linux', 'browser', 'Chrome',
                   'country', 'DE', 'hour', extract(hour from ts)::int, 'weekday', extract(isodow from ts)::int - 1)
            FROM (SELECT i, %(start)s::timestamptz + (i::float8 * %(span)s / %(n)s) * interval '1 second' AS ts
                  FROM generate_series(0, %(n)s - 1) i) s"""
        yesterday = conn.execute("SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' "
                                 "- interval '1 day'").fetchone()[0]
        conn.execute(insert, {"start": yesterday, "span": 86400, "n": events})
        if baseline_per_day:
            conn.execute(insert, {"start": yesterday - timedelta(days=28), "span": 28 * 86400,
                                  "n": 28 * baseline_per_day})
        conn.execute("ANALYZE personalization_event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--baseline-per-day", type=int, default=20_000)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database of your own (it is emptied of events).")
    env = {"DJANGO_SETTINGS_MODULE": "storefront_demo.settings"}
    manage(["migrate", "-v0"], env)
    log(f"filling {args.events} events on yesterday (UTC) and {args.baseline_per_day}/day on the 28 before")
    started = time.monotonic()
    fill(url, args.events, args.baseline_per_day)
    log(f"filled in {time.monotonic() - started:.0f} s")
    python = [sys.executable, str(REPO / "manage.py")]
    rows = []
    try:
        rows.append({"step": "baseline: manage.py check", **timed([*python, "check"], env)})
        dump = [sys.executable, "-c", (
            "import os, psycopg, sys\n"
            "with psycopg.connect(os.environ['DATABASE_URL']) as c, c.cursor() as cur:\n"
            "    n = 0\n"
            "    with cur.copy('COPY (SELECT * FROM personalization_event) TO STDOUT (FORMAT CSV)') as copy:\n"
            "        with open(os.devnull, 'wb') as sink:\n"
            "            for block in copy:\n"
            "                sink.write(block); n += 1\n"
            "print(n, 'blocks')\n")]
        rows.append({"step": "baseline: COPY of every event to CSV (psycopg)", **timed(dump, env)})
        rows.append({"step": "personalization_audit --days 2 (vs 28)",
                     **timed([*python, "personalization_audit", "--days", "2", "--no-save", "--fail-on", "never"],
                             env)})
        rows[-1]["stdout"] = ""  # the table of checks
        with tempfile.TemporaryDirectory() as target:
            rows.append({"step": "personalization_export (first run)",
                         **timed([*python, "personalization_export", "--to", target], env)})
            rows.append({"step": "personalization_export (second run, nothing new)",
                         **timed([*python, "personalization_export", "--to", target], env)})
            size = sum(p.stat().st_size for p in Path(target).rglob("*.parquet"))
            rows[-2]["stdout"] += f" ({size / 2**20:.1f} MiB of Parquet)"
        with tempfile.TemporaryDirectory() as target:
            rows.append({"step": "personalization_export --chunk-size 10000 (first run)",
                         **timed([*python, "personalization_export", "--to", target, "--chunk-size", "10000"], env)})
        for row in rows:
            row["stdout"] = re.sub(r"Exported to \S+: ", "", row["stdout"])
    finally:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE personalization_event, personalization_ingestioncounter")
    print(f"\n{args.events} events on yesterday (UTC), {args.baseline_per_day}/day on the 28 before "
          f"({args.events + 28 * args.baseline_per_day} in all)\n")
    print(markdown_table([("step", "step", None), ("seconds", "wall s", ".1f"), ("peak_mib", "peak RSS MiB", ".0f"),
                          ("stdout", "output", None)], rows))
    write_json("audit_export", {"events": args.events, "baseline_per_day": args.baseline_per_day, "rows": rows})


if __name__ == "__main__":
    main()
