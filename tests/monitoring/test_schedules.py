"""Beat entries are django-celery-beat periodic tasks: created by migrate, kept when staff edit them, listed in the
admin (issue part 6)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from personalization.periodic_tasks import install_periodic_tasks
from personalization.schedules import BEAT_SCHEDULE

pytestmark = pytest.mark.django_db


def test_every_beat_entry_exists_as_a_periodic_task_after_migrate():
    # the test database was built by migrate: its post_migrate receiver created the rows
    tasks = {t.name: t for t in PeriodicTask.objects.filter(name__in=list(BEAT_SCHEDULE))}
    assert set(tasks) == set(BEAT_SCHEDULE)
    assert tasks["personalization-detect-drift"].task == "personalization.detect_drift"
    assert tasks["personalization-detect-drift"].crontab.minute == "*/15"
    assert tasks["personalization-detect-metric-drift"].kwargs == '{"metrics": true}'
    assert tasks["personalization-flush-events"].interval.every == 5
    assert tasks["personalization-flush-events"].interval.period == IntervalSchedule.SECONDS
    nightly = tasks["personalization-nightly-retrain"].crontab
    assert (nightly.hour, nightly.minute) == ("3", "17")
    assert all(t.enabled for t in tasks.values())


def test_a_staff_edit_survives_another_migrate_and_a_missing_entry_comes_back():
    nightly = PeriodicTask.objects.get(name="personalization-nightly-retrain")
    nightly.crontab = CrontabSchedule.objects.create(hour="1", minute="5")
    nightly.save()
    PeriodicTask.objects.filter(name="personalization-detect-drift").update(enabled=False)
    PeriodicTask.objects.filter(name="personalization-send-notifications").delete()

    call_command("migrate", interactive=False, verbosity=0, stdout=StringIO())

    nightly.refresh_from_db()
    assert (nightly.crontab.hour, nightly.crontab.minute) == ("1", "5")  # staff's schedule, not the default
    assert not PeriodicTask.objects.get(name="personalization-detect-drift").enabled
    assert PeriodicTask.objects.filter(name="personalization-send-notifications").exists()
    assert install_periodic_tasks() == []  # nothing left to create: it never writes over a row


def test_the_admin_lists_the_periodic_tasks_for_staff(admin_client):
    response = admin_client.get("/admin/django_celery_beat/periodictask/")
    assert response.status_code == 200
    page = response.content.decode()
    for name in ("personalization-nightly-retrain", "personalization-detect-drift", "personalization-flush-events"):
        assert name in page


def test_the_demo_uses_the_database_scheduler_without_a_schedule_that_would_overwrite_it(settings):
    from django.core.checks import run_checks

    assert settings.CELERY_BEAT_SCHEDULER == "django_celery_beat.schedulers:DatabaseScheduler"
    assert not getattr(settings, "CELERY_BEAT_SCHEDULE", None)
    assert "personalization.W061" not in {m.id for m in run_checks()}
    settings.CELERY_BEAT_SCHEDULE = BEAT_SCHEDULE
    assert "personalization.W061" in {m.id for m in run_checks()}
