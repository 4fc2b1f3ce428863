"""Celery tasks: thin, idempotent faces over the services. Enqueue with ``enqueue_training()``."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import shared_task
from django.db import OperationalError, transaction

logger = logging.getLogger("personalization.tasks")


@shared_task(name="personalization.train_models", acks_late=True, reject_on_worker_lost=True)
def train_models(version_id: int, until: str | None = None, models: list[str] | None = None,
                 tune: bool = False) -> dict[str, Any]:
    """Train one queued ModelVersion (idempotent: a trained version is returned untouched)."""
    from personalization.models import ModelVersion
    from personalization.training import TrainingCancelled, TrainingError, train

    version = ModelVersion.objects.get(pk=version_id)
    try:
        version = train(version, until=datetime.fromisoformat(until) if until else None, models=models, tune=tune)
    except (TrainingCancelled, TrainingError) as exc:
        logger.warning("%s", exc)
    version.refresh_from_db()
    return {"version": version.pk, "status": version.status}


def enqueue_training(*, user: Any = None, until: datetime | None = None, models: list[str] | None = None,
                     tune: bool = False) -> Any:
    """Create a queued ModelVersion and start its training once the surrounding transaction commits."""
    from personalization.models import ModelVersion

    version = ModelVersion.objects.create(
        status=ModelVersion.Status.QUEUED,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        params={"requested": {"models": models, "tune": tune, "until": until.isoformat() if until else None}},
    )

    def _send() -> None:
        result = train_models.apply_async(
            kwargs={"version_id": version.pk, "until": until.isoformat() if until else None, "models": models,
                    "tune": tune},
        )
        ModelVersion.objects.filter(pk=version.pk).update(task_id=result.id or "")

    transaction.on_commit(_send)
    return version


@shared_task(name="personalization.evaluate_model")
def evaluate_model(version_id: int, since: str | None = None) -> dict[str, Any]:
    """Score a stored version on events it has not seen (default: everything after its training data)."""
    from personalization.models import ModelVersion
    from personalization.training import TrainingError, evaluate_version

    version = ModelVersion.objects.get(pk=version_id)
    try:
        return evaluate_version(version, since=datetime.fromisoformat(since) if since else None)
    except TrainingError as exc:
        logger.warning("%s", exc)
        return {"error": str(exc)}


@shared_task(name="personalization.flush_events", autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=5)
def flush_events(max_events: int | None = 200_000) -> int:
    """Move events buffered by the Redis collector into the database (no-op for other collectors)."""
    from personalization.tracking.collectors import get_collector

    return get_collector().flush(max_events)


@shared_task(name="personalization.scheduled_retrain")
def scheduled_retrain() -> int:
    """Nightly retrain: queue one version unless one is already queued or training."""
    from personalization.models import ModelVersion

    busy = ModelVersion.objects.filter(status__in=[ModelVersion.Status.QUEUED, ModelVersion.Status.TRAINING])
    if busy.exists():
        return 0
    return enqueue_training().pk


@shared_task(name="personalization.send_notifications", autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=3)
def send_notifications(now: str | None = None, rule_ids: list[int] | None = None) -> dict[str, Any]:
    """Run the notification rules (hourly beat). Idempotent: a message already recorded is never sent again.

    One run at a time (a cache lock); a second run started meanwhile returns at once.
    """
    from django.core.cache import caches

    from personalization.conf import settings
    from personalization.delivery.notifications import send_notifications as run

    cache = caches[settings.CACHE_ALIAS]
    lock = "personalization:notifications:running"
    if not cache.add(lock, 1, timeout=3600):
        logger.info("send_notifications: another run holds the lock; skipping")
        return {"skipped": "another run is in progress"}
    try:
        return run(now=datetime.fromisoformat(now) if now else None, rule_ids=rule_ids)
    finally:
        cache.delete(lock)


@shared_task(name="personalization.aggregate_variant_stats", autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=3)
def aggregate_variant_stats() -> dict[str, int]:
    """Count content-block impressions and clicks per (slot, variant) into VariantStat for the bandit.

    Idempotent: incremental from the last counted event id (kept in the cache); without it, a full recount.
    """
    from personalization.delivery.blocks import aggregate_variant_stats as run

    return run()


@shared_task(name="personalization.precompute_recommendations", autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=3)
def precompute_recommendations(days: int | None = None, slots: list[str] | None = None,
                               limit: int | None = None) -> dict[str, int]:
    """Fill the recommendation cache for recently active visitors (run when a model goes live). Idempotent."""
    from personalization.serving import precompute

    return precompute(days=days, slots=slots, limit=limit)
