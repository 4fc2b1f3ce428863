"""One page, no item twice: the lists of one page skip what its earlier lists showed, server-rendered and hydrated."""

import re
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.test import RequestFactory, override_settings

from tests.delivery.helpers import render, slot_items

pytestmark = pytest.mark.django_db
PAGE = "/api/personalization/page/"
PRODUCT_SLOTS = ["similar", "product"]  # the demo product page's lists, in the page's order


def _mug(browser):
    """A mug whose page the browser's visitor opens after looking at two others (a history to recommend from)."""
    from storefront_demo.shop.models import Product

    mugs = list(Product.objects.filter(category__slug="mugs").order_by("pk")[:3])
    for other in mugs[1:]:
        browser.get(other.get_absolute_url())
    return mugs[0]


def _cards(html):
    """Item keys of the product cards (tiles) on a page, in order, repeats kept."""
    return re.findall(r'<article class="tile" data-personalization-item="([^"]+)"', html)


def _placeholders(html):
    """(spec, template) of each placeholder, in the page's order."""
    return re.findall(r'data-personalization-hydrate="([^"]+)" data-personalization-template="([^"]*)"', html)


def test_the_product_page_shows_no_product_twice_across_its_recommendation_sections(trained, browser):
    product = _mug(browser)
    html = browser.get(product.get_absolute_url()).content.decode()
    lists = {slot: slot_items(html, slot) for slot in PRODUCT_SLOTS}
    assert len(lists["similar"]) == 4 and len(lists["product"]) == 4  # each filled to its n
    cards = _cards(html)
    assert sorted(cards) == sorted(k for keys in lists.values() for k in keys)
    assert len(cards) == len(set(cards)), f"a product shows twice: {cards}"
    assert product.item_key not in cards


def test_repeat_true_lets_a_list_show_what_an_earlier_list_showed(trained, browser):
    product = _mug(browser)
    request = RequestFactory().get("/")
    request.COOKIES.update({k: v.value for k, v in browser.client.cookies.items()})
    source = ('{% similar_items product limit=4 %}{% for i in items %}<b {{ i.attrs }}></b>{% endfor %}'
              '{% endsimilar_items %}{% recommended_items slot="product" item=product limit=4 REPEAT %}'
              '{% for i in items %}<b {{ i.attrs }}></b>{% endfor %}{% endrecommended_items %}')
    again = render(source.replace("REPEAT", "repeat=True"), request=request, product=product)
    similar, repeated = slot_items(again, "similar"), slot_items(again, "product")
    assert set(similar) & set(repeated), "the demo's lists overlap when allowed to (else this test proves nothing)"
    request = RequestFactory().get("/")
    request.COOKIES.update({k: v.value for k, v in browser.client.cookies.items()})
    page = render(source.replace("REPEAT", ""), request=request, product=product)
    assert slot_items(page, "similar") == similar
    skipped = slot_items(page, "product")
    assert len(skipped) == 4 and not set(skipped) & set(similar)  # still filled to its n
    # a repeat=True list still counts as shown for the lists after it
    request = RequestFactory().get("/")
    request.COOKIES.update({k: v.value for k, v in browser.client.cookies.items()})
    html = render('{% recommended_items slot="home" limit=3 repeat=True as a %}{% recommended_items slot="home" '
                  'limit=3 repeat=True as b %}{% recommended_items slot="home" limit=3 as c %}'
                  '{{ a.keys|join:"," }}|{{ b.keys|join:"," }}|{{ c.keys|join:"," }}', request=request)
    a, b, c = (part.split(",") for part in html.split("|"))
    assert a == b and len(c) == 3 and not set(c) & set(a)


def test_the_hydration_api_returns_disjoint_lists_in_placeholder_order(trained, browser, settings):
    from tests.delivery.test_hydration import _server_render

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "HYDRATE": True}
    product = _mug(browser)
    cached = browser.get(product.get_absolute_url()).content.decode()
    found = _placeholders(cached)
    specs = [spec for spec, _ in found]
    assert specs == [f"similar:{product.item_key}", f"product@{product.item_key}"]
    assert not _cards(cached)  # nothing personal in the cacheable page
    query = {"slots": ",".join(specs), "templates": found[0][1], "page": product.get_absolute_url()}
    body = browser.get(PAGE + "?" + urlencode(query)).json()
    hydrated = [entry["items"] for entry in body["placeholders"]]
    assert [len(items) for items in hydrated] == [4, 4]
    every = [k for items in hydrated for k in items]
    assert len(every) == len(set(every)) and product.item_key not in every
    assert [body["slots"][spec]["items"] for spec in specs] == hydrated
    with override_settings(PERSONALIZATION={**django_settings.PERSONALIZATION, "HYDRATE": False}):
        server = _server_render(browser, "shop/product.html", product=product)
    assert [slot_items(server, slot) for slot in PRODUCT_SLOTS] == hydrated  # the server-rendered page's lists

    # in any order asked, the lists have no item in common
    backwards = browser.get(PAGE + "?" + urlencode({**query, "slots": ",".join(reversed(specs))})).json()
    every = [k for entry in backwards["placeholders"] for k in entry["items"]]
    assert every and len(every) == len(set(every))
    # a spec twice (two placeholders of one tag): two lists without common items
    twice = browser.get(PAGE + "?" + urlencode({**query, "slots": f"{specs[1]},{specs[1]}"})).json()
    one, two = (entry["items"] for entry in twice["placeholders"])
    assert one == twice["slots"][specs[1]]["items"] and len(two) == 4 and not set(one) & set(two)
