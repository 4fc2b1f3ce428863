"""On-device re-ranking in a real browser: tracker.js re-orders a slot from the bundle, with no server round trip.

The page under test is this module's (the demo shop's home page has no re-rankable slot): every product of a shop
whose shoppers each keep to one category (tests/delivery_bundle/shop.py), in category order, in a
``data-personalization-rerank`` slot. The demo's product pages are the "views". Every request the browser makes is
recorded to show that re-ranking never asks the recommendations endpoint, and that privacy mode sends no events.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from django.http import HttpResponse
from django.template import Context, Template
from django.urls import path

from storefront_demo.urls import urlpatterns as demo_urlpatterns
from tests.delivery_bundle.shop import make_shop, train_live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECOMMENDATIONS = "/api/personalization/recommendations/"
EVENTS = "/api/personalization/events/"
BUNDLE = "/api/personalization/bundle/"
TARGET = "rugs"  # last in the server's (category) order

PAGE = Template("""{% load personalization %}<!doctype html><html><head><title>Re-rank</title>
{% tracking_script privacy=privacy %}</head><body>
<ul id="slot" data-personalization-slot="rerank-test" data-personalization-rerank>
{% for p in products %}<li data-personalization-item="product:{{ p.pk }}"
 data-personalization-position="{{ forloop.counter }}" data-category="{{ p.category.slug }}">
<a href="/p/{{ p.pk }}/">{{ p.name }}</a></li>{% endfor %}
</ul>
<p id="elsewhere">{% for p in products %}<button type="button" data-personalization-item="product:{{ p.pk }}"
 data-category="{{ p.category.slug }}">{{ p.name }}</button>{% endfor %}</p>
</body></html>""")


def rerank_page(request):
    from storefront_demo.shop.models import Product

    products = Product.objects.select_related("category").order_by("category__slug", "pk")
    return HttpResponse(PAGE.render(Context({"request": request, "products": products,
                                             "privacy": request.GET.get("privacy", "")})))


urlpatterns = [path("rerank-test/", rerank_page), *demo_urlpatterns]


@pytest.fixture
def shop(transactional_db, settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.ROOT_URLCONF = sys.modules[__name__]
    # registry unpacks artifacts once per machine by version number: keep this database's version 1 apart
    monkeypatch.setattr("personalization.registry._LOCAL", tmp_path / "artifacts")
    data = make_shop()
    train_live(settings)
    return data


class Recorder:
    """Every request of a browser context, and every page error."""

    def __init__(self, context: Any):
        self.requests: list[tuple[str, str]] = []
        self.errors: list[str] = []
        context.on("request", lambda r: self.requests.append((r.method, r.url)))
        context.on("page", lambda p: p.on("pageerror", lambda e: self.errors.append(str(e))))

    def to(self, fragment: str) -> list[tuple[str, str]]:
        return [(m, u) for m, u in self.requests if fragment in u]


def slot_order(page: Any) -> list[tuple[str, str, str]]:
    """(item, category, position) of the slot's children, top first."""
    return [tuple(row) for row in page.eval_on_selector_all(
        "#slot > li", "els => els.map(e => [e.dataset.personalizationItem, e.dataset.category, "
                      "e.dataset.personalizationPosition])")]


def wait_for_tracker(page: Any) -> None:
    page.wait_for_function("() => window.personalization !== undefined")


def test_viewed_category_moves_up_without_asking_the_server(shop, new_context):
    rugs = shop["products"][TARGET]
    context = new_context()
    seen = Recorder(context)
    page = context.new_page()

    page.goto("/rerank-test/")
    wait_for_tracker(page)
    page.wait_for_function("() => localStorage.getItem('personalization:bundle') !== null")
    before = slot_order(page)
    assert [c for _, c, _ in before][-8:] == [TARGET] * 8, "the server's order puts the target category last"
    assert page.get_attribute("#slot", "data-personalization-reranked") is None, "nothing to re-rank with yet"

    for product in rugs[:3]:  # three rug product pages (the demo's), as a shopper would browse them
        page.goto(f"/p/{product.pk}/")
        wait_for_tracker(page)
    page.goto("/rerank-test/")
    page.wait_for_selector("#slot[data-personalization-reranked]")
    after = slot_order(page)

    viewed = {f"product:{p.pk}" for p in rugs[:3]}
    top = [c for _, c, _ in after[:8]]
    assert top.count(TARGET) >= 6, f"the viewed category should move up, got {top}"
    assert [pos for _, _, pos in after] == [str(i) for i in range(1, len(after) + 1)], "positions follow the order"
    assert viewed <= {item for item, _, _ in after[:8]}, "the viewed items are among the first"
    assert sorted(i for i, _, _ in after) == sorted(i for i, _, _ in before), "re-ordered, nothing added or lost"

    assert seen.to(RECOMMENDATIONS) == [], "re-ranking must not ask the recommendations endpoint"
    assert len(seen.to(BUNDLE)) == 1, f"the bundle is fetched once and then reused: {seen.to(BUNDLE)}"
    assert page.evaluate("() => JSON.parse(localStorage.getItem('personalization:history'))") == [
        f"product:{p.pk}" for p in rugs[:3]]
    assert seen.errors == []


def test_privacy_mode_keeps_history_local_and_sends_no_events(shop, new_context):
    from personalization.models import Event

    rugs = shop["products"][TARGET]
    context = new_context()
    seen = Recorder(context)
    page = context.new_page()

    page.goto("/rerank-test/?privacy=local")
    wait_for_tracker(page)
    page.wait_for_function("() => localStorage.getItem('personalization:bundle') !== null")
    for product in rugs[:3]:  # clicks on tracked items: remembered in the browser only
        page.click(f'#elsewhere button[data-personalization-item="product:{product.pk}"]')
    page.evaluate("() => window.personalization.flush()")

    page.reload()
    page.wait_for_selector("#slot[data-personalization-reranked]")
    after = slot_order(page)
    assert [c for _, c, _ in after[:8]].count(TARGET) >= 6
    page.evaluate("() => window.personalization.flush(true)")
    page.wait_for_timeout(300)

    assert seen.to(EVENTS) == [], "privacy mode sends no events"
    assert page.evaluate("() => window.personalization.queue()") == []
    assert not Event.objects.filter(source="tracker").exists()
    bundle_requests = seen.to(BUNDLE)
    assert len(bundle_requests) == 1 and "segment=all" in bundle_requests[0][1], "only the segment bundle"
    assert seen.to(RECOMMENDATIONS) == []
    assert seen.errors == []
