"""Celery beat entries for a host's ``CELERY_BEAT_SCHEDULE`` (plain data: safe to import from settings)."""

from celery.schedules import crontab

BEAT_SCHEDULE = {
    "personalization-flush-events": {"task": "personalization.flush_events", "schedule": 5.0},
    "personalization-nightly-retrain": {"task": "personalization.scheduled_retrain",
                                        "schedule": crontab(hour=3, minute=17)},
    # hourly, so messages deferred by quiet hours go out soon after they end in each user's zone
    "personalization-send-notifications": {"task": "personalization.send_notifications",
                                           "schedule": crontab(minute=7)},
    # content-block bandit statistics: fresh enough that a better variant wins within minutes
    "personalization-aggregate-variant-stats": {"task": "personalization.aggregate_variant_stats",
                                                "schedule": 300.0},
    # training runs without a heartbeat, and queued ones no worker started, are marked failed (DESIGN rule 10)
    # new events folded into the live model between retrains; the task itself waits UPDATE_INTERVAL_SECONDS
    # between runs (0: off), so this tick only bounds how late a run starts (one cache read when not due)
    "personalization-update-models": {"task": "personalization.update_models", "schedule": 5.0},
    "personalization-reap-stale-runs": {"task": "personalization.reap_stale_runs", "schedule": 300.0},
    # RETENTION_DAYS: events, recommendation logs and notifications past the limit are deleted (a no-op without it)
    "personalization-purge-expired-data": {"task": "personalization.purge_expired_data",
                                           "schedule": crontab(hour=4, minute=41)},
    # ingestion counters (bots, rate-limited, duplicates...) copied from the cache to IngestionCounter rows
    "personalization-persist-ingestion-counters": {"task": "personalization.persist_ingestion_counters",
                                                   "schedule": crontab(minute=53)},
    # the daily data audit: yesterday (UTC) against the 28 days before (AuditReport rows; README "Insight")
    "personalization-audit-data": {"task": "personalization.audit_data", "schedule": crontab(hour=0, minute=23)},

    # online measurement: outcomes of served lists per day, slot, model version and A/B arm (ListDailyStat)
    "personalization-aggregate-list-stats": {"task": "personalization.aggregate_list_stats", "schedule": 600.0},

    # drift (README "Learning loop"): ADWIN on each slot's clicks and PSI/KS on the traffic, every 15 minutes ...
    "personalization-detect-drift": {"task": "personalization.detect_drift", "schedule": crontab(minute="*/15")},
    # ... and the live model re-scored on the newest day, compared with its validation metric, once a day
    "personalization-detect-metric-drift": {"task": "personalization.detect_drift",
                                            "schedule": crontab(hour=5, minute=23), "kwargs": {"metrics": True}},
}
