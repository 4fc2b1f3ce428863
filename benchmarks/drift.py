#!/usr/bin/env python
"""Drift benchmark: the learning loop on simulated traffic whose tastes shift, plotted as CTR over time.

    .venv/bin/python benchmarks/drift.py [--visits 1200] [--shift-at 0.35] [--products 80] [--out docs/drift.svg]

The same simulation as the acceptance test (tests/monitoring/test_drift_simulation.py), longer: a simulated shop
(``storefront_demo.shop.simulator``) with a history ending four days ago, a warm-up of live visits, the first model,
then ``--visits`` visits through the real ``recommend()`` whose visitors click recommended items of the categories
they like; at ``--shift-at`` their tastes move to two other categories. ``personalization.monitoring.drift.detect``
runs every 20 visits (beat's 15 minutes, in simulated time) and queues retrains (``DRIFT_RETRAIN``), which train in
this process (no broker). Embedded mode: a temporary SQLite database and local-memory cache, deleted at the end.

Prints the detection delay (impressions and visits after the shift), every retrain and whether it went live, and
the CTR before the shift, after it, and over the last visits; writes the plot (shift, detections and retrains
marked) to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TRAINING = {"half_life_days": 0.25, "choose_configuration": False}  # simulated time: a season turns in hours
DRIFT = {"DRIFT_CLICK_SECONDS": 0, "DRIFT_BASELINE_DAYS": 1, "DRIFT_RECENT_HOURS": 6, "DRIFT_MIN_EVENTS": 200,
         "DRIFT_RETRAIN_MIN_HOURS": 6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=1200)
    parser.add_argument("--shift-at", type=float, default=0.35)
    parser.add_argument("--products", type=int, default=80)
    parser.add_argument("--window", type=int, default=50, help="visits per point of the CTR curve")
    parser.add_argument("--out", default=str(REPO / "docs" / "drift.svg"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="drift-bench-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'drift.sqlite3'}"
    os.environ.pop("CACHE_URL", None)
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "storefront_demo.settings"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test.utils import override_settings

    call_command("migrate", interactive=False, verbosity=0)
    personalization = {**settings.PERSONALIZATION, **DRIFT, "TRAINING": TRAINING,
                       "RECOMMENDATION_LOG_WRITE": "inline",
                       "SLOTS": {"default": {}}, "PRECOMPUTE_ON_PROMOTION": False}
    started = time.monotonic()
    try:
        with override_settings(PERSONALIZATION=personalization, MEDIA_ROOT=str(tmp / "media")):
            out = simulate(args)
            report(out, args, time.monotonic() - started)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def simulate(args):
    from personalization.models import ModelVersion
    from personalization.training import train
    from storefront_demo.shop import drift_simulation
    from storefront_demo.shop.simulator import LiveTraffic

    # the simulated visits must all lie in the past: training reads events up to now
    step = timedelta(minutes=6)
    days_back = (drift_simulation.MAIN_START + args.visits * step) / timedelta(days=1) + 0.5
    shop, end = drift_simulation.build_shop(products=args.products, days_back=days_back)
    drift_simulation.warm_up(shop, end)
    train(ModelVersion.objects.create())
    traffic = LiveTraffic(shop, args.visits, shift_at=args.shift_at, seed=2)
    return drift_simulation.run(traffic, start=end + drift_simulation.MAIN_START, step=step, detect_every=20)


def report(out, args, seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from personalization.models import DriftDetection

    shift, n, w = out.shift_visit, args.visits, args.window
    before = out.ctr(0, shift)
    hurt = out.ctr(shift, (out.live_from.get(out.retrains[0][1].pk) if out.retrains else n) or n)
    final = out.ctr(n - 150, n)
    print(f"visits {n}, shift at visit {shift}; {seconds:.0f} s")
    print(f"CTR before the shift: {before:.3f}; after it, until the first retrain: {hurt:.3f}; "
          f"last 150 visits: {final:.3f} ({final / before:.0%} of before)")
    if out.detection is not None:
        print(f"detection: {out.detection} after {out.detection_impressions} impressions "
              f"({out.detection_visit - shift + 1} visits) after the shift")
    print("CTR per 100 visits:", " ".join(f"{out.ctr(a, a + 100):.3f}" for a in range(0, n, 100)))
    for visit, version in out.retrains:
        print(f"retrain queued at visit {visit}: v{version.pk} {version.status}"
              + (f", live from visit {out.live_from[version.pk]}" if version.pk in out.live_from else ""))

    xs = list(range(0, n, w))
    ys = [out.ctr(a, a + w) for a in xs]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot([x + w / 2 for x in xs], ys, marker="o", ms=3, label=f"CTR per {w} visits")
    ax.axhline(before, color="grey", ls=":", lw=1, label="CTR before the shift")
    ax.axvline(shift, color="tab:red", ls="--", label="taste shift")
    if out.detection_visit is not None:
        ax.axvline(out.detection_visit, color="tab:orange", ls="-.", label="first detection")
    for visit, version in out.retrains:
        if version.pk in out.live_from:
            ax.axvline(out.live_from[version.pk], color="tab:green", lw=1.5, label="drift retrain goes live")
        else:
            ax.axvline(visit, color="tab:grey", lw=0.8, ls=":", label="drift retrain refused by the promotion rule")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="lower right")
    ax.set_xlabel("visit (4 recommendations each)")
    ax.set_ylabel("click-through rate")
    ax.set_title(f"Learning loop under a taste shift ({DriftDetection.objects.count()} detections, "
                 f"{len(out.retrains)} retrains)")
    ax.set_ylim(0, max(ys + [before]) * 1.15)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
