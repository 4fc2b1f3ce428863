"""Cache-safe pages: placeholders, one API request for all of them, the same items as server rendering."""

import re
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.test import override_settings

from tests.delivery.helpers import sections, slot_items, variant

pytestmark = pytest.mark.django_db
PAGE = "/api/personalization/page/"


@pytest.fixture
def hydrate(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "HYDRATE": True, "DELIVERY": {"control_share": 0.0}}


def _placeholders(html):
    found = re.findall(r'data-personalization-hydrate="([^"]+)" data-personalization-template="([^"]*)"', html)
    specs = list(dict.fromkeys(s for s, _ in found))
    templates = list(dict.fromkeys(t for _, t in found if t))
    return specs, templates


def _hydrate_url(html, page="/"):
    """The one URL hydrate.js requests for a page."""
    specs, templates = _placeholders(html)
    return PAGE + "?" + urlencode({"slots": ",".join(specs), "templates": ",".join(templates), "page": page})


def test_cached_pages_get_placeholders_with_the_default_content(shop_history, browser, hydrate):
    html = browser.get("/").content.decode()
    specs, templates = _placeholders(html)
    assert specs == ["block:hero", "home", "layout:homepage"]
    assert templates == ["shop/home.html"]
    assert "Little things, chosen for you" in html  # the first variant is the placeholder's content
    assert "data-personalization-slot=" not in html  # nothing personal in the cacheable page
    assert "data-recommendation-id" not in html


def _server_render(browser, name, **context):
    """The page's template rendered server-side for the browser's visitor, without recording a page view."""
    from django.template.loader import get_template
    from django.test import RequestFactory

    from personalization.conf import settings as psettings
    from tests.conftest import DESKTOP_UA

    request = RequestFactory().get("/", HTTP_USER_AGENT=DESKTOP_UA)
    request.COOKIES[psettings.VISITOR_COOKIE_NAME] = browser.cookies[psettings.VISITOR_COOKIE_NAME].value
    return get_template(name).render(context, request)


def test_one_request_hydrates_every_slot_with_the_same_content_as_server_rendering(trained, browser, hydrate):
    from storefront_demo.shop.models import Product

    product = Product.objects.filter(category__slug="mugs").first()
    browser.get(product.get_absolute_url())
    cached_home = browser.get("/").content.decode()
    cached_product = browser.get(product.get_absolute_url()).content.decode()
    specs_home, _ = _placeholders(cached_home)
    specs_product, _ = _placeholders(cached_product)
    assert f"similar:{product.item_key}" in specs_product and f"product@{product.item_key}" in specs_product
    assert "data-personalization-slot=" not in cached_product

    response = browser.get(_hydrate_url(cached_home))
    assert response.status_code == 200 and response["Cache-Control"] == "private, no-store"
    slots = response.json()["slots"]
    assert set(slots) == set(specs_home)
    with override_settings(PERSONALIZATION={**django_settings.PERSONALIZATION, "HYDRATE": False}):
        server_home = _server_render(browser, "shop/home.html", featured=[], categories=[])
        server_product = _server_render(browser, "shop/product.html", product=product)
    assert slot_items(server_home, "home")
    assert slot_items(slots["home"]["html"], "home") == slot_items(server_home, "home")
    assert slots["home"]["items"] == slot_items(server_home, "home")
    assert variant(slots["block:hero"]["html"]) == variant(server_home) == slots["block:hero"]["variant"] == "mugs"
    assert sections(slots["layout:homepage"]["html"]) == sections(server_home)
    assert sections(server_home)[0] == "mugs"

    slots = browser.get(_hydrate_url(cached_product, product.get_absolute_url())).json()["slots"]
    similar = slots[f"similar:{product.item_key}"]["html"]
    assert slot_items(similar, "similar") == slot_items(server_product, "similar")
    assert (slot_items(slots[f"product@{product.item_key}"]["html"], "product")
            == slot_items(server_product, "product"))
    assert f'name="next" value="{product.get_absolute_url()}"' in similar


def test_block_endpoint_returns_the_visitors_variant(shop_history, browser, settings):
    from storefront_demo.shop.models import Product

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "DELIVERY": {"control_share": 0.0}}
    for p in Product.objects.filter(category__slug="cushions")[:3]:
        browser.get(p.get_absolute_url())
    server = variant(browser.get("/").content.decode())
    body = browser.get("/api/personalization/blocks/hero/?template=shop/home.html").json()
    assert body["slot"] == "hero" and body["variant"] == server == "cushions"
    assert body["category"] == "cushions" and 'data-personalization-variant="cushions"' in body["html"]


def test_block_endpoint_serves_admin_variants_without_a_template(shop_history, browser):
    from personalization.models import ContentBlock, Variant

    block = ContentBlock.objects.create(slot="banner", control_share=0.0)
    Variant.objects.create(block=block, key="only", html="<b>Hello</b>")
    body = browser.get("/api/personalization/blocks/banner/").json()
    assert body["variant"] == "only" and "<b>Hello</b>" in body["html"]
    assert browser.get("/api/personalization/blocks/nothing/").json()["variant"] is None


def test_page_endpoint_without_templates_uses_the_default_partial(shop_history, browser):
    body = browser.get(PAGE + "?slots=home,layout:homepage").json()["slots"]
    assert body["home"]["items"] and 'data-personalization-slot="home"' in body["home"]["html"]
    assert "error" in body["layout:homepage"]


def test_page_endpoint_rejects_an_empty_request_and_survives_bad_templates(shop_history, browser):
    assert browser.get(PAGE).status_code == 400
    response = browser.get(PAGE + "?slots=home&templates=../../etc/passwd,nope.html")
    assert response.status_code == 200 and response.json()["slots"]["home"]["items"]


def test_tracking_script_loads_hydrate_js(shop_history, browser):
    html = browser.get("/").content.decode()
    assert re.search(r'<script src="[^"]*personalization/hydrate.js" data-page-endpoint="/api/personalization/page/"',
                     html)
