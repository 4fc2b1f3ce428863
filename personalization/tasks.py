"""Celery tasks: thin, idempotent faces over the services, and the receivers that hand services' requests to Celery.

``training.enqueue()`` queues a version; :func:`send_training` (a ``training_queued`` receiver) starts its task.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import shared_task
from django.db import OperationalError

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


def send_training(sender: Any = None, *, version_id: int, until: str | None = None, models: list[str] | None = None,
                  tune: bool = False, **kwargs: Any) -> None:
    """``training_queued`` receiver: start the Celery task of a queued version and record its task id."""
    from personalization.models import ModelVersion

    result = train_models.apply_async(
        kwargs={"version_id": version_id, "until": until, "models": models, "tune": tune})
    ModelVersion.objects.filter(pk=version_id).update(task_id=result.id or "")


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
    from personalization import training

    if training.in_progress():
        return 0
    return training.enqueue().pk


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


def queue_precompute(sender: Any = None, **kwargs: Any) -> None:
    """``model_promoted`` receiver: refill the recommendation cache for the new live model (PRECOMPUTE_ON_PROMOTION).

    A missing broker must not undo a promotion: a failure to enqueue is logged.
    """
    from personalization.conf import settings

    if not settings.PRECOMPUTE_ON_PROMOTION:
        return
    try:
        precompute_recommendations.delay()
    except Exception:  # noqa: BLE001
        logger.warning("Could not enqueue personalization.precompute_recommendations", exc_info=True)


@shared_task(name="personalization.precompute_recommendations", autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=3)
def precompute_recommendations(days: int | None = None, slots: list[str] | None = None,
                               limit: int | None = None) -> dict[str, int]:
    """Fill the recommendation cache for recently active visitors (run when a model goes live). Idempotent."""
    from personalization.serving import precompute

    return precompute(days=days, slots=slots, limit=limit)
