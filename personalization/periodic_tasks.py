"""The app's beat entries as django-celery-beat periodic tasks that staff see and change in the admin.

:func:`install_periodic_tasks` creates every entry of ``schedules.BEAT_SCHEDULE`` that has no ``PeriodicTask`` row
of the same name, and never touches an existing row: a schedule staff changed, or an entry they disabled, stays as
they left it. It runs after every ``migrate`` (a ``post_migrate`` receiver connected in ``AppConfig.ready()``), so
entries added by a later release appear on upgrade, and from ``manage.py demo``.

A deleted row comes back at the next migrate; to stop an entry, untick *enabled* instead. Celery beat must run
with ``--scheduler django_celery_beat.schedulers:DatabaseScheduler`` (or ``CELERY_BEAT_SCHEDULER``) and without
``CELERY_BEAT_SCHEDULE``: that scheduler writes every entry of ``CELERY_BEAT_SCHEDULE`` over its row each time beat
starts, which would undo staff's edits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction

from personalization.schedules import BEAT_SCHEDULE

__all__ = ["install_on_migrate", "install_periodic_tasks"]

logger = logging.getLogger("personalization.periodic_tasks")


def install_periodic_tasks(schedule: Mapping[str, Mapping[str, Any]] | None = None, *,
                           using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create the ``PeriodicTask`` rows missing for ``schedule`` (default: ``BEAT_SCHEDULE``); returns their names.

    A no-op (empty list) without ``django_celery_beat`` in INSTALLED_APPS or before its tables exist.
    """
    if not apps.is_installed("django_celery_beat"):
        return []
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import ModelEntry

    if not router.allow_migrate_model(using, PeriodicTask):
        return []
    if PeriodicTask._meta.db_table not in connections[using].introspection.table_names():
        return []  # e.g. `migrate personalization` before django_celery_beat's own migrations
    schedule = BEAT_SCHEDULE if schedule is None else schedule
    existing = set(PeriodicTask.objects.using(using).filter(name__in=list(schedule)).values_list("name", flat=True))
    created = []
    for name, entry in schedule.items():
        if name in existing:
            continue
        with transaction.atomic(using=using):
            # django-celery-beat's own conversion: interval, crontab and solar schedules, args, kwargs, options
            fields = ModelEntry._unpack_fields(**entry)
            _, made = PeriodicTask.objects.using(using).get_or_create(name=name, defaults=fields)
        if made:
            created.append(name)
    if created:
        logger.info("Created periodic tasks: %s", ", ".join(created))
    return created


def install_on_migrate(sender: Any = None, *, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """``post_migrate`` receiver (sender: this app): add the beat entries a release brought."""
    install_periodic_tasks(using=using)
