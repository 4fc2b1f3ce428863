"""TrackingMiddleware: a page about an item records one view after the response, and never breaks the page."""

from __future__ import annotations

import pytest
from django.core.handlers.base import BaseHandler
from django.core.signals import request_finished
from django.db import close_old_connections, connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from personalization.catalog import ModelCatalogAdapter
from personalization.models import Event
from tests.conftest import DESKTOP_UA

pytestmark = pytest.mark.django_db


class BrokenAdapter(ModelCatalogAdapter):
    def item_for_request(self, request, view_func, view_kwargs):
        raise RuntimeError("catalog down")


def test_product_page_records_exactly_one_view(browser, product):
    response = browser.get(f"/p/{product.pk}/", REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 200
    event = Event.objects.get()
    assert (event.event_type, event.item_key, event.source) == ("view", f"product:{product.pk}", "middleware")
    assert event.visitor_id == browser.visitor_id
    assert event.user_id is None
    assert event.context["page"] == f"/p/{product.pk}/"
    assert event.context["ip"] == "203.0.113.0"
    assert event.context["device"] == "desktop"
    assert {"hour", "weekday"} <= set(event.context)


def test_first_page_sets_the_visitor_cookie(browser, product):
    response = browser.get(f"/p/{product.pk}/")

    cookie = response.cookies["pvid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"


def test_each_view_is_its_own_event(browser, product):
    browser.get(f"/p/{product.pk}/")
    browser.get(f"/p/{product.pk}/")

    assert Event.objects.filter(item_key=f"product:{product.pk}", event_type="view").count() == 2
    assert Event.objects.values("visitor_id").distinct().count() == 1


def test_signed_in_visitor_view_has_the_user(browser, product, shopper):
    browser.client.force_login(shopper)

    browser.get(f"/p/{product.pk}/")

    assert Event.objects.get().user_id == shopper.pk


def test_pages_not_about_an_item_record_nothing(browser, product):
    assert browser.get("/").status_code == 200
    assert browser.get(f"/c/{product.category.slug}/").status_code == 200
    assert browser.get("/cart/").status_code == 200

    assert Event.objects.count() == 0


def test_missing_product_page_records_nothing(browser, product):
    response = browser.get(f"/p/{product.pk + 1000}/")

    assert response.status_code == 404
    assert Event.objects.count() == 0


def test_post_to_an_item_url_records_no_view(browser, product):
    browser.post(f"/p/{product.pk}/")

    assert not Event.objects.filter(event_type="view").exists()


def test_bots_views_are_not_recorded(browser, product):
    response = browser.get(f"/p/{product.pk}/", HTTP_USER_AGENT="Mozilla/5.0 (compatible; bingbot/2.0)")

    assert response.status_code == 200
    assert "pvid" not in response.cookies
    assert Event.objects.count() == 0


def test_no_consent_no_view_and_no_cookie(browser, product, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CONSENT_REQUIRED": True}

    response = browser.get(f"/p/{product.pk}/")

    assert response.status_code == 200
    assert "pvid" not in response.cookies
    assert Event.objects.count() == 0


def test_admin_is_excluded(browser):
    response = browser.get("/admin/login/")

    assert response.status_code == 200
    assert "pvid" not in response.cookies
    assert Event.objects.count() == 0


def test_excluded_paths_are_configurable(browser, product, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "EXCLUDED_PATHS": ["/p/"]}

    response = browser.get(f"/p/{product.pk}/")

    assert response.status_code == 200
    assert "pvid" not in response.cookies
    assert Event.objects.count() == 0


def test_static_files_served_by_django_are_excluded(browser, settings):
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.tracking.urls_static"
    # Without WhiteNoise in front, Django's static view runs behind the tracking middleware.
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "whitenoise" not in m]

    response = browser.get("/static/personalization/tracker.js")

    assert response.status_code == 200
    assert "pvid" not in response.cookies


def test_broken_catalog_adapter_still_serves_the_page(browser, product, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CATALOG_ADAPTER": BrokenAdapter}

    response = browser.get(f"/p/{product.pk}/")

    assert response.status_code == 200
    assert product.name.encode() in response.content
    assert Event.objects.count() == 0


def test_malformed_item_key_from_the_adapter_is_not_recorded(browser, product, settings):
    class Malformed(ModelCatalogAdapter):
        def item_for_request(self, request, view_func, view_kwargs):
            return "Product 42"

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CATALOG_ADAPTER": Malformed}

    response = browser.get(f"/p/{product.pk}/")

    assert response.status_code == 200
    assert Event.objects.count() == 0


def test_failing_collector_still_serves_the_page(browser, product, settings):
    class Exploding:
        def collect(self, events):
            raise RuntimeError("collector down")

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "COLLECTOR_BACKEND": Exploding}

    response = browser.get(f"/p/{product.pk}/")

    assert response.status_code == 200
    # the collector's failure falls back to a direct write: the view is not lost
    assert Event.objects.filter(item_key=f"product:{product.pk}").count() == 1


def test_view_hook_on_the_view_function_names_the_item(browser, settings):
    settings.ROOT_URLCONF = "tests.tracking.urls"

    browser.get("/counted/77/")

    assert Event.objects.get().item_key == "product:77"


def _signed_in_request(client, path):
    """A request as the signed-in browser would send it."""
    request = RequestFactory(HTTP_USER_AGENT=DESKTOP_UA).get(path)
    request.COOKIES.update({name: morsel.value for name, morsel in client.cookies.items()})
    return request


@pytest.mark.parametrize("with_middleware", [True, False])
def test_middleware_adds_no_query_before_the_response(browser, shopper, settings, with_middleware,
                                                      django_capture_on_commit_callbacks):
    settings.ROOT_URLCONF = "tests.tracking.urls"
    if not with_middleware:
        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "personalization" not in m]
    browser.client.force_login(shopper)
    browser.get("/counted/5/")  # a returning, signed-in visitor
    handler = BaseHandler()
    handler.load_middleware()
    request = _signed_in_request(browser.client, "/counted/5/")

    with CaptureQueriesContext(connection) as queries:
        response = handler.get_response(request)
    assert response.status_code == 200
    assert len(queries) == 1, [q["sql"] for q in queries]  # the view's own query; session and user come later

    request_finished.disconnect(close_old_connections)  # as the test client does: keep the test's connection
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response.close()  # after the response is sent: the view is recorded, with the user
    finally:
        request_finished.connect(close_old_connections)
    views = list(Event.objects.filter(source="middleware").values_list("item_key", "user_id", "visitor_id"))
    if with_middleware:
        assert views == [("product:5", shopper.pk, browser.visitor_id)] * 2
    else:
        assert views == []
