"""The API's rate limits: sliding-window counters per visitor and per IP, shared through the cache, counted in a
per-process book flushed in the background (the counting itself: tests/test_ratelimit.py)."""

from __future__ import annotations

import time
import types
import uuid

import pytest
from django.core import signing
from django.core.cache import caches

from personalization.api import throttling
from personalization.conf import settings as psettings
from personalization.ratelimit import Limit, book
from tests.serving.shop import live_shop_fixture, shop_fixture  # noqa: F401

URL = "/api/personalization/recommendations/"


@pytest.fixture(autouse=True)
def mid_window(monkeypatch):
    """The limits read the clock in the middle of a one-minute window: a test's requests and its look at their
    counter never fall on both sides of a minute's turn (their counts would split over two counters)."""
    pinned = (time.time() // 60) * 60 + 30.0
    monkeypatch.setattr(throttling, "time", types.SimpleNamespace(time=lambda: pinned, sleep=time.sleep))
    return pinned


def _counter(ident: str, scope: str = "visitor", previous: bool = False) -> str:
    limit = Limit(scope, ident, num=1, duration=60)
    return limit.keys(throttling.time.time())[1 if previous else 0]


def test_a_refused_request_is_not_counted_and_says_when_to_retry(shop, browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "API_RATE_VISITOR": "2/min"}
    assert [browser.get(URL).status_code for _ in range(2)] == [200, 200]
    refused = browser.get(URL)
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
    assert browser.get(URL).status_code == 429
    subject = f"v:{browser.visitor_id}"
    book.flush()
    assert caches["default"].get(_counter(subject)) == 2  # the refused requests were not counted


def _new_visitor(browser) -> str:
    visitor_id = uuid.uuid4().hex
    browser.cookies[psettings.VISITOR_COOKIE_NAME] = signing.TimestampSigner(
        salt=psettings.VISITOR_COOKIE_SALT).sign(visitor_id)
    return f"v:{visitor_id}"


def test_a_busy_previous_window_limits_a_visitor_on_first_sight(shop, browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "API_RATE_VISITOR": "5/min"}
    subject = _new_visitor(browser)
    # other processes served far more than the rate in the last window: its overlap with the sliding window is over
    caches["default"].set(_counter(subject, previous=True), 100_000, 120)
    assert browser.get(URL).status_code == 429


def test_other_processes_requests_count_once_this_process_has_flushed(shop, browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "API_RATE_VISITOR": "10/min"}
    subject = _new_visitor(browser)
    assert browser.get(URL).status_code == 200  # first sight: counted in the cache at once
    caches["default"].incr(_counter(subject), 50)  # fifty requests served by other processes meanwhile
    assert browser.get(URL).status_code == 200  # this process has not heard of them yet...
    book.flush()  # ...until its next flush (every BACKGROUND_FLUSH_SECONDS), whose reply brings the total
    assert browser.get(URL).status_code == 429
    book.flush()
    assert caches["default"].get(_counter(subject)) == 52


def test_counters_are_plain_integers_in_the_apps_cache_sent_in_the_background(shop, browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "API_RATE_IP": "50/min"}
    for _ in range(3):
        assert browser.get(URL).status_code == 200
    counter = _counter("127.0.0.1", scope="ip")
    deadline = time.monotonic() + 5  # no explicit flush: the background thread sends them
    while caches["default"].get(counter) != 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert caches["default"].get(counter) == 3


def test_no_rate_means_no_limit(shop, browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "API_RATE_VISITOR": None, "API_RATE_IP": None}
    assert all(browser.get(URL).status_code == 200 for _ in range(5))
    assert caches["default"].get(_counter(f"v:{browser.visitor_id}")) is None
