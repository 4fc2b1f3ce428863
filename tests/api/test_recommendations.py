"""GET recommendations/ and GET items/<key>/similar/: shape, validation, 404, throttling, staff and isolation."""

from __future__ import annotations

import pytest

from personalization.models import Event
from tests.serving.shop import active_visitor, live_shop_fixture, shop_fixture  # noqa: F401

URL = "/api/personalization/recommendations/"


def similar_url(key):
    return f"/api/personalization/items/{key}/similar/"


@pytest.fixture
def staff(shop, django_user_model):
    return django_user_model.objects.get(username="admin")


@pytest.fixture
def customer(shop, django_user_model):
    return django_user_model.objects.create_user("customer", "c@example.com", "pw")


def test_an_anonymous_visitor_gets_items_with_display_fields_and_a_cookie(shop, browser):
    response = browser.get(URL, data={"n": 4})
    assert response.status_code == 200
    body = response.json()
    assert len(body["recommendation_id"]) == 32 and body["model_version"] == shop.pk and body["slot"] == "default"
    assert len(body["items"]) == 4
    for item in body["items"]:
        assert item["key"].startswith("product:") and item["title"] and item["url"].startswith("/")
        assert isinstance(item["price"], float) and item["category"] and "image" in item and "reason" not in item
    assert browser.visitor_id  # the visitor cookie was set
    again = browser.get(URL, data={"n": 4}).json()
    assert [i["key"] for i in again["items"]] == [i["key"] for i in body["items"]]


@pytest.mark.parametrize("query,field,message", [
    ({"n": 0}, "n", "greater than or equal to 1"),
    ({"n": 101}, "n", "less than or equal to 100"),
    ({"n": "ten"}, "n", "valid integer"),
    ({"slot": "sidebar"}, "slot", "Unknown slot 'sidebar'"),
    ({"item": "not a key"}, "item", "Item keys look like"),
    ({"item": "song:1"}, "item", "Unknown item type"),
    ({"visitor": "../etc"}, "visitor", "Give a visitor id"),
])
def test_bad_parameters_get_400_with_field_errors(shop, browser, query, field, message):
    response = browser.get(URL, data=query)
    assert response.status_code == 400
    assert message in response.json()[field][0]


def test_unknown_items_get_404(shop, browser):
    assert browser.get(URL, data={"item": "product:999999"}).status_code == 404
    response = browser.get(similar_url("product:999999"))
    assert response.status_code == 404 and "not in the catalog" in response.json()["detail"]
    assert browser.get(similar_url("nonsense")).status_code == 400


def test_similar_items(shop, browser):
    item = Event.objects.filter(event_type="purchase").values_list("item_key", flat=True).order_by("item_key")[0]
    body = browser.get(similar_url(item), data={"n": 5, "explain": 1}).json()
    keys = [i["key"] for i in body["items"]]
    assert len(keys) == 5 and item not in keys and body["model_version"] == shop.pk
    from personalization.catalog import get_catalog

    title = get_catalog().display([item])[item]["title"]
    assert {i["reason"] for i in body["items"]} == {f"Similar to {title}"}


def test_throttled_per_visitor(shop, browser, make_browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "API_RATE_VISITOR": "3/min"}
    statuses = [browser.get(URL).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert make_browser().get(URL).status_code == 200  # another visitor has their own budget


def test_throttled_per_ip(shop, make_browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "API_RATE_IP": "2/min"}
    statuses = [make_browser().get(URL).status_code for _ in range(3)]  # new visitors, one address
    assert statuses == [200, 200, 429]


def test_only_staff_may_read_another_visitors_recommendations(shop, browser, staff, customer):
    visitor = active_visitor()
    assert browser.get(URL, data={"visitor": visitor}).status_code == 403  # anonymous
    browser.client.force_login(customer)
    response = browser.get(URL, data={"visitor": visitor})
    assert response.status_code == 403 and "staff" in response.json()["detail"]
    browser.client.force_login(staff)
    body = browser.get(URL, data={"visitor": visitor, "n": 5}).json()
    from personalization import serving

    assert [i["key"] for i in body["items"]] == serving.recommend(visitor, 5).keys()


def _returning(make_browser, source: str, visitor_id: str):
    """A browser whose cookie names ``visitor_id``, a visitor with a copy of ``source``'s events."""
    import uuid

    from personalization.conf import settings as psettings
    from personalization.tracking.identity import _signer

    events = list(Event.objects.filter(visitor_id=source[2:]).exclude(item_key=""))
    for event in events:
        event.pk, event.event_id, event.visitor_id, event.user_id = None, uuid.uuid4(), visitor_id, None
    Event.objects.bulk_create(events)
    who = make_browser()
    who.client.cookies[psettings.VISITOR_COOKIE_NAME] = _signer().sign(visitor_id)
    return who


def test_visitors_see_only_their_own_lists(shop, make_browser):
    from personalization import serving

    sources = list(Event.objects.filter(user__isnull=True).exclude(item_key="").order_by("visitor_id")
                   .values_list("visitor_id", flat=True).distinct()[:40])
    a, b = "a" * 32, "b" * 32
    first = _returning(make_browser, f"v:{sources[0]}", a)
    second = _returning(make_browser, f"v:{sources[-1]}", b)

    for who, vid in ((first, a), (second, b)):
        body = who.get(URL, data={"n": 6}).json()
        assert [i["key"] for i in body["items"]] == serving.recommend(f"v:{vid}", 6).keys()
    assert first.get(URL, data={"n": 6}).json()["items"] != second.get(URL, data={"n": 6}).json()["items"]
    assert first.get(URL, data={"visitor": f"v:{b}"}).status_code == 403


def test_explanations_are_true_to_the_visitors_history(shop, make_browser):
    from personalization.catalog import get_catalog

    visitor = "v:" + "c" * 32
    who = _returning(make_browser, active_visitor(), visitor[2:])
    body = who.get(URL, data={"n": 10, "explain": "1"}).json()
    history = set(Event.objects.filter(visitor_id=visitor[2:]).values_list("item_key", flat=True))
    titles = {row["title"]: key for key, row in get_catalog().display(history).items()}
    because = [i["reason"] for i in body["items"] if i["reason"].startswith("Because you ")]
    assert because, body["items"]
    for reason in because:
        verb_and_title = reason[len("Because you "):]
        verb, _, title = verb_and_title.removesuffix(" to your cart").partition(" ")
        assert title in titles, (reason, titles)  # the named item really is in this visitor's history
        kinds = set(Event.objects.filter(visitor_id=visitor[2:], item_key=titles[title])
                    .values_list("event_type", flat=True))
        assert {"bought": "purchase", "added": "add_to_cart", "viewed": "view", "clicked": "click"}[verb] in kinds
    for item in body["items"]:
        if item["reason"] == "You looked at this recently":  # a repeat: true only of an item of the history
            assert Event.objects.filter(visitor_id=visitor[2:], item_key=item["key"]).exists()
            continue
        assert item["reason"] and "Because you" in item["reason"] or item["reason"].startswith(
            ("Popular", "Liked by", "Related to", "Similar to", "Pinned", "Exploring"))


def test_pinned_and_popular_reasons_are_said_as_they_are(shop, browser, settings):
    key = Event.objects.values_list("item_key", flat=True).exclude(item_key="").order_by("item_key")[0]
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SLOTS": {"default": {"pinned": [key]}}}
    body = browser.get(URL, data={"n": 3, "explain": 1}, HTTP_CF_IPCOUNTRY="NL").json()
    assert body["items"][0]["key"] == key and body["items"][0]["reason"] == "Pinned by the shop"
    assert all(i["reason"].startswith("Popular") for i in body["items"][1:])


def test_the_openapi_schema_of_these_endpoints_has_no_warnings():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    from personalization.api.model_versions import urlpatterns

    GENERATOR_STATS.reset()
    schema = SchemaGenerator(patterns=urlpatterns).get_schema(request=None, public=True)
    validate_schema(schema)
    assert not GENERATOR_STATS, (dict(GENERATOR_STATS._warn_cache), dict(GENERATOR_STATS._error_cache))
    paths = schema["paths"]
    assert {"/recommendations/", "/items/{key}/similar/", "/models/", "/models/train/", "/models/{id}/promote/",
            "/models/{id}/rollback/"} <= set(paths)
    params = {p["name"] for p in paths["/recommendations/"]["get"]["parameters"]}
    assert {"n", "slot", "item", "category", "explain", "visitor"} <= params
