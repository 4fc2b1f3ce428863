"""A small shop whose shoppers each keep to one category, trained into a live model (ALS + popularity).

Item vectors of such a history cluster by category, which is what the re-ranking tests look for. Shared by the
bundle API tests and the browser test (tests/browser/test_on_device_reranking.py).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np

CATEGORIES = ("candles", "mugs", "lamps", "rugs")
PER_CATEGORY = 8
VISITORS = 120
ALS_FACTORS = 16


def make_shop(seed: int = 7) -> dict[str, Any]:
    """Products of four categories and a month of views and purchases; returns products by category and the
    visitor ids (each with their category)."""
    from django.utils import timezone

    from personalization.models import Event
    from storefront_demo.shop.models import Category, Product

    rng = np.random.default_rng(seed)
    by_category: dict[str, list[Any]] = {}
    for c, slug in enumerate(CATEGORIES):
        category = Category.objects.create(name=slug.title(), slug=slug)
        by_category[slug] = [
            Product.objects.create(sku=f"{slug[:3].upper()}-{i}", name=f"{slug.title()[:-1]} {i}",
                                   price=Decimal("5.00") + c + i, category=category)
            for i in range(PER_CATEGORY)
        ]
    now = timezone.now()
    events, visitors = [], {}
    for v in range(VISITORS):
        visitor = f"{v:032x}"
        favourite = CATEGORIES[v % len(CATEGORIES)]
        visitors[visitor] = favourite
        for _ in range(int(rng.integers(8, 14))):
            slug = favourite if rng.random() < 0.92 else CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            product = by_category[slug][int(rng.integers(PER_CATEGORY))]
            when = now - timedelta(days=float(rng.uniform(0.5, 30)))
            kind = "purchase" if rng.random() < 0.1 else "view"
            events.append(Event(event_type=kind, item_key=f"product:{product.pk}", visitor_id=visitor,
                                occurred_at=when, received_at=when, source="python", context={}))
    Event.objects.bulk_create(events)
    return {"products": by_category, "visitors": visitors}


def train_live(settings: Any) -> Any:
    """Train one version with ALS (16 factors) and popularity; it goes live (the first version always does).

    ``settings`` is pytest-django's fixture: the ALS size is set through ``PERSONALIZATION["TRAINING"]``.
    """
    from personalization.conf import DEFAULTS
    from personalization.models import ModelVersion
    from personalization.training import train

    training = {**DEFAULTS["TRAINING"], "ranker": None,
                "models": {"als": {"factors": ALS_FACTORS, "regularization": 1.0, "iterations": 20}, "popularity": {}}}
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": training}
    version = train(ModelVersion.objects.create())
    assert version.status == ModelVersion.Status.LIVE, version.error
    return version
