"""Production path: a real Celery worker folds new events into the live model; this (web) process serves them."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

import personalization
from personalization.models import Event, ModelVersion

pytestmark = pytest.mark.integration


def test_worker_update_reaches_serving_without_a_retrain(celery_worker_process):
    from personalization.training import train
    from storefront_demo.shop.models import Category, Product

    call_command("demo", "--products", "40", "--visitors", "80", "--days", "20", "--seed", "4", "--no-progress",
                 "--no-train", stdout=StringIO())
    version = train(ModelVersion.objects.create(), models=["popularity", "itemknn", "als"])
    assert version.status == ModelVersion.Status.LIVE
    neighbour = Event.objects.exclude(item_key="").values_list("item_key", flat=True).first()
    new = Product.objects.create(sku="NEW-INT", name="New", price=5, category=Category.objects.first()).item_key
    assert personalization.similar_items(new) == []
    now = timezone.now()
    Event.objects.bulk_create([
        Event(event_type="view", item_key=item, visitor_id=f"int{v}", occurred_at=now + timedelta(seconds=i),
              received_at=now) for v in range(5) for i, item in enumerate((neighbour, new, neighbour))])

    result = celery_worker_process.send_task("personalization.update_models", kwargs={"force": True}).get(timeout=120)

    assert result["status"] == "updated", celery_worker_process.worker_log.read_text()[-3000:]
    assert ModelVersion.objects.get(pk=version.pk).update_revision == 1
    deadline = time.monotonic() + 30  # this process applies the published delta in a background thread
    while time.monotonic() < deadline:
        if neighbour in [r.item for r in personalization.similar_items(new)]:
            break
        time.sleep(0.2)
    assert neighbour in [r.item for r in personalization.similar_items(new)]
    assert new in [r.item for r in personalization.similar_items(neighbour, n=100)]
