"""System checks: configuration mistakes are reported at start-up with a hint, not found in production."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

MIDDLEWARE_PATHS = {
    "personalization.middleware.TrackingMiddleware",
    "personalization.tracking.middleware.TrackingMiddleware",
}


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list:
    from personalization.conf import settings

    errors: list = []
    try:
        settings.reload()
        settings.user_settings  # noqa: B018 - validates unknown keys
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="Fix the PERSONALIZATION setting.", id="personalization.E001")]

    for name in ("CATALOG_ADAPTER", "COLLECTOR_BACKEND", "CONSENT_CALLBACK"):
        try:
            getattr(settings, name)
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), hint="Give a dotted path to an importable class or function.",
                                id="personalization.E002"))

    from personalization.catalog import ModelCatalogAdapter, get_catalog

    try:
        adapter = get_catalog()
        if isinstance(adapter, ModelCatalogAdapter):
            adapter.types  # noqa: B018 - resolves the models named in CATALOG
            if not adapter.types:
                errors.append(Warning(
                    'PERSONALIZATION["CATALOG"] is empty: no page will record views and no item has features.',
                    hint='Add e.g. {"product": {"model": "shop.Product", "url_names": ["shop:product"]}}.',
                    id="personalization.W002",
                ))
    except (ImproperlyConfigured, TypeError) as exc:
        errors.append(Error(str(exc), hint="Fix PERSONALIZATION['CATALOG'] or CATALOG_ADAPTER.",
                            id="personalization.E003"))

    if not MIDDLEWARE_PATHS & set(getattr(django_settings, "MIDDLEWARE", [])):
        errors.append(Warning(
            "TrackingMiddleware is not installed: page views are not recorded and visitors get no cookie.",
            hint='Add "personalization.middleware.TrackingMiddleware" to MIDDLEWARE after AuthenticationMiddleware.',
            id="personalization.W001",
        ))

    caches = getattr(django_settings, "CACHES", {})
    backend = caches.get(settings.CACHE_ALIAS, {}).get("BACKEND", "")
    if not backend:
        errors.append(Error(f"Cache alias {settings.CACHE_ALIAS!r} is not configured.",
                            hint="Configure it in CACHES or set PERSONALIZATION['CACHE_ALIAS'].",
                            id="personalization.E004"))
    elif backend.endswith("DummyCache"):
        errors.append(Warning(
            "Tracking and serving use a DummyCache: rate limits, bot counters and recommendation caching are off.",
            hint="Use Redis (or local memory for a single process).", id="personalization.W003",
        ))

    for name in settings.event_types:
        if not name.isidentifier() or len(name) > 32:
            errors.append(Error(f"Event type {name!r} must be an identifier of at most 32 characters.",
                                id="personalization.E005"))
    if settings.CONSENT_REQUIRED and not callable(settings.CONSENT_CALLBACK):
        errors.append(Error("CONSENT_REQUIRED is on but CONSENT_CALLBACK is not callable.", id="personalization.E006"))
    if settings.IP_STORAGE not in {"truncate", "drop"}:
        errors.append(Error(f"IP_STORAGE must be 'truncate' or 'drop', not {settings.IP_STORAGE!r}.",
                            id="personalization.E007"))
    cap = settings.TRAINING["eval_max_users"]
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        errors.append(Error(f"TRAINING['eval_max_users'] must be a positive integer or None, not {cap!r}.",
                            hint="E.g. 10000: each model is scored on a seeded sample of that many test-window "
                                 "users; None scores all of them (slow on large sites).",
                            id="personalization.E008"))
    workers = settings.TRAINING["extract_connections"]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        errors.append(Error(f"TRAINING['extract_connections'] must be a positive integer, not {workers!r}.",
                            hint="1 extracts training events over one database connection; 2 (the default) "
                                 "copies a large window in two time slices at once.",
                            id="personalization.E009"))
    for name in ("NEAR_CACHE_SECONDS", "NEAR_CACHE_MAX_BYTES"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            errors.append(Error(f"{name} must be a positive number, not {value!r}.",
                                hint="Set NEAR_CACHE to False to turn the near cache off.",
                                id="personalization.E010"))
    return errors


@register(Tags.compatibility)
def check_training_runs(app_configs: Any = None, **kwargs: Any) -> list:
    """Training runs: a valid staleness limit, and a Celery worker seen lately when tasks go through a broker.

    The worker check reads the stamp workers write in the cache (``personalization.workers``) with a one-second
    timeout; it never pings the broker, so ``manage.py check`` stays fast and cannot hang.
    """
    import time

    from celery import current_app

    from personalization import workers
    from personalization.conf import settings

    try:
        stale = settings.TRAINING["stale_after_seconds"]
    except ImproperlyConfigured:
        return []  # check_settings reports the broken setting
    if isinstance(stale, bool) or not isinstance(stale, (int, float)) or stale <= 0:
        return [Error(f"TRAINING['stale_after_seconds'] must be a positive number of seconds, not {stale!r}.",
                      hint="E.g. 900: a training run silent that long, or a queued one no worker started in that "
                           "time, is marked failed.", id="personalization.E020")]
    conf = current_app.conf
    if conf.task_always_eager or not conf.broker_url:
        return []  # tasks run in-process: there is no worker to miss
    try:
        seen = workers.last_seen(timeout=1.0)
    except Exception as exc:  # noqa: BLE001 - the cache's own errors, or no answer in time
        return [Warning(f"Could not read whether a Celery worker is running: {exc}.",
                        hint=f"Check the cache {settings.CACHE_ALIAS!r}.", id="personalization.W004")]
    if seen is not None and time.time() - seen <= stale:
        return []
    when = "has ever been seen" if seen is None else f"has been seen for {(time.time() - seen) / 60:.0f} minutes"
    return [Warning(
        f"A Celery broker is configured but no worker {when}: trainings queued now are marked failed after "
        f"{stale / 60:g} minutes, and the precompute after a promotion never runs.",
        hint="Start one (`celery -A <project> worker`), with the same cache as the web processes: workers record "
             "that they are alive in it (a per-process local-memory cache cannot share that). See the README, "
             '"Models and training".',
        id="personalization.W004",
    )]
