"""Production path: a real Celery worker trains a version on PostgreSQL; this (web) process serves it."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

import personalization
from personalization.models import Event, ModelVersion

pytestmark = pytest.mark.integration


def test_worker_trains_and_the_web_process_serves_the_new_version(celery_worker_process):
    call_command("demo", "--products", "40", "--visitors", "80", "--days", "20", "--seed", "4", "--no-progress",
                 "--no-train", stdout=StringIO())
    version = ModelVersion.objects.create()

    result = celery_worker_process.send_task(
        "personalization.train_models", kwargs={"version_id": version.pk, "models": ["popularity", "itemknn", "als"]}
    ).get(timeout=300)

    assert result == {"version": version.pk, "status": "live"}, celery_worker_process.worker_log.read_text()[-3000:]
    version.refresh_from_db()
    assert version.test_metrics["system"]["ndcg@10"] > 0
    visitor = Event.objects.exclude(item_key="").values_list("visitor_id", flat=True).first()
    served = personalization.recommend(visitor, n=5)
    assert served.model_version == version.pk and not served.fallback
    assert len(served.keys()) == 5
