"""personalization.track(): server code records events through the same validation as the API."""

from __future__ import annotations

import uuid

import pytest
from django.test import RequestFactory

import personalization
from personalization.models import Event
from personalization.tracking.identity import get_visitor
from personalization.tracking.schema import EventValidationError
from tests.conftest import DESKTOP_UA

pytestmark = pytest.mark.django_db


@pytest.fixture
def request_(shopper):
    request = RequestFactory(HTTP_USER_AGENT=DESKTOP_UA, REMOTE_ADDR="198.51.100.7").get("/checkout/")
    request.user = shopper
    return request


def test_track_with_a_request_stores_visitor_user_and_context(request_, shopper, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = personalization.track(request_, "purchase", "product:4", 25.0, order=17, quantity=2)

    assert (result.accepted, result.duplicates, result.dropped) == (1, 0, 0)
    event = Event.objects.get()
    assert (event.event_type, event.item_key, event.value, event.source) == ("purchase", "product:4", 25.0, "python")
    assert event.user_id == shopper.pk
    assert event.visitor_id == get_visitor(request_).visitor_id
    assert event.context["order"] == 17 and event.context["quantity"] == 2  # server code may add any context
    assert event.context["ip"] == "198.51.100.0"
    assert event.context["device"] == "desktop"


def test_track_with_a_user_stores_the_user_and_no_visitor(shopper, django_capture_on_commit_callbacks):
    event_id = str(uuid.uuid4())

    with django_capture_on_commit_callbacks(execute=True):
        first = personalization.track(shopper, "rate", "product:8", 4.0, event_id=event_id, recommendation_id="rec-1")
    with django_capture_on_commit_callbacks(execute=True):
        again = personalization.track(shopper, "rate", "product:8", 4.0, event_id=event_id)

    event = Event.objects.get()
    assert (event.user_id, event.visitor_id, str(event.event_id)) == (shopper.pk, "", event_id)
    assert event.recommendation_id == "rec-1"
    assert "ip" not in event.context
    assert (first.accepted, again.accepted, again.duplicates) == (1, 0, 1)


def test_track_without_an_item_for_non_item_events(shopper, django_capture_on_commit_callbacks, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "STORE_SEARCH_TEXT": True}
    with django_capture_on_commit_callbacks(execute=True):
        personalization.track(shopper, "search", query="mug")

    assert Event.objects.get().context["query"] == "mug"


@pytest.mark.parametrize(("args", "kwargs", "field"), [
    (("teleport", "product:1"), {}, "event"),
    (("view",), {}, "item"),
    (("view", "product 1"), {}, "item"),
    (("view", "product:1", float("nan")), {}, "value"),
    (("view", "product:1"), {"event_id": "nope"}, "event_id"),
    (("view", "product:1"), {"timestamp": "next week"}, "timestamp"),
])
def test_invalid_call_raises_with_field_errors(shopper, args, kwargs, field):
    with pytest.raises(EventValidationError) as excinfo:
        personalization.track(shopper, *args, **kwargs)

    assert field in excinfo.value.errors
    assert Event.objects.count() == 0


def test_anonymous_user_is_refused(django_user_model):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(ValueError, match="HttpRequest or an authenticated user"):
        personalization.track(AnonymousUser(), "view", "product:1")
    with pytest.raises(ValueError):
        personalization.track(None, "view", "product:1")


def test_track_respects_consent(request_, settings, django_capture_on_commit_callbacks):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CONSENT_REQUIRED": True}

    with django_capture_on_commit_callbacks(execute=True):
        result = personalization.track(request_, "purchase", "product:4", 25.0)

    assert (result.accepted, result.dropped, result.reason) == (0, 1, "no_consent")
    assert Event.objects.count() == 0


def test_demo_search_records_a_search_event_without_its_text_by_default(browser, product):
    from personalization.tracking.minimise import search_hash

    word = product.name.split()[0]
    browser.get(f"/search/?q={word}")
    browser.get(f"/search/?q={word.upper()}%20")

    first, second = Event.objects.filter(event_type="search").order_by("id")
    assert "query" not in first.context and word not in str(first.context)
    assert first.context["query_hash"] == second.context["query_hash"] == search_hash(word)  # repeats still count
    assert first.visitor_id == browser.visitor_id
    # nor in the page view's stored page and referrer (query strings are stripped)
    assert all(word not in str(e.context) for e in Event.objects.all()), [e.context for e in Event.objects.all()]


def test_stored_referrers_and_pages_lose_their_query_strings(browser, settings):
    referrer = "https://mail.example/reset?email=ann%40example.com&token=abc&utm_source=news#top"
    browser.send({"event": "view", "item": "product:1",
                  "context": {"page": "/p/1/?email=ann@example.com&utm_campaign=spring", "referrer": referrer}})
    context = Event.objects.get().context
    assert context["referrer"] == "https://mail.example/reset?utm_source=news"
    assert context["page"] == "/p/1/?utm_campaign=spring"
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CONTEXT_QUERY_PARAMS": ["token"]}
    browser.send({"event": "view", "item": "product:2", "context": {"referrer": referrer}})
    assert Event.objects.get(item_key="product:2").context["referrer"] == "https://mail.example/reset?token=abc"


def test_server_side_referrers_lose_their_query_strings(browser, product):
    browser.get("/search/?q=mug", HTTP_REFERER="https://shop.example/account/reset?email=ann%40example.com&token=s3cret")
    stored = [e.context.get("referrer") for e in Event.objects.all()]
    assert stored and all(r == "https://shop.example/account/reset" for r in stored), stored
