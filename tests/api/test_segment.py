"""The Segment-compatible v1/batch endpoint, driven by Segment's official Python library."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from segment.analytics import Client
from segment.analytics.request import APIError

from personalization.models import Event, VisitorLink

WRITE_KEY = "wk_test_6c1f0e"
BATCH_URL = "/api/personalization/segment/v1/batch"


@pytest.fixture
def write_key(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SEGMENT_WRITE_KEY": WRITE_KEY}
    return WRITE_KEY


@pytest.fixture
def segment(live_server, write_key):
    """Segment's own client, posting synchronously to the live server."""
    return Client(write_key, host=live_server.url + "/api/personalization/segment", sync_mode=True, max_retries=0)


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def post_batch(client, messages, key=WRITE_KEY):
    return client.post(BATCH_URL, json.dumps({"batch": messages}), content_type="application/json",
                       HTTP_AUTHORIZATION=basic(key))


# --- write key ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_missing_write_key_is_401(client, write_key):
    response = client.post(BATCH_URL, json.dumps({"batch": []}), content_type="application/json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")


@pytest.mark.django_db
@pytest.mark.parametrize("header", [basic("wrong"), "Bearer " + WRITE_KEY, "Basic !!!not-base64", "Basic " + "x" * 5])
def test_wrong_write_key_is_401(client, write_key, header):
    message = {"type": "track", "event": "Product Viewed", "anonymousId": "a1", "properties": {"product_id": "1"}}
    response = client.post(BATCH_URL, json.dumps({"batch": [message]}), content_type="application/json",
                           HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_endpoint_is_closed_when_no_write_key_is_configured(client):
    response = post_batch(client, [])

    assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_official_client_with_a_wrong_key_is_refused(live_server, write_key):
    wrong = Client("not-the-key", host=live_server.url + "/api/personalization/segment", sync_mode=True,
                   max_retries=0)

    with pytest.raises(APIError) as excinfo:
        wrong.track(anonymous_id="anon-1", event="Product Viewed", properties={"product_id": "3"})

    assert excinfo.value.status == 401
    assert Event.objects.count() == 0


# --- the official library end to end ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_official_client_calls_become_events(segment, django_user_model):
    user = django_user_model.objects.create_user("buyer", password="x")
    anon = "anon-7f3a"
    ids = {name: str(uuid.uuid4()) for name in ("viewed", "added", "order", "page", "identify")}

    segment.track(anonymous_id=anon, event="Product Viewed", properties={"product_id": "12", "price": 9.5},
                  message_id=ids["viewed"])
    segment.identify(user_id=str(user.pk), anonymous_id=anon, traits={"email": "b@example.com"},
                     message_id=ids["identify"])
    segment.track(user_id=user.pk, anonymous_id=anon, event="Product Added",
                  properties={"product_id": "12", "price": 9.5, "quantity": 2}, message_id=ids["added"])
    segment.track(user_id=user.pk, anonymous_id=anon, event="Order Completed", message_id=ids["order"],
                  properties={"order_id": "o-1", "products": [
                      {"product_id": "12", "price": 9.5, "quantity": 2},
                      {"sku": "34", "price": 20, "quantity": 1},
                  ]})
    segment.page(anonymous_id="anon-other", name="Product", properties={"product_id": "56"}, message_id=ids["page"])

    rows = sorted(Event.objects.values_list("event_type", "item_key", "value", "user_id", "visitor_id", "source"))
    assert rows == sorted([
        ("view", "product:12", 9.5, user.pk, anon, "segment"),  # stitched by identify
        ("add_to_cart", "product:12", 19.0, user.pk, anon, "segment"),
        ("purchase", "product:12", 19.0, user.pk, anon, "segment"),
        ("purchase", "product:34", 20.0, user.pk, anon, "segment"),
        ("view", "product:56", None, None, "anon-other", "segment"),
    ])
    assert VisitorLink.objects.get(visitor_id=anon).user_id == user.pk

    # Segment retries with the same messageIds: nothing new is stored.
    segment.track(anonymous_id=anon, event="Product Viewed", properties={"product_id": "12", "price": 9.5},
                  message_id=ids["viewed"])
    segment.track(user_id=user.pk, anonymous_id=anon, event="Order Completed", message_id=ids["order"],
                  properties={"products": [{"product_id": "12", "price": 9.5, "quantity": 2},
                                           {"sku": "34", "price": 20, "quantity": 1}]})
    segment.page(anonymous_id="anon-other", properties={"product_id": "56"}, message_id=ids["page"])
    assert Event.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_official_client_batches_with_flush(live_server, write_key, django_user_model):
    user = django_user_model.objects.create_user("batcher", password="x")
    batching = Client(write_key, host=live_server.url + "/api/personalization/segment", upload_interval=0.05,
                      max_retries=0)

    for product_id in ("1", "2", "3"):
        batching.track(user_id=str(user.pk), event="Product Clicked", properties={"product_id": product_id})
    batching.track(user_id=str(user.pk), event="Checkout Started", properties={"product_id": "1"})  # not mapped
    batching.flush()

    assert sorted(Event.objects.values_list("event_type", "item_key", "user_id", "visitor_id")) == [
        ("click", "product:1", user.pk, ""), ("click", "product:2", user.pk, ""), ("click", "product:3", user.pk, ""),
    ]


# --- payload handling (the test client) ---------------------------------------------------------------------


@pytest.mark.django_db
def test_unknown_numeric_user_id_is_kept_as_the_visitor(client, write_key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_batch(client, [
            {"type": "track", "event": "Product Viewed", "userId": "987654", "properties": {"product_id": "5"}},
            {"type": "track", "event": "Products Searched", "userId": "crm-42", "properties": {"query": "mugs"}},
        ])

    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert set(Event.objects.values_list("event_type", "user_id", "visitor_id")) == {
        ("view", None, "987654"), ("search", None, "crm-42"),
    }
    assert "query" not in Event.objects.get(event_type="search").context  # STORE_SEARCH_TEXT is off by default
    assert Event.objects.get(event_type="search").context["query_hash"]


@pytest.mark.django_db
def test_unmapped_calls_are_ignored(client, write_key):
    response = post_batch(client, [
        {"type": "track", "event": "Signed Up", "anonymousId": "a"},
        {"type": "screen", "name": "Home", "anonymousId": "a"},
        {"type": "page", "name": "About", "anonymousId": "a", "properties": {"path": "/about"}},
        {"type": "identify", "userId": "nobody", "anonymousId": "a"},
    ])

    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 0, "duplicates": 0, "dropped": 0, "ignored": 4}
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_invalid_message_is_a_400_with_its_index_and_nothing_is_stored(client, write_key):
    response = post_batch(client, [
        {"type": "track", "event": "Product Viewed", "anonymousId": "a", "properties": {"product_id": "1"}},
        {"type": "track", "event": "Product Viewed", "anonymousId": "a", "properties": {"product_id": "has space"}},
        {"type": "track", "event": "Product Viewed", "properties": {"product_id": "2"}},
        "junk",
    ])

    assert response.status_code == 400
    errors = response.json()["batch"]
    assert set(errors) == {"1", "2", "3"}
    assert "item" in errors["1"]
    assert "userId or an anonymousId" in errors["2"]["non_field_errors"][0]
    assert Event.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{}, {"batch": {}}, [], {"batch": "x"}])
def test_body_without_a_batch_list_is_a_400(client, write_key, body):
    response = client.post(BATCH_URL, json.dumps(body), content_type="application/json",
                           HTTP_AUTHORIZATION=basic(WRITE_KEY))

    assert response.status_code == 400
    assert "batch" in response.json()


HOSTILE_MESSAGES = {
    "event name is a list": {"type": "track", "event": ["Product Viewed"], "anonymousId": "a"},
    "event name is an object": {"type": "track", "event": {"x": 1}, "anonymousId": "a"},
    "type is a list": {"type": ["track"], "event": "Product Viewed", "anonymousId": "a"},
    "unicode digit user id": {"type": "track", "event": "Product Viewed", "userId": "\u00b2",
                              "properties": {"product_id": "1"}},
    "huge user id": {"type": "track", "event": "Product Viewed", "userId": "9" * 30, "properties": {"product_id": "1"}},
    "huge integer price": {"type": "track", "event": "Product Added", "anonymousId": "a",
                           "properties": {"product_id": "1", "price": 10**400}},
    "huge integer quantity": {"type": "track", "event": "Product Added", "anonymousId": "a",
                              "properties": {"product_id": "1", "price": 2.5, "quantity": 10**400}},
    "properties is a list": {"type": "track", "event": "Product Viewed", "anonymousId": "a", "properties": [1]},
    "products not objects": {"type": "track", "event": "Order Completed", "anonymousId": "a",
                             "properties": {"products": [1, "x", None]}},
}


@pytest.mark.django_db
@pytest.mark.parametrize("message", HOSTILE_MESSAGES.values(), ids=HOSTILE_MESSAGES.keys())
def test_hostile_messages_never_cause_a_server_error(client, write_key, message):
    response = post_batch(client, [message])

    assert response.status_code in (200, 400), response.content[:300]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("message", [
    {"type": "track", "event": "Product Viewed", "anonymousId": "anon\u00001", "properties": {"product_id": "1"}},
    {"type": "track", "event": "Products Searched", "anonymousId": "a", "properties": {"query": "mug\u0000"}},
], ids=["null byte in anonymousId", "null byte in search query"])
def test_null_bytes_are_stored_or_rejected_not_retried_forever(client, write_key, message):
    """PostgreSQL text cannot hold NUL: such a message must be cleaned or refused with a 400, never a 5xx."""
    response = post_batch(client, [message])

    assert response.status_code in (200, 400), response.content[:300]
    if response.status_code == 200:
        assert Event.objects.count() == 1
