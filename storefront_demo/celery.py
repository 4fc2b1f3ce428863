"""Celery application of the demo project.

Settings prefixed ``CELERY_`` in ``storefront_demo.settings`` configure it. Without ``CELERY_BROKER_URL`` tasks run
eagerly in-process, so the demo works with no broker at all.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront_demo.settings")

app = Celery("storefront_demo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
