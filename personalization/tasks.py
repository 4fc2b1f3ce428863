"""Celery tasks: thin, idempotent faces over the services, and the receivers that hand services' requests to Celery.

``training.enqueue()`` queues a version; :func:`send_training` (a ``training_queued`` receiver) starts its task.
When a task cannot be queued (the broker does not answer within about a second, or Celery runs tasks eagerly, where
a web request would train inside the request), the receivers run the work in a background thread of this process
instead (:mod:`personalization.background_runs`): a missing broker never fails a request or leaves a run queued.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import Task, shared_task
from django.db import OperationalError
from kombu.utils.url import maybe_sanitize_url

from personalization import background_runs, circuit
from personalization.run_locks import RunLock

logger = logging.getLogger("personalization.tasks")


def _with_previous(result: Any, lock: RunLock) -> Any:
    """A periodic run's result, with the record of the run before it when that one died (its heartbeat stopped)."""
    if lock.previous is not None and isinstance(result, dict):
        return {**result, "previous_run_died": lock.previous}
    return result
PUBLISH_TIMEOUT = 0.5  # seconds to connect to, or hear from, the broker before the work runs in this process
_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def _broker_connection(app: Any) -> Any:
    """A producer connection that gives up on a refused or silent broker within about a second (the defaults wait
    minutes on a broker that accepts and never answers)."""
    options = {**(app.conf.broker_transport_options or {}), "socket_timeout": PUBLISH_TIMEOUT,
               "socket_connect_timeout": PUBLISH_TIMEOUT}
    return app.connection_for_write(connect_timeout=PUBLISH_TIMEOUT, transport_options=options)


def _cannot_queue(task: Task) -> str | None:
    """Why ``task`` must not be sent to Celery from here (None: send it)."""
    if task.app.conf.task_always_eager:
        return ("Celery runs tasks eagerly (task_always_eager, e.g. no broker configured), which would run it "
                "inside this request")
    server = _redis_broker(task.app)
    if server is not None and circuit.is_open(server):
        return f"the Celery broker's Redis at {server} failed moments ago (PERSONALIZATION['REDIS_CIRCUIT_SECONDS'])"
    return None


def _redis_broker(app: Any) -> str | None:
    """The circuit-breaker key of the broker when it is a Redis server, else None."""
    url = app.conf.broker_write_url or app.conf.broker_url or ""
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return circuit.key_for_url(url)


def _publish(task: Task, **kwargs: Any) -> str:
    """Queue ``task`` for a worker, failing fast when the broker is unreachable; returns the task id.

    Results are not stored (the services record the outcome on their rows), so the result backend is not touched.
    """
    with _broker_connection(task.app) as connection:
        result = task.apply_async(kwargs=kwargs, connection=connection, ignore_result=True, retry=True,
                                  retry_policy=_PUBLISH_RETRY)
    return result.id


def _hand_over(task: Task, run: Callable[..., Any], name: str, **kwargs: Any) -> str | None:
    """Queue ``task`` with ``kwargs``, or run ``run(**kwargs)`` in a background thread when it cannot be queued.

    Returns the task id, or None when the work runs in this process.
    """
    reason = _cannot_queue(task)
    if reason is None:
        try:
            return _publish(task, **kwargs)
        except Exception as exc:  # noqa: BLE001 - kombu's OperationalError and the transports' socket errors
            server = _redis_broker(task.app)
            if server is not None:
                circuit.trip(server)  # the next hand-overs run here at once instead of waiting on it again
            url = maybe_sanitize_url(task.app.conf.broker_write_url or "")
            reason = f"the Celery broker at {url} is unreachable ({exc})"
            logger.warning("Could not queue %s: %s; running it in this process", task.name, reason)
    background_runs.start(name, run, reason=reason, **kwargs)
    return None


def _run_training(version_id: int, until: str | None = None, models: list[str] | None = None,
                  tune: bool = False) -> dict[str, Any]:
    """Train one queued version (the body of the task and of a background run)."""
    from personalization.models import ModelVersion
    from personalization.training import TrainingCancelled, TrainingError, train

    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None or version.status in {ModelVersion.Status.CANCELLED, ModelVersion.Status.FAILED}:
        # cancelled before it started, or reaped as never picked up: a late worker must not train it after all
        logger.info("Version %s is %s; not training it", version_id, version.status if version else "gone")
        return {"version": version_id, "status": version.status if version else None}
    try:
        version = train(version, until=datetime.fromisoformat(until) if until else None, models=models, tune=tune)
    except (TrainingCancelled, TrainingError) as exc:
        logger.warning("%s", exc)
    version.refresh_from_db()
    return {"version": version.pk, "status": version.status}


@shared_task(name="personalization.train_models", acks_late=True, reject_on_worker_lost=True)
def train_models(version_id: int, until: str | None = None, models: list[str] | None = None,
                 tune: bool = False) -> dict[str, Any]:
    """Train one queued ModelVersion (idempotent: a trained, cancelled or failed version is left untouched)."""
    return _run_training(version_id, until=until, models=models, tune=tune)


def send_training(sender: Any = None, *, version_id: int, until: str | None = None, models: list[str] | None = None,
                  tune: bool = False, **kwargs: Any) -> None:
    """``training_queued`` receiver: start the Celery task of a queued version and record its task id, or train it
    in a background thread of this process when the task cannot be queued."""
    from personalization.models import ModelVersion
    from personalization.training import run_name

    task_id = _hand_over(train_models, _run_training, run_name(version_id), version_id=version_id, until=until,
                         models=models, tune=tune)
    if task_id:
        ModelVersion.objects.filter(pk=version_id).update(task_id=task_id)


def revoke_training(sender: Any = None, *, task_ids: list[str], **kwargs: Any) -> None:
    """``training_cancelled`` receiver: revoke the tasks of versions cancelled before they started (best effort:
    a worker that gets one anyway finds the version cancelled and skips it)."""
    app = train_models.app
    if app.conf.task_always_eager:
        return
    try:
        with _broker_connection(app) as connection:
            app.control.revoke(task_ids, connection=connection)
    except Exception:  # noqa: BLE001
        logger.warning("Could not revoke tasks %s; workers will skip the cancelled versions", task_ids,
                       exc_info=True)


def stamp_worker_seen(sender: Any = None, **kwargs: Any) -> None:
    """``worker_ready`` / ``heartbeat_sent`` / ``task_prerun`` receiver: record that a worker is alive, for the
    system check ``personalization.W004`` (throttled to a cache write a minute)."""
    from personalization import workers

    workers.mark_seen()


@shared_task(name="personalization.reap_stale_runs")
def reap_stale_runs() -> list[int]:
    """Mark training runs without a heartbeat, and queued ones no worker started, as failed (beat, every 5 min)."""
    from personalization import training

    return training.reap_stale_runs()


@shared_task(name="personalization.update_models", autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=2)


def update_models(force: bool = False) -> dict[str, Any]:
    """Fold the events since the last run into the live model (beat: every UPDATE_INTERVAL_SECONDS)."""
    from personalization.updates import run_update

    return run_update(force=force).as_dict()


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

    One run at a time (a lock with a heartbeat, :mod:`personalization.run_locks`); a second run started meanwhile
    returns at once.
    """
    from personalization.delivery.notifications import send_notifications as run

    with RunLock("notifications") as lock:
        if not lock.held:
            logger.info("send_notifications: another run holds the lock; skipping")
            return {"skipped": "another run is in progress"}
        return _with_previous(run(now=datetime.fromisoformat(now) if now else None, rule_ids=rule_ids), lock)


@shared_task(name="personalization.aggregate_variant_stats", autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=3)


def aggregate_variant_stats() -> dict[str, int]:
    """Count content-block impressions and clicks per (slot, variant) into VariantStat for the bandit.

    Idempotent: incremental from the last counted event id (kept in the cache); without it, a full recount.
    """
    from personalization.delivery.blocks import aggregate_variant_stats as run

    return run()


@shared_task(name="personalization.aggregate_list_stats", autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=3)


def aggregate_list_stats(days: list[str] | None = None) -> dict[str, Any]:
    """Attribute new events to the lists they came from and recompute the touched days' ListDailyStat rows.

    Idempotent: a day is always recomputed whole; ``days`` (ISO dates) recomputes those days only. One run at a
    time (a lock with a heartbeat, :mod:`personalization.run_locks`)."""
    from datetime import date

    from personalization.monitoring.attribution import aggregate_list_stats as run

    with RunLock("list-stats") as lock:
        if not lock.held:
            logger.info("aggregate_list_stats: another run holds the lock; skipping")
            return {"skipped": "another run is in progress"}
        return _with_previous(run([date.fromisoformat(d) for d in days] if days is not None else None), lock)


@shared_task(name="personalization.purge_expired_data", autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=3)


def purge_expired_data() -> dict[str, int] | None:
    """Delete events, recommendation logs and notifications older than RETENTION_DAYS (None: the limit is off).

    Idempotent and batched: a retry continues where the last batch stopped."""
    from personalization.privacy import purge_expired

    return purge_expired()


def queue_precompute(sender: Any = None, version_id: int | None = None, **kwargs: Any) -> None:
    """``model_promoted`` receiver: refill the recommendation cache for the new live model (PRECOMPUTE_ON_PROMOTION).

    A missing broker must not undo a promotion: the precompute then runs in a background thread of this process,
    and any failure is logged.
    """
    from personalization.conf import settings
    from personalization.serving import precompute

    if not settings.PRECOMPUTE_ON_PROMOTION:
        return
    try:
        _hand_over(precompute_recommendations, precompute, f"precompute-v{version_id}")
    except Exception:  # noqa: BLE001 - e.g. no thread can be started: the promotion stands
        logger.warning("Could not start personalization.precompute_recommendations", exc_info=True)


@shared_task(name="personalization.precompute_recommendations", autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=3)


def precompute_recommendations(days: int | None = None, slots: list[str] | None = None,
                               limit: int | None = None) -> dict[str, int]:
    """Fill the recommendation cache for recently active visitors (run when a model goes live). Idempotent."""
    from personalization.serving import precompute

    return precompute(days=days, slots=slots, limit=limit)


@shared_task(name="personalization.persist_ingestion_counters", autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=3)


def persist_ingestion_counters() -> dict[str, dict[str, int]]:
    """Copy the last days' ingestion counters from the cache into IngestionCounter rows (hourly beat).

    Idempotent: values are set, never added."""
    from personalization.monitoring.counters import persist_counters

    return persist_counters()


def _run_audit(days: int = 1, baseline_days: int | None = None, trigger: str = "schedule") -> dict[str, Any]:
    from personalization.monitoring.audit import run_audit

    report = run_audit(days, baseline_days, trigger=trigger)
    return {"report": report.pk, "status": report.status}


@shared_task(name="personalization.audit_data", autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=3)


def audit_data(days: int = 1, baseline_days: int | None = None, trigger: str = "schedule") -> dict[str, Any]:
    """Audit the last ``days`` of event data against the days before and save an AuditReport (daily beat).

    A retry saves one more report; each stands on its own (the newest is the one shown)."""
    return _run_audit(days, baseline_days, trigger)


def send_audit(sender: Any = None, *, days: int = 1, trigger: str = "admin", **kwargs: Any) -> str | None:
    """``audit_requested`` receiver: start the audit on a worker, or in a background thread of this process when no
    worker can take it (the admin's *Run audit now*); returns the task id, or None when it runs here."""
    return _hand_over(audit_data, _run_audit, "audit", days=days, trigger=trigger)


@shared_task(name="personalization.detect_drift", autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=3)


def detect_drift(metrics: bool = False, now: str | None = None) -> dict[str, Any]:
    """Run the drift detectors (beat: ADWIN and PSI/KS every 15 min; with ``metrics=True`` daily, the live model
    re-scored on the newest day). Records detections and, with DRIFT_RETRAIN, queues a retrain. Idempotent: ADWIN
    continues from its watermark and a persisting shift is not recorded twice.

    One run at a time (a lock with a heartbeat, :mod:`personalization.run_locks`): ADWIN's state is read and
    written by one run only.
    """
    from personalization.monitoring.drift import detect

    with RunLock("drift") as lock:
        if not lock.held:
            logger.info("detect_drift: another run holds the lock; skipping")
            return {"skipped": "another run is in progress"}
        when = datetime.fromisoformat(now) if now else None
        if metrics:
            return _with_previous(detect(now=when, clicks=False, distributions=False, metrics=True).as_dict(), lock)
        return _with_previous(detect(now=when).as_dict(), lock)
