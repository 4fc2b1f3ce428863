"""A headless site whose CATALOG names no item type: serving has no table to check items against, so the live
model's items (and popular ones) are served as they are; a site with a catalog still never gets deleted items."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from personalization import serving
from personalization.models import Event, ModelVersion
from personalization.training import train


@pytest.fixture
def headless_history(db, settings, tmp_path):
    """Three weeks of views and a few purchases of 200 articles ("article:<n>") by 60 readers; no CATALOG at all."""
    settings.MEDIA_ROOT = str(tmp_path / "media")  # artifacts beside it, in this test's folder
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CATALOG": {}, "ITEM_TYPES": ["article"]}
    rng = random.Random(8)
    start = timezone.now() - timedelta(days=21)
    rows = []
    for i in range(1500):
        at = start + timedelta(minutes=20 * i)
        reader = rng.randrange(60)
        article = (reader % 5) * 40 + rng.randrange(40)  # each reader sticks to one of five topics
        rows.append(Event(event_id=uuid.uuid4(), event_type="purchase" if rng.random() < 0.03 else "view",
                          item_key=f"article:{article}", visitor_id=f"reader{reader:02d}", occurred_at=at,
                          received_at=at, source="import"))
    Event.objects.bulk_create(rows)


def test_a_site_without_a_catalog_gets_the_live_models_lists(headless_history):
    version = train(ModelVersion.objects.create(), models=["popularity", "itemknn"])
    assert version.status == ModelVersion.Status.LIVE
    known = serving.recommend("reader03", 5)
    assert len(known.keys()) == 5 and known.model_version == version.pk and not known.fallback
    assert all(key.startswith("article:") for key in known.keys())
    newcomer = serving.recommend("v:" + "9" * 32, 5)
    assert len(newcomer.keys()) == 5 and newcomer.fallback == "popularity"


def test_a_site_with_a_catalog_still_drops_items_it_does_not_have(make_product):
    product = make_product()
    now = timezone.now()
    Event.objects.bulk_create([
        Event(event_type="view", item_key=key, visitor_id="a" * 32, occurred_at=now, received_at=now)
        for key in (f"product:{product.pk}", f"product:{product.pk + 1000}")  # the second one was deleted
    ])
    assert serving.recommend("v:" + "7" * 32, 5).keys() == [f"product:{product.pk}"]
