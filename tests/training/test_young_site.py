"""A young site's first trainings: traffic that came in a burst, too little history to hold a window out."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from personalization import registry
from personalization.models import Event, ModelVersion
from personalization.training import train

FAST = ["popularity", "itemknn"]


@pytest.fixture
def burst(db, settings, tmp_path, make_product):
    """What a new shop sees after its launch: 40 visitors clicking through 30 products within about ten seconds."""
    settings.MEDIA_ROOT = str(tmp_path / "media")  # artifacts beside it, in this test's folder
    products = [make_product() for _ in range(30)]
    rng = random.Random(5)
    start = timezone.now() - timedelta(minutes=5)

    def make(count: int, spread_seconds: float) -> None:
        rows = []
        for i in range(count):
            at = start + timedelta(seconds=spread_seconds * i / count)
            product = products[rng.randrange(len(products))]
            rows.append(Event(event_id=uuid.uuid4(), event_type=rng.choice(["view", "view", "click", "add_to_cart"]),
                              item_key=f"product:{product.pk}", visitor_id=f"visitor{rng.randrange(40):02d}",
                              occurred_at=at, received_at=at, source="api"))
        Event.objects.bulk_create(rows)

    return make


def test_a_burst_of_traffic_trains_and_goes_live(burst):
    burst(477, spread_seconds=10)
    version = train(ModelVersion.objects.create(), models=FAST)
    assert version.status == ModelVersion.Status.LIVE
    assert version.data_start < version.cutoff <= version.data_end
    held_out = Event.objects.filter(occurred_at__gte=version.cutoff).count()
    assert 0 < held_out <= 0.2 * 477 + 1  # a share of the events, not of a few seconds' span


def test_too_little_history_trains_on_everything_and_goes_live_unevaluated(burst):
    burst(60, spread_seconds=0)  # every event at the same instant: nothing can be held out
    version = train(ModelVersion.objects.create(), models=FAST)
    assert version.status == ModelVersion.Status.LIVE
    assert version.cutoff is None and version.score is None
    assert "trained on everything" in version.test_metrics["unevaluated"]
    out = StringIO()
    call_command("personalization_evaluate", str(version.pk), stdout=out)
    assert "Not evaluated: too little history" in out.getvalue()


def test_a_newer_unevaluated_version_replaces_an_unevaluated_live_one(burst):
    burst(60, spread_seconds=0)
    first = train(ModelVersion.objects.create(), models=FAST)
    Event.objects.update(occurred_at=timezone.now() - timedelta(minutes=1))  # the same history, seen later
    second = train(ModelVersion.objects.create(), models=FAST)
    assert registry.live_version() == second and second.previous == first


def test_too_few_events_say_what_helps(burst):
    burst(20, spread_seconds=10)
    version = ModelVersion.objects.create()
    with pytest.raises(Exception, match="Only 20 usable events"):
        train(version, models=FAST)
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.FAILED
    assert "personalization_import" in version.error and "TRAINING['min_events']" in version.error
