"""The default page-view path: the middleware hands views to a per-process background writer thread."""

from __future__ import annotations

import pytest
from django.test import Client

from personalization.models import Event
from personalization.tracking.background import writer

UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1"


@pytest.mark.django_db(transaction=True)
def test_page_views_are_written_by_the_background_thread(settings, make_product):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "MIDDLEWARE_WRITE": "background"}
    products = [make_product() for _ in range(3)]
    client = Client(HTTP_USER_AGENT=UA)

    for product in products:
        assert client.get(f"/p/{product.pk}/").status_code == 200
    assert writer.flush(timeout=10)

    stored = Event.objects.order_by("occurred_at")
    assert [e.item_key for e in stored] == [f"product:{p.pk}" for p in products]
    assert {e.event_type for e in stored} == {"view"}
    assert {e.source for e in stored} == {"middleware"}
    assert len({e.visitor_id for e in stored}) == 1
    assert stored[0].context["device"] == "desktop"


@pytest.mark.django_db(transaction=True)
def test_bots_never_reach_the_background_writer(settings, make_product):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "MIDDLEWARE_WRITE": "background"}
    product = make_product()
    client = Client(HTTP_USER_AGENT="Googlebot/2.1 (+http://www.google.com/bot.html)")

    assert client.get(f"/p/{product.pk}/").status_code == 200
    assert writer.flush(timeout=10)
    assert Event.objects.count() == 0
