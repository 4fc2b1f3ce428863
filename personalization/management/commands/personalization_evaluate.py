"""``manage.py personalization_evaluate``: metrics of model versions, each model beside the baselines."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from personalization.models import ModelVersion

COLUMNS = ["ndcg@10", "recall@20", "precision@10", "map@10", "hit_rate@10", "coverage@10"]


class Command(BaseCommand):
    help = "Print the test-window metrics of a model version (default: the live one) per model and baseline."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("version", nargs="?", type=int, help="version id (default: live, else latest)")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args: Any, **opts: Any) -> None:
        qs = ModelVersion.objects.all()
        if opts["version"]:
            version = qs.filter(pk=opts["version"]).first()
            if version is None:
                raise CommandError(f"No model version {opts['version']}; list them in the admin or the API.")
        else:
            version = qs.filter(status=ModelVersion.Status.LIVE).first() or qs.exclude(test_metrics={}).first()
            if version is None:
                raise CommandError("No trained version yet; run `manage.py personalization_train` first.")
        metrics = {k: v for k, v in version.test_metrics.items() if isinstance(v, dict)}
        unevaluated = version.test_metrics.get("unevaluated", "")
        if opts["json"]:
            self.stdout.write(json.dumps({"version": version.pk, "status": version.status, "metrics": metrics,
                                          "unevaluated": unevaluated}, indent=2, sort_keys=True))
            return
        self.stdout.write(f"Version {version.pk} ({version.status}), test window from {version.cutoff}")
        if unevaluated:
            self.stdout.write(self.style.WARNING(f"Not evaluated: {unevaluated}."))
            if not metrics:
                return
        names = sorted(metrics, key=lambda n: (n != "system", n))
        columns = [c for c in COLUMNS if any(c in metrics[n] for n in names)] or sorted(
            {k for n in names for k in metrics[n]})
        width = max([len(n) for n in names] + [8])
        self.stdout.write("model".ljust(width) + "  " + "  ".join(c.rjust(12) for c in columns))
        for name in names:
            row = metrics[name]
            cells = [f"{row[c]:.4f}".rjust(12) if isinstance(row.get(c), (int, float)) else "-".rjust(12)
                     for c in columns]
            self.stdout.write(name.ljust(width) + "  " + "  ".join(cells))
