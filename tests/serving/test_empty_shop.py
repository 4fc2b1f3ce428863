"""A new shop's first events: an empty popularity list is never cached for long, on any cache backend.

(Apart from the trained shop of ``test_processes.py``: these tests need a database without events.)
"""

from __future__ import annotations

import time

from django.utils import timezone

from personalization import serving
from personalization.models import Event
from personalization.serving import orchestration, popular


def test_a_shops_first_events_show_within_seconds_not_after_the_cache_ttl(make_product, monkeypatch):
    monkeypatch.setattr(popular, "EMPTY_POPULAR_SECONDS", 1)
    monkeypatch.setattr(orchestration, "EMPTY_POPULAR_SECONDS", 1)
    visitor = "v:" + "7" * 32
    first = serving.recommend(visitor, 3)
    assert first.items == [] and first.fallback == "popularity"  # a brand-new shop: nothing to show yet
    products = [make_product() for _ in range(3)]
    now = timezone.now()
    Event.objects.bulk_create([Event(event_type="view", item_key=f"product:{p.pk}", visitor_id="a" * 32,
                                     occurred_at=now, received_at=now) for p in products])
    time.sleep(1.1)

    later = serving.recommend(visitor, 3)

    assert sorted(later.keys()) == sorted(f"product:{p.pk}" for p in products)
    assert later.fallback == "popularity" and later.model_version is None


def test_a_non_empty_popularity_list_stays_cached(make_product):
    product = make_product()
    now = timezone.now()
    Event.objects.create(event_type="view", item_key=f"product:{product.pk}", visitor_id="a" * 32,
                         occurred_at=now, received_at=now)
    assert serving.recommend("v:" + "7" * 32, 3).keys() == [f"product:{product.pk}"]

    assert serving.recommend("v:" + "7" * 32, 3).cached
