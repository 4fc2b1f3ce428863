#!/usr/bin/env python
"""What ``explain=1`` costs: the recommendations API with and without SHAP explanations, in this process.

    .venv/bin/python benchmarks/explain.py [--products 300] [--visitors 600] [--days 30] [--rounds 60] [--n 10]

A simulated shop (the demo's ``demo`` command: catalog, visitors with devices and countries, 5+ weeks of events)
goes into a temporary SQLite database; one version is trained with the default settings (gbdt ranker) and made
live. Then, in interleaved rounds, one staff client asks ``GET recommendations/?visitor=<v>&n=10`` for visitors
with a history (cycling through them):

* ``explain=0, cached``: the shipped cache (the same visitor again: a cache hit);
* ``explain=0, uncached``: ``RECOMMENDATION_CACHE_SECONDS=0``, every request scores afresh (the baseline);
* ``explain=1``: reasons plus SHAP sentences (always computed afresh: explaining needs the ranker's feature rows);

and, beside them, the SHAP step alone (``monitoring.explanations.explain_rows`` on the 10 served rows). Prints a
markdown table (p50/p95 ms, and each p50 over the uncached baseline's) and writes ``benchmarks/results/explain.json``.
The temporary folder (database, artifacts) is removed at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from io import StringIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import markdown_table, percentile, write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--visitors", type=int, default=600)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=60, help="requests per scenario")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the explain=1 requests")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-explain-"))
    try:
        os.environ["DATABASE_URL"] = f"sqlite:///{work / 'db.sqlite3'}"
        os.environ["CACHE_URL"] = "locmemcache://"
        os.environ.pop("CELERY_BROKER_URL", None)
        os.environ["MEDIA_ROOT"] = str(work / "media")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront_demo.settings")
        import django

        django.setup()
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    from django.conf import settings as django_settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db.models import Count
    from django.test import Client, override_settings

    from personalization.models import Event, ModelVersion
    from personalization.monitoring.explanations import explain_rows
    from personalization.serving.live import live_system
    from personalization.subjects import model_subject
    from personalization.training import train

    django_settings.MEDIA_ROOT = str(work / "media")
    base = {**getattr(django_settings, "PERSONALIZATION", {}), "API_RATE_VISITOR": None, "API_RATE_IP": None,
            "RECOMMENDATION_LOG_WRITE": "off"}
    with override_settings(PERSONALIZATION=base, ALLOWED_HOSTS=["*"]):
        call_command("migrate", "--noinput", verbosity=0)
        call_command("demo", "--products", str(args.products), "--visitors", str(args.visitors), "--days",
                     str(args.days), "--seed", "7", "--no-progress", "--no-train", stdout=StringIO())
        started = time.perf_counter()
        version = train(ModelVersion.objects.create())
        train_seconds = time.perf_counter() - started
        visitors = [f"v:{v}" for v in (
            Event.objects.filter(user__isnull=True).exclude(item_key="").values("visitor_id")
            .annotate(c=Count("item_key", distinct=True)).filter(c__gte=3).order_by("-c", "visitor_id")
            .values_list("visitor_id", flat=True)[:args.rounds])]
        staff = get_user_model().objects.create_user("bench", password="x", is_staff=True, is_superuser=True)
        client = Client()
        client.force_login(staff)
        url = "/api/personalization/recommendations/"

        def timed(params: dict) -> float:
            t = time.perf_counter()
            response = client.get(url, params)
            elapsed = time.perf_counter() - t
            assert response.status_code == 200, response.content[:300]
            return elapsed

        def warm_up() -> None:  # load the model, shap's import, the catalog table
            for v in visitors[:5]:
                timed({"visitor": v, "n": args.n, "explain": 1})
                timed({"visitor": v, "n": args.n})

        times: dict[str, list[float]] = {"cached": [], "uncached": [], "explain": [], "shap": []}
        profiler = cProfile.Profile() if args.profile else None
        warm_up()
        for i in range(args.rounds):  # phase 1, the shipped cache: the second request of a visitor is a hit
            v = visitors[i % len(visitors)]
            timed({"visitor": v, "n": args.n})
            times["cached"].append(timed({"visitor": v, "n": args.n}))
        with override_settings(PERSONALIZATION={**base, "RECOMMENDATION_CACHE_SECONDS": 0}):
            warm_up()
            _, system = live_system()
            for i in range(args.rounds):  # phase 2, nothing cached: both scenarios interleaved
                v = visitors[i % len(visitors)]
                times["uncached"].append(timed({"visitor": v, "n": args.n}))
                if profiler is not None:
                    profiler.enable()
                times["explain"].append(timed({"visitor": v, "n": args.n, "explain": 1}))
                if profiler is not None:
                    profiler.disable()
                lists, rows = system.recommend([model_subject(system, v)], n=args.n, with_features=True)
                if rows[0] is not None:
                    t = time.perf_counter()
                    explain_rows(system, rows[0])
                    times["shap"].append(time.perf_counter() - t)

    def row(name: str, key: str) -> dict:
        ms = [s * 1000 for s in times[key]]
        p50 = percentile(ms, 50)
        return {"scenario": name, "requests": len(ms), "p50": p50, "p95": percentile(ms, 95),
                "ratio": p50 / percentile([s * 1000 for s in times["uncached"]], 50)}

    rows_out = [row("API explain=0, cached", "cached"), row("API explain=0, uncached (baseline)", "uncached"),
                row("API explain=1 (reasons + SHAP sentences)", "explain"),
                row(f"SHAP step alone ({args.n} rows)", "shap")]
    print(f"\nShop: {args.products} products, {args.visitors} visitors, {args.days} days; version {version.pk} "
          f"({len(system.ranker_feature_names())} ranker features, trained in {train_seconds:.1f} s); "
          f"n={args.n}; {platform.python_version()} on {platform.machine()}\n")
    print(markdown_table([("scenario", "scenario", None), ("requests", "requests", None), ("p50", "p50 ms", ".2f"),
                          ("p95", "p95 ms", ".2f"), ("ratio", "p50 / uncached p50", ".2f")], rows_out))
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())
    path = write_json("explain", {"args": vars(args), "rows": rows_out})
    print(f"\nwritten to {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
