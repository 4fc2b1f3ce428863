"""Celery beat entries for a host's ``CELERY_BEAT_SCHEDULE`` (plain data: safe to import from settings)."""

from celery.schedules import crontab

BEAT_SCHEDULE = {
    "personalization-flush-events": {"task": "personalization.flush_events", "schedule": 5.0},
    "personalization-nightly-retrain": {"task": "personalization.scheduled_retrain",
                                        "schedule": crontab(hour=3, minute=17)},
}
