"""Pages show the lists serving precomputed: a tag asks for exactly the list it shows (the slot's n, no extras)."""

import pytest

from tests.caches import clear_cache
from tests.delivery.helpers import slot_items
from tests.serving.shop import counting, uncount

pytestmark = pytest.mark.django_db

HOME_SLOTS = ["home", "home-candles", "home-mugs", "home-cushions", "home-lanterns"]
VISITORS = 20  # the most recent; few enough for the embedded local-memory cache (300 entries) to keep their lists


def test_the_home_page_of_a_precomputed_visitor_makes_no_model_call(trained, browser):
    from django.core.cache import caches

    from personalization import serving
    from personalization.models import ContentBlock
    from personalization.tasks import precompute_recommendations
    from storefront_demo.shop.models import Product

    # The hero's variants show one slot's list per category ({% recommended_items slot="hero" category=... %}),
    # which precompute (a slot's list, without a category) does not fill: the hero shows its first variant here.
    ContentBlock.objects.create(slot="hero", active=False)
    for product in Product.objects.filter(category__slug="mugs").order_by("pk")[:3]:
        browser.get(product.get_absolute_url())
    visitor = f"v:{browser.visitor_id}"  # the most recently active visitor: precompute fills their lists first
    clear_cache(caches["default"])  # the events just now: the visitor's lists would still be settling
    stats = precompute_recommendations.delay(days=30, slots=HOME_SLOTS, limit=VISITORS).get()
    assert stats["visitors"] == VISITORS and stats["entries"] > 0
    _, system = serving.live_system()
    calls = counting(system)
    try:
        precomputed = {slot: serving.recommend(visitor, slot=slot) for slot in HOME_SLOTS}
        assert {s: r.cached for s, r in precomputed.items()} == {s: True for s in HOME_SLOTS}
        html = browser.get("/").content.decode()
    finally:
        uncount(system)
    assert calls == {"recommend": 0, "similar_items": 0}
    for slot, result in precomputed.items():
        assert result.model_version == trained.pk and not result.fallback
        assert slot_items(html, slot) == result.keys(), slot
    assert len(slot_items(html, "home")) == 8 and len(slot_items(html, "home-mugs")) == 4
