"""POST /api/personalization/events/: what the tracker, apps and servers get back, and what is stored."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import timedelta

import pytest
from django.core import signing
from django.utils import timezone

from personalization.models import Event
from personalization.tracking import metrics

pytestmark = pytest.mark.django_db

IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)


def signed_visitor(visitor_id: str) -> str:
    return signing.TimestampSigner(salt="personalization.visitor").sign(visitor_id)


def iso(when) -> str:
    return when.isoformat().replace("+00:00", "Z")


# --- accepted events ----------------------------------------------------------------------------------------


def test_single_event_is_stored_with_server_context_and_the_cookie_visitor(browser):
    visitor = uuid.uuid4().hex
    browser.cookies["pvid"] = signed_visitor(visitor)
    event_id = str(uuid.uuid4())

    response = browser.send(
        {"event": "add_to_cart", "item": "product:42", "value": 19.5, "event_id": event_id,
         "context": {"slot": "home", "x_campaign": "spring", "tz": "Asia/Tokyo"}},
        REMOTE_ADDR="203.0.113.77", HTTP_CF_IPCOUNTRY="DE", HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9",
    )

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "dropped": 0}
    row = Event.objects.get()
    assert (row.event_type, row.item_key, row.value, str(row.event_id)) == ("add_to_cart", "product:42", 19.5, event_id)
    assert row.visitor_id == visitor
    assert row.user_id is None
    assert row.source == "api"
    local = row.occurred_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    assert row.context["hour"] == local.hour and row.context["weekday"] == local.weekday()
    assert row.context["device"] == "desktop"
    assert row.context["os"] == "Windows"
    assert row.context["browser"] == "Chrome"
    assert row.context["country"] == "DE"
    assert row.context["language"] == "de"
    assert row.context["slot"] == "home" and row.context["x_campaign"] == "spring"
    assert row.context["ip"] == "203.0.113.0"
    assert "203.0.113.77" not in json.dumps(row.context)


def test_batch_is_stored_row_for_row(browser):
    events = [
        {"event": "view", "item": "product:1"},
        {"event": "click", "item": "product:2", "context": {"position": 3}},
        {"event": "search", "context": {"query": "candle"}},
    ]

    response = browser.send({"events": events})

    assert response.status_code == 202
    assert response.json() == {"accepted": 3, "duplicates": 0, "dropped": 0}
    rows = sorted(Event.objects.values_list("event_type", "item_key"))
    assert rows == [("click", "product:2"), ("search", ""), ("view", "product:1")]
    assert {e.visitor_id for e in Event.objects.all()} == {browser.visitor_id}


def test_first_response_sets_the_visitor_cookie_used_for_the_stored_event(browser):
    response = browser.send({"event": "view", "item": "product:1"})

    assert response.status_code == 202
    assert "pvid" in response.cookies
    assert Event.objects.get().visitor_id == browser.visitor_id


def test_logged_in_user_is_stored_with_the_event(browser, shopper):
    browser.client.force_login(shopper)

    browser.send({"event": "purchase", "item": "product:7", "value": 30})

    assert Event.objects.get().user_id == shopper.pk


def test_client_cannot_forge_server_context(browser):
    browser.send(
        {"event": "view", "item": "product:1",
         "context": {"ip": "198.51.100.23", "device": "fridge", "country": "ZZ", "user_id": 1, "evil": "x"}},
        REMOTE_ADDR="192.0.2.200",
    )

    context = Event.objects.get().context
    assert context["ip"] == "192.0.2.0"
    assert context["device"] == "desktop"
    assert context.get("country") != "ZZ"
    assert "user_id" not in context and "evil" not in context
    assert "198.51.100.23" not in json.dumps(context)


def test_mobile_user_agent_and_ipv6_address(browser):
    browser.send({"event": "view", "item": "product:1"}, HTTP_USER_AGENT=IPHONE_UA,
                 REMOTE_ADDR="2001:db8:abcd:12:1:2:3:4", HTTP_ACCEPT_LANGUAGE="fr-CA")

    context = Event.objects.get().context
    assert (context["device"], context["os"], context["browser"]) == ("mobile", "iOS", "Mobile Safari")
    assert context["ip"] == "2001:db8:abcd::"
    assert context["country"] == "CA"


def test_ip_storage_drop_stores_no_address(browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "IP_STORAGE": "drop"}

    browser.send({"event": "view", "item": "product:1", "context": {"ip": "1.2.3.4"}}, REMOTE_ADDR="203.0.113.77")

    context = Event.objects.get().context
    assert "ip" not in context
    assert "203.0.113" not in json.dumps(context)


def test_client_timestamp_in_milliseconds_is_used_as_occurred_at(browser):
    when = timezone.now().replace(microsecond=0) - timedelta(hours=2)

    browser.send({"event": "view", "item": "product:1", "timestamp": int(when.timestamp() * 1000)})

    assert Event.objects.get().occurred_at == when


def test_tracker_query_marks_the_source(browser):
    # tracker.js posts to events/?client=tracker (sendBeacon cannot send custom headers).
    with browser._capture(execute=True):
        browser.client.post("/api/personalization/events/?client=tracker",
                            json.dumps({"event": "view", "item": "product:1"}), content_type="application/json")

    assert Event.objects.get().source == "tracker"


def test_send_beacon_text_plain_body_is_accepted(browser):
    response = browser.send({"events": [{"event": "dwell", "item": "product:3", "value": 12}]},
                            content_type="text/plain;charset=UTF-8")

    assert response.status_code == 202
    assert Event.objects.get().value == 12.0


def test_retried_event_id_is_stored_once(browser):
    event = {"event": "click", "item": "product:5", "event_id": str(uuid.uuid4())}

    first = browser.send(event)
    second = browser.send({"events": [event]})

    assert first.json() == {"accepted": 1, "duplicates": 0, "dropped": 0}
    assert second.status_code == 202
    assert second.json() == {"accepted": 0, "duplicates": 1, "dropped": 0}
    assert Event.objects.count() == 1


def test_repeated_event_id_within_one_batch_is_a_duplicate(browser):
    event = {"event": "click", "item": "product:5", "event_id": str(uuid.uuid4())}

    response = browser.send({"events": [event, event, {"event": "view", "item": "product:6"}]})

    assert response.json() == {"accepted": 2, "duplicates": 1, "dropped": 0}
    assert Event.objects.count() == 2


def test_extra_event_types_are_accepted(browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                "EXTRA_EVENT_TYPES": {"wishlist": {"weight": 3.0, "item": True}}}

    response = browser.send({"event": "wishlist", "item": "product:9"})

    assert response.status_code == 202
    assert Event.objects.get().event_type == "wishlist"


# --- rejected events: 400 with field errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "field", "fragment"),
    [
        ({"event": "teleport", "item": "product:1"}, "event", "Unknown event type 'teleport'"),
        ({"item": "product:1"}, "event", "required"),
        ({"event": "view"}, "item", "required for 'view'"),
        ({"event": "view", "item": "42"}, "item", '"<type>:<id>"'),
        ({"event": "view", "item": "article:42"}, "item", "Unknown item type 'article'"),
        ({"event": "view", "item": "product:4 2"}, "item", '"<type>:<id>"'),
        ({"event": "view", "item": "product:1", "event_id": "not-a-uuid"}, "event_id", "UUID"),
        ({"event": "view", "item": "product:1", "event_id": 12345}, "event_id", "UUID"),
        ({"event": "view", "item": "product:1", "timestamp": "yesterday"}, "timestamp", "ISO 8601"),
        ({"event": "view", "item": "product:1", "timestamp": [2024]}, "timestamp", "ISO 8601"),
        ({"event": "view", "item": "product:1", "value": "12.5"}, "value", "finite number"),
        ({"event": "view", "item": "product:1", "value": True}, "value", "finite number"),
        ({"event": "view", "item": "product:1", "context": ["page"]}, "context", "JSON object"),
        ({"event": "view", "item": "product:1", "context": "page=/"}, "context", "JSON object"),
        ({"event": "view", "item": "product:1", "context": {"x_big": "a" * 3000}}, "context", "Too large"),
        ({"event": "view", "item": "product:1", "recommendation_id": "r" * 65}, "recommendation_id", "64"),
        ({"event": "view", "item": "product:1", "recommendation_id": "r\u0000"}, "recommendation_id", "NUL"),
        ({"event": "view", "item": "product:1", "context": {"x_big": "\u00e9" * 400}}, "context", "Too large"),
        ({"event": "view", "item": "product:1", "context": {"x_n": float("inf")}}, "context", "NaN or infinity"),
        ({"event": "view", "item": "product:1", "user": 1}, "non_field_errors", "Unknown field(s): user"),
    ],
)
def test_invalid_event_gets_field_errors_and_stores_nothing(browser, event, field, fragment):
    response = browser.send(event)

    assert response.status_code == 400
    errors = response.json()
    assert field in errors, errors
    assert fragment in " ".join(errors[field])
    assert Event.objects.count() == 0


@pytest.mark.parametrize("context", [
    {"x_big": "a" * 2030},  # 2,042 bytes as JSON: just under the 2,048-byte limit
    {"x_text": "caf\u00e9 \U0001f600 \"quoted\" back\\slash\ttab", "position": 3, "x_ok": True, "x_none": None,
     "x_ratio": 0.25},
])
def test_context_within_the_size_limit_is_stored_as_sent(browser, context):
    response = browser.send({"event": "view", "item": "product:1", "context": context})

    assert response.status_code == 202, response.content[:300]
    stored = Event.objects.get().context
    assert {k: stored[k] for k in context} == context


@pytest.mark.parametrize(("offset", "fragment"), [(timedelta(hours=1), "future"), (-timedelta(days=8), "older")])
def test_timestamp_outside_the_accepted_window_is_rejected(browser, offset, fragment):
    response = browser.send({"event": "view", "item": "product:1", "timestamp": iso(timezone.now() + offset)})

    assert response.status_code == 400
    assert fragment in response.json()["timestamp"][0]
    assert Event.objects.count() == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_value_is_rejected(browser, literal):
    body = '{"event": "rate", "item": "product:1", "value": ' + literal + "}"

    response = browser.send(body)

    assert response.status_code == 400
    assert "value" in response.json()


def test_batch_with_one_bad_event_is_rejected_whole_with_per_index_errors(browser):
    events = [
        {"event": "view", "item": "product:1"},
        {"event": "view", "item": "nope"},
        {"event": "click", "item": "product:2"},
        {"event": "boom"},
    ]

    response = browser.send({"events": events})

    assert response.status_code == 400
    errors = response.json()["events"]
    assert set(errors) == {"1", "3"}
    assert "item" in errors["1"]
    assert "event" in errors["3"]
    assert Event.objects.count() == 0


def test_batch_over_max_batch_size_is_rejected(browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "MAX_BATCH_SIZE": 3}

    response = browser.send({"events": [{"event": "view", "item": f"product:{i}"} for i in range(4)]})

    assert response.status_code == 400
    assert "At most 3 events" in response.json()["events"][0]
    assert Event.objects.count() == 0


@pytest.mark.parametrize("events", [[], {}, "view", None])
def test_events_must_be_a_non_empty_list(browser, events):
    response = browser.send({"events": events})

    assert response.status_code == 400
    assert "non-empty list" in response.json()["events"][0]


def test_unknown_top_level_field_of_a_batch_is_rejected(browser):
    response = browser.send({"events": [{"event": "view", "item": "product:1"}], "sent_at": "now"})

    assert response.status_code == 400
    assert "sent_at" in response.json()["non_field_errors"][0]
    assert Event.objects.count() == 0


def test_non_json_body_is_rejected(browser):
    response = browser.send("event=view&item=product:1")

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["non_field_errors"][0]


def test_form_content_type_is_rejected(browser):
    response = browser.post("/api/personalization/events/", {"event": "view", "item": "product:1"})

    assert response.status_code == 400
    assert "application/json" in response.json()["content_type"][0]
    assert Event.objects.count() == 0


@pytest.mark.parametrize("body", [
    [{"event": "view", "item": "product:1"}],
    "view",
    42,
    None,
])
def test_non_object_top_level_json_is_rejected(browser, body):
    response = browser.send(json.dumps(body))

    assert response.status_code == 400
    assert "JSON object" in response.json()["non_field_errors"][0]
    assert Event.objects.count() == 0


# --- hostile input never produces a 500 --------------------------------------------------------------------

HOSTILE_BODIES = {
    "huge event name": {"event": "v" * 200_000, "item": "product:1"},
    "huge item": {"event": "view", "item": "product:" + "9" * 200_000},
    "huge event id": {"event": "view", "item": "product:1", "event_id": "f" * 100_000},
    "huge context key": {"event": "view", "item": "product:1", "context": {"k" * 100_000: 1}},
    "nested context": {"event": "view", "item": "product:1", "context": {"x_a": [[[[[[[[[[{"b": [1]}]]]]]]]]]]}},
    "nested as event": {"event": {"event": "view"}, "item": ["product:1"]},
    "unhashable fields": {"event": ["view"], "item": {"a": 1}, "event_id": {}, "value": [], "timestamp": {}},
    "number strings": {"event": "view", "item": "product:1", "value": "1e309", "timestamp": "1714567890"},
    "numbers for strings": {"event": 1, "item": 2, "recommendation_id": 3, "context": 4},
    "null bytes in fields": {"event": "view\u0000", "item": "product:1\u0000", "event_id": "\u0000"},
    "bool timestamp": {"event": "view", "item": "product:1", "timestamp": True},
    "huge float timestamp": {"event": "view", "item": "product:1", "timestamp": 1e300},
    "year 9999": {"event": "view", "item": "product:1", "timestamp": "9999-12-31T23:59:59+14:00"},
    "year 1": {"event": "view", "item": "product:1", "timestamp": "0001-01-01T00:00:00-12:00"},
    "batch of junk": {"events": [None, 1, "x", [], {}]},
    "events of events": {"events": [{"events": [{"event": "view"}]}]},
    "bad tz name": {"event": "view", "item": "product:1", "context": {"tz": "../../etc/passwd"}},
    "tz directory": {"event": "view", "item": "product:1", "context": {"tz": "America"}},
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_hostile_json_never_causes_a_server_error(browser, body):
    response = browser.send(body)

    assert response.status_code in (202, 400), response.content[:300]


@pytest.mark.parametrize("raw", [
    b'{"event": "view", "item": "product:1", "value": 1' + b"0" * 400 + b"}",
    b'{"event": "view", "item": "product:1", "timestamp": 1' + b"0" * 400 + b"}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"events": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
    b"\xff\xfe\x00garbage",
    b"",
], ids=["huge integer value", "huge integer timestamp", "deeply nested arrays", "deeply nested objects",
        "invalid utf-8", "empty body"])
def test_hostile_bodies_never_cause_a_server_error(browser, raw):
    response = browser.send(raw)

    assert response.status_code in (202, 400), response.content[:300]
    assert Event.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("context", [{"x_note": "a\u0000b"}, {"page": "/p/1/\u0000"}, {"x_\u0000": 1}])
def test_null_bytes_in_context_are_stored_or_rejected_not_retried_forever(browser, context):
    """PostgreSQL's JSONB cannot hold \\u0000; the event must be cleaned or refused with a 400, never a 5xx."""
    response = browser.send({"event": "view", "item": "product:1", "context": context})

    assert response.status_code in (202, 400), response.content[:300]
    if response.status_code == 202:
        assert response.json()["accepted"] == 1
        assert Event.objects.count() == 1


# --- events not recorded on purpose ------------------------------------------------------------------------


@pytest.mark.parametrize("user_agent", [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
    "curl/8.5.0",
    "",
])
def test_bot_events_are_dropped_and_counted(browser, user_agent):
    before = metrics.get("bot_events")

    two = [{"event": "view", "item": "product:1"}, {"event": "view", "item": "product:2"}]

    response = browser.send({"events": two}, HTTP_USER_AGENT=user_agent)

    assert response.status_code == 202
    assert response.json() == {"accepted": 0, "duplicates": 0, "dropped": 2, "reason": "bot"}
    assert Event.objects.count() == 0
    assert metrics.get("bot_events") == before + 2
    assert "pvid" not in response.cookies


def test_bot_filter_off_stores_bot_events(browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "BOT_FILTER": False}

    response = browser.send({"event": "view", "item": "product:1"}, HTTP_USER_AGENT="curl/8.5.0")

    assert response.json()["accepted"] == 1
    assert Event.objects.count() == 1


def test_events_over_the_rate_limit_are_dropped(browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "RATE_LIMIT_EVENTS": 3}

    results = [browser.send({"event": "view", "item": f"product:{i}"}).json() for i in range(5)]

    assert [r["accepted"] for r in results] == [1, 1, 1, 0, 0]
    assert results[3] == {"accepted": 0, "duplicates": 0, "dropped": 1, "reason": "rate_limited"}
    assert Event.objects.count() == 3
    assert metrics.get("rate_limited_events") == 2


def test_rate_limit_is_per_visitor(make_browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "RATE_LIMIT_EVENTS": 2}
    first, second = make_browser(), make_browser()
    first.send({"event": "view", "item": "product:1"})  # sets the cookie

    flood = first.send({"events": [{"event": "view", "item": "product:1"}] * 2})
    other = second.send({"event": "view", "item": "product:1"})

    assert flood.json()["reason"] == "rate_limited"
    assert other.json()["accepted"] == 1


# --- compressed and oversized bodies -----------------------------------------------------------------------


def test_gzip_compressed_batch_is_accepted(browser):
    body = gzip.compress(json.dumps({"events": [{"event": "view", "item": "product:1"}] * 3}).encode())

    response = browser.send(body, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 202
    assert Event.objects.count() == 3


def test_invalid_gzip_is_rejected(browser):
    response = browser.send(b"not gzip at all", HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 400
    assert "gzip" in response.json()["non_field_errors"][0]


def test_gzip_bomb_is_refused_as_too_large(browser):
    bomb = gzip.compress(b'{"events": [' + b" " * (6 * 1024 * 1024) + b"]}")

    response = browser.send(bomb, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 413
    assert Event.objects.count() == 0


def test_body_over_five_megabytes_is_refused(browser):
    response = browser.send(b'{"event": "view", "item": "product:1", "context": {"x": "' + b"a" * (5 * 1024 * 1024)
                            + b'"}}')

    assert response.status_code == 413
    assert Event.objects.count() == 0
