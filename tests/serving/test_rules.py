"""Business rules, diversity, exploration and cold start of serving.recommend() over a live model."""

from __future__ import annotations

from collections import Counter

import pytest

from personalization import serving
from personalization.freshness import invalidate_visitor
from personalization.models import Event
from tests.caches import clear_cache
from tests.serving.shop import active_visitor


@pytest.fixture
def slots(settings):
    """Configure PERSONALIZATION["SLOTS"]: ``slots(name=rules, ...)``."""

    def configure(**specs):
        settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SLOTS": {"default": {}, **specs}}

    return configure


def _category(keys):
    from personalization.catalog import get_catalog

    return {row["item"]: row.get("category") for row in get_catalog().features(keys)}


def _product(key):
    from storefront_demo.shop.models import Product

    return Product.objects.get(pk=int(key.split(":")[1]))


def _similar_pool(item, n=15):
    return serving.recommend("v:" + "f" * 32, n, item=item, slot="loose").keys()


def _visitors(count):
    return list(Event.objects.exclude(item_key="").order_by("visitor_id").values_list("visitor_id", flat=True)
                .distinct()[:count])


def _busy_item():
    return Event.objects.filter(event_type="purchase").values_list("item_key", flat=True).order_by("item_key").first()


def test_purchased_and_in_cart_items_are_excluded_unless_the_slot_allows_them(shop, slots):
    slots(loose={"exclude_purchased": False, "exclude_in_cart": False}, strict={})
    visitor = "f" * 32
    item = _busy_item()
    bought, carted, removed = _similar_pool(item)[:3]
    Event.objects.bulk_create([
        Event(event_type="purchase", item_key=bought, visitor_id=visitor, occurred_at=_now(), received_at=_now()),
        Event(event_type="add_to_cart", item_key=carted, visitor_id=visitor, occurred_at=_now(), received_at=_now()),
        Event(event_type="add_to_cart", item_key=removed, visitor_id=visitor, occurred_at=_now(), received_at=_now()),
        Event(event_type="remove_from_cart", item_key=removed, visitor_id=visitor, occurred_at=_now(1),
              received_at=_now()),
    ])
    invalidate_visitor(f"v:{visitor}")
    strict = serving.recommend(visitor, 15, item=item, slot="strict").keys()
    assert bought not in strict and carted not in strict
    assert removed in strict  # taken out of the cart again: recommendable
    loose = serving.recommend(visitor, 15, item=item, slot="loose").keys()
    assert bought in loose and carted in loose


def test_viewed_items_may_come_back_unless_the_slot_excludes_them(shop, slots):
    slots(default={}, fresh={"exclude_viewed": True})
    visitor = "e" * 32
    item = _busy_item()
    viewed = [item, *_similar_pool(item)[:2]]
    Event.objects.bulk_create([Event(event_type="view", item_key=key, visitor_id=visitor, occurred_at=_now(i),
                                     received_at=_now()) for i, key in enumerate(viewed)])
    invalidate_visitor(f"v:{visitor}")
    again = serving.recommend(visitor, 20)
    assert set(viewed) & set(again.keys())  # the ranker brings some of them back, as repeats
    assert all(r.reason == "history" for r in again.items if r.item in viewed)
    fresh = serving.recommend(visitor, 20, slot="fresh")
    assert len(fresh.keys()) == 20 and not set(viewed) & set(fresh.keys())
    history = serving.recommend("d" * 32, 20, slot="fresh", history=viewed[:2]).keys()
    assert len(history) == 20 and not set(viewed[:2]) & set(history)


def _now(seconds=0):
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() + timedelta(seconds=seconds)


def test_unavailable_items_are_never_recommended(shop, slots):
    slots(loose={"exclude_purchased": False, "exclude_in_cart": False})
    item = _busy_item()
    first = _similar_pool(item)[0]
    product = _product(first)
    product.in_stock = False
    product.save()
    from django.core.cache import caches

    clear_cache(caches["default"])  # the catalog cache would keep it for CATALOG_CACHE_SECONDS
    assert first not in _similar_pool(item)
    assert first not in serving.recommend(active_visitor(), 20).keys()


def test_category_price_and_brand_filters(shop, slots):
    from storefront_demo.shop.models import Product

    prices = sorted(float(p) for p in Product.objects.values_list("price", flat=True))
    low, high = prices[len(prices) // 4], prices[3 * len(prices) // 4]
    brand = Product.objects.exclude(brand=None).values_list("brand__name", flat=True).first()
    slots(cheap={"price_min": low, "price_max": high}, candles={"categories": ["candles"]}, brand={"brands": [brand]})
    visitor = active_visitor()
    for key in serving.recommend(visitor, 8, slot="cheap").keys():
        assert low <= float(_product(key).price) <= high
    keys = serving.recommend(visitor, 5, slot="candles").keys()
    assert keys and set(_category(keys).values()) == {"candles"}
    keys = serving.recommend(visitor, 5, category="mugs").keys()
    assert keys and set(_category(keys).values()) == {"mugs"}
    keys = serving.recommend(visitor, 3, slot="brand").keys()
    assert keys and {_product(k).brand.name for k in keys} == {brand}


def test_boost_pinned_and_category_cap(shop, slots):
    visitor = active_visitor()
    plain = serving.recommend(visitor, 10)
    cats = _category(plain.keys())
    weakest = Counter(cats.values()).most_common()[-1][0]
    slots(boosted={"boost": {weakest: 50.0}})
    boosted = serving.recommend(visitor, 10, slot="boosted")
    boosted_cats = _category(boosted.keys())
    share = Counter(boosted_cats.values())[weakest]
    assert share >= Counter(cats.values())[weakest]
    # x50 on a relevance scaled to 0.05..1: every candidate of the category outranks every other item
    assert [boosted_cats[k] == weakest for k in boosted.keys()] == [True] * share + [False] * (10 - share)

    pinned = [k for k in _similar_pool(_busy_item())[-2:]]
    slots(pins={"pinned": pinned + ["product:99999"]}, capped={"max_per_category": 2})
    result = serving.recommend(visitor, 6, slot="pins")
    assert result.keys()[:2] == pinned and [r.reason for r in result.items[:2]] == ["pinned", "pinned"]
    assert len(set(result.keys())) == 6
    capped = serving.recommend(visitor, 10, slot="capped")
    assert max(Counter(_category(capped.keys()).values()).values()) <= 2


def test_mmr_diversity_lowers_the_same_category_share(shop, slots):
    slots(plain={}, mmr={"diversity": "mmr", "mmr_lambda": 0.3}, spread={"diversity": "category"})
    visitors = _visitors(15)

    def same_category_pairs(slot):
        total = 0
        for visitor in visitors:
            cats = list(_category(serving.recommend(visitor, 8, slot=slot).keys()).values())
            total += sum(c * (c - 1) // 2 for c in Counter(cats).values())
        return total

    plain = same_category_pairs("plain")
    assert same_category_pairs("mmr") < plain
    assert same_category_pairs("spread") < plain


@pytest.mark.parametrize("method,rate", [("epsilon", 0.3), ("thompson", 0.15)])
def test_exploration_rate_is_respected(shop, slots, settings, method, rate):
    slots(explore={"exploration": method, "exploration_rate": rate})
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "RECOMMENDATION_CACHE_SECONDS": 0}
    serving.seed_exploration(7)
    visitors = _visitors(20)
    explored = positions = 0
    for i in range(100):
        result = serving.recommend(visitors[i % len(visitors)], 10, slot="explore")
        positions += len(result.items)
        explored += sum(r.reason == f"exploration:{method}" for r in result.items)
    serving.seed_exploration(None)
    assert positions == 1000
    assert abs(explored / positions - rate) < 0.05  # about 3.5 standard deviations


def test_more_like_this_item(shop):
    item = _busy_item()
    result = serving.recommend("v:" + "e" * 32, 5, item=item)
    assert len(result.keys()) == 5 and item not in result.keys()
    assert all(r.reason == f"similar:{item}" for r in result.items)
    assert result.model_version == shop.pk and not result.fallback


def test_cold_visitors_get_session_based_then_context_popular_items(shop):
    _, system = serving.live_system()
    item = _busy_item()
    # an anonymous visitor who just viewed one item: recommendations grow from that session
    fresh = "a" * 32
    Event.objects.create(event_type="view", item_key=item, visitor_id=fresh, occurred_at=_now(), received_at=_now())
    result = serving.recommend(fresh, 5)
    assert result.model_version == shop.pk
    assert any(r.reason.endswith(f"because {item}") for r in result.items)
    assert all(r.reason == "history" for r in result.items if r.item == item)  # may come back, as a repeat
    # nobody at all: popular items of their country
    country = next(s for s in system.families_["popularity"].segments_ if s.startswith("country="))
    result = serving.recommend("b" * 32, 5, context={"country": country.split("=", 1)[1]})
    assert {r.reason for r in result.items} == {f"popularity:{country}"}


def test_recommend_never_raises(shop, caplog):
    _, system = serving.live_system()

    def broken(*args, **kwargs):
        raise RuntimeError("model exploded")

    system.recommend = broken
    try:
        result = serving.recommend(active_visitor(), 4)
    finally:
        del system.recommend
    assert result.fallback == "error" and result.model_version is None
    assert len(result.keys()) == 4 and all(r.reason.startswith("popular") for r in result.items)
    assert "model exploded" in caplog.text
    assert serving.recommend(object(), 3).keys()  # not even a person: popular items
