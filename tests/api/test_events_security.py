"""POST events/ against another site and a flood: cookie-bearing cross-site writes are refused, one IP is limited
however many visitor ids it makes up."""

from __future__ import annotations

import uuid

import pytest
from django.core import signing

from personalization.models import Event

pytestmark = pytest.mark.django_db

VIEW = {"event": "view", "item": "product:1"}


@pytest.fixture
def victim(browser):
    browser.cookies["pvid"] = signing.TimestampSigner(salt="personalization.visitor").sign(uuid.uuid4().hex)
    return browser


@pytest.mark.parametrize("headers", [
    {"HTTP_ORIGIN": "https://evil.example", "HTTP_SEC_FETCH_SITE": "cross-site"},
    {"HTTP_ORIGIN": "https://evil.example"},
    {"HTTP_SEC_FETCH_SITE": "cross-site"},
    {"HTTP_ORIGIN": "null", "HTTP_SEC_FETCH_SITE": "cross-site"},
])
def test_cross_site_writes_with_the_visitors_cookie_are_refused(victim, headers):
    response = victim.send('{"event": "view", "item": "product:1"}', content_type="text/plain", **headers)
    assert response.status_code == 403 and "detail" in response.json()
    assert not Event.objects.exists()


@pytest.mark.parametrize("headers", [
    {"HTTP_ORIGIN": "http://testserver", "HTTP_SEC_FETCH_SITE": "same-origin"},
    {"HTTP_SEC_FETCH_SITE": "same-site"},
    {},  # an old browser or a server-side client: nothing says it is cross-site
])
def test_same_site_writes_are_accepted(victim, headers):
    assert victim.send(VIEW, **headers).status_code == 202
    assert Event.objects.count() == 1


def test_allowed_origins_and_cookieless_clients_may_write(victim, make_browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "EVENTS_ALLOWED_ORIGINS": ["https://app.example"]}
    ok = victim.send(VIEW, HTTP_ORIGIN="https://app.example", HTTP_SEC_FETCH_SITE="cross-site")
    assert ok.status_code == 202
    server = make_browser()  # no cookie: nothing of a visitor's to abuse
    assert server.send(VIEW, HTTP_ORIGIN="https://partner.example").status_code == 202
    assert Event.objects.count() == 2


def test_one_ip_is_limited_however_many_visitors_it_makes_up(make_browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "RATE_LIMIT_EVENTS": 100, "RATE_LIMIT_EVENTS_PER_IP": 3}
    results = [make_browser().send(VIEW).json() for _ in range(5)]  # a fresh visitor id every time
    assert [r["accepted"] for r in results] == [1, 1, 1, 0, 0]
    assert results[-1]["reason"] == "rate_limited"
    other = make_browser(REMOTE_ADDR="10.1.2.3").send(VIEW).json()
    assert other["accepted"] == 1
    assert Event.objects.count() == 4
