"""Variant choice by affinity, targeting and admin variants; layouts by interest with pinned sections."""

import re

import pytest

from personalization.delivery.layouts import Section, order_sections
from tests.caches import clear_cache
from tests.delivery.helpers import render, sections, variant

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_control(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "DELIVERY": {"control_share": 0.0}}


def _view_category(browser, slug, n=3):
    from storefront_demo.shop.models import Product

    for product in Product.objects.filter(category__slug=slug)[:n]:
        assert browser.get(product.get_absolute_url()).status_code == 200


def test_a_visitor_who_viewed_candles_gets_the_candles_hero_and_section_first(shop_history, browser, no_control):
    _view_category(browser, "candles")
    html = browser.get("/").content.decode()
    assert variant(html) == "candles"
    assert sections(html)[0] == "candles"
    assert sections(html)[-1] == "new"  # pinned where it was written


def test_visitors_with_different_interests_see_different_content(shop_history, make_browser, no_control):
    mugs, cushions = make_browser(), make_browser()
    _view_category(mugs, "mugs")
    _view_category(cushions, "cushions")
    a, b = mugs.get("/").content.decode(), cushions.get("/").content.decode()
    assert (variant(a), sections(a)[0]) == ("mugs", "mugs")
    assert (variant(b), sections(b)[0]) == ("cushions", "cushions")


def test_a_logged_in_shopper_without_own_history_gets_the_models_categories(trained, client, no_control):
    from django.contrib.auth import get_user_model

    from personalization.models import Event

    user_id = Event.objects.exclude(user=None).values_list("user_id", flat=True).first()
    user = get_user_model().objects.get(pk=user_id)
    client.force_login(user)
    html = client.get("/", HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0").content.decode()
    assert variant(html) in {"welcome", "candles", "mugs", "cushions"}
    assert re.search(r'data-personalization-slot="home" data-recommendation-id', html)


def test_admin_variants_join_the_template_with_targeting(shop_history, browser, no_control):
    from personalization.models import ContentBlock, Variant

    block = ContentBlock.objects.create(slot="hero", control_share=0.0)
    Variant.objects.create(block=block, key="lantern-nights", category="lanterns", html="<p>LANTERNS</p>")
    Variant.objects.create(block=block, key="mobile-only", category="lanterns", device="mobile",
                           html="<p>MOBILE</p>")
    Variant.objects.create(block=block, key="candles", segment="authenticated")  # targeting for a template variant
    _view_category(browser, "lanterns")
    html = browser.get("/").content.decode()
    assert variant(html) == "lantern-nights" and "<p>LANTERNS</p>" in html
    assert "MOBILE" not in html
    other = render('{% personalized_block "hero" %}{% variant "candles" category="candles" %}C'
                   '{% variant "plain" %}P{% endpersonalized_block %}')
    assert variant(other) != "candles"  # anonymous: not in the "authenticated" segment


def test_an_inactive_block_shows_the_first_variant(shop_history, browser):
    from personalization.models import ContentBlock

    ContentBlock.objects.create(slot="hero", active=False)
    _view_category(browser, "candles")
    assert variant(browser.get("/").content.decode()) == "welcome"


def test_the_chosen_variant_is_sticky_for_a_visitor(shop_history, browser):
    from django.core.cache import caches

    first = variant(browser.get("/").content.decode())
    assert all(variant(browser.get("/").content.decode()) == first for _ in range(3))
    clear_cache(caches["default"])  # the choice is seeded by visitor, slot and period: same without the cache
    assert variant(browser.get("/").content.decode()) == first


def test_new_and_returning_audiences(shop_history):
    html = render('{% personalized_block "b" control=0 %}{% variant "back" audience="returning" %}BACK'
                  '{% variant "hello" audience="new" %}HELLO{% endpersonalized_block %}')
    assert variant(html, "b") == "hello"


def test_pinned_sections_keep_their_place():
    written = [Section("a", "mugs"), Section("new", pinned=2), Section("b", "candles"), Section("c", "cards")]
    order = [s.key for s in order_sections("home", written, {"candles": 0.7, "cards": 0.3})]
    assert order == ["b", "new", "c", "a"]
    assert [s.key for s in order_sections("home", written, {})] == ["a", "new", "b", "c"]


def test_configured_pins_override_the_template(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                "DELIVERY": {"layouts": {"home": {"pinned": {"a": 1}}}}}
    written = [Section("a", "mugs"), Section("b", "candles"), Section("c", "cards")]
    assert [s.key for s in order_sections("home", written, {"candles": 1.0})] == ["a", "b", "c"]
    assert [s.key for s in order_sections("other", written, {"cards": 1.0})] == ["c", "a", "b"]


def test_pinned_argument_in_the_template(shop_history):
    html = render('{% adaptive_layout "l" %}{% section "a" category="mugs" %}A{% section "top" pinned=1 %}T'
                  '{% section "c" category="candles" %}C{% endadaptive_layout %}')
    assert sections(html, "l") == ["top", "a", "c"]
