"""``manage.py personalization_train``: train a model version now (in this process) and report it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from personalization import background_runs, training
from personalization.conf import settings
from personalization.models import ModelVersion


def parse_date(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--until {value!r} is not a date; use YYYY-MM-DD or an ISO 8601 time.") from None
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, timezone.get_current_timezone())


class Command(BaseCommand):
    help = "Train, validate on the latest window, store and (if it beats the live one) promote a model version."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--until", help="train on events before this date (default: now)")
        parser.add_argument("--models", help="comma-separated families (default: TRAINING['models'])")
        parser.add_argument("--tune", action="store_true", help="tune hyperparameters on a validation window")
        parser.add_argument("--no-promote", action="store_true", help="store the version without promoting it")
        parser.add_argument("--background", action="store_true",
                            help="enqueue a Celery task instead (trained here when no broker can be reached)")

    def handle(self, *args: Any, **opts: Any) -> None:
        until = parse_date(opts["until"]) if opts["until"] else None
        models = None
        if opts["models"]:
            models = [m.strip() for m in opts["models"].split(",") if m.strip()]
            unknown = sorted(set(models) - set(settings.TRAINING["models"]))
            if unknown:
                raise CommandError(
                    f"Unknown model(s): {', '.join(unknown)}. Configured in TRAINING['models']: "
                    f"{', '.join(settings.TRAINING['models'])}."
                )
        if opts["background"]:
            with transaction.atomic():  # the hand-over to Celery (or to a thread) happens when this block commits
                version = training.enqueue(until=until, models=models, tune=opts["tune"])
            here = training.runs_here(version)
            if not here:
                self.stdout.write(f"Queued version {version.pk}; follow it in the admin or with "
                                  "personalization_evaluate.")
                return
            # a daemon thread dies with this command: wait for it, so the version does not stay "training"
            self.stderr.write(f"No Celery worker can take version {version.pk}, because {here}: training it here.")
            background_runs.wait()
            version.refresh_from_db()
            if version.status not in {ModelVersion.Status.READY, ModelVersion.Status.LIVE}:
                raise CommandError(f"Version {version.pk} is {version.status}: {version.error}")
            return self._report(version)
        version = training.new_version(until=until, models=models, tune=opts["tune"])
        bar = tqdm(total=100, desc="training", unit="%", disable=opts["verbosity"] < 1, file=self.stderr)

        def echo(stage: str, fraction: float) -> None:
            bar.set_description(stage)
            bar.update(round(fraction * 100, 1) - bar.n)

        try:
            version = training.train(version, until=until, models=models, tune=opts["tune"], echo=echo,
                            promote_if_better=not opts["no_promote"])
        except (training.TrainingError, training.TrainingCancelled) as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        self._report(version)

    def _report(self, version: ModelVersion) -> None:
        system = version.test_metrics.get("system", {})
        shown = ", ".join(f"{k}={v:.4f}" for k, v in system.items() if isinstance(v, float))
        self.stdout.write(self.style.SUCCESS(f"Version {version.pk}: {version.status}. Test window: {shown or '-'}"))
