"""The signed first-party visitor cookie: how a browser is recognised across requests."""

from __future__ import annotations

import time
import uuid

import pytest
from django.core import signing

from personalization.models import Event

pytestmark = pytest.mark.django_db

SALT = "personalization.visitor"
VIEW = {"event": "view", "item": "product:1"}


class PastSigner(signing.TimestampSigner):
    """Signs as if it were ``seconds_ago`` seconds ago."""

    def __init__(self, seconds_ago: int, **kwargs):
        super().__init__(salt=SALT, **kwargs)
        self.seconds_ago = seconds_ago

    def timestamp(self):
        return signing.b62_encode(int(time.time()) - self.seconds_ago)


def unsign(value: str) -> str:
    return signing.TimestampSigner(salt=SALT).unsign(value)


def test_first_response_sets_an_httponly_lax_signed_cookie(browser):
    response = browser.send(VIEW)

    cookie = response.cookies["pvid"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == 365 * 24 * 3600
    visitor_id = unsign(cookie.value)
    assert len(visitor_id) == 32
    assert Event.objects.get().visitor_id == visitor_id


@pytest.mark.parametrize(("debug", "secure"), [(False, True), (True, False)])
def test_cookie_is_secure_unless_debug(browser, settings, debug, secure):
    settings.DEBUG = debug

    response = browser.send(VIEW)

    assert bool(response.cookies["pvid"]["secure"]) is secure


def test_secure_flag_can_be_forced_off(browser, settings):
    settings.DEBUG = False
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "VISITOR_COOKIE_SECURE": False}

    response = browser.send(VIEW)

    assert not response.cookies["pvid"]["secure"]


def test_visitor_id_is_stable_across_requests(browser):
    browser.send(VIEW)
    visitor_id = browser.visitor_id

    later = browser.send({"event": "click", "item": "product:2"})

    assert "pvid" not in later.cookies  # a fresh cookie is not re-sent on every request
    assert browser.visitor_id == visitor_id
    assert set(Event.objects.values_list("visitor_id", flat=True)) == {visitor_id}


def test_tampered_cookie_gets_a_new_visitor_id(browser):
    browser.send(VIEW)
    original = browser.visitor_id
    forged_id = uuid.uuid4().hex
    good = browser.cookies["pvid"].value
    browser.cookies["pvid"] = forged_id + good[32:]  # same timestamp and signature, other id

    response = browser.send({"event": "click", "item": "product:2"})

    new_id = unsign(response.cookies["pvid"].value)
    assert new_id not in (forged_id, original)
    assert Event.objects.get(event_type="click").visitor_id == new_id


def test_cookie_signed_with_another_salt_is_not_accepted(browser):
    browser.cookies["pvid"] = signing.TimestampSigner(salt="other").sign(uuid.uuid4().hex)

    response = browser.send(VIEW)

    assert "pvid" in response.cookies
    assert Event.objects.get().visitor_id == unsign(response.cookies["pvid"].value)


def test_cookie_older_than_refresh_is_re_signed_with_the_same_id(browser):
    visitor_id = uuid.uuid4().hex
    browser.cookies["pvid"] = PastSigner(8 * 24 * 3600).sign(visitor_id)

    response = browser.send(VIEW)

    assert "pvid" in response.cookies
    fresh = response.cookies["pvid"].value
    assert unsign(fresh) == visitor_id
    assert signing.TimestampSigner(salt=SALT).unsign(fresh, max_age=60) == visitor_id  # signed just now
    assert Event.objects.get().visitor_id == visitor_id


def test_cookie_younger_than_refresh_is_not_re_sent(browser):
    visitor_id = uuid.uuid4().hex
    browser.cookies["pvid"] = PastSigner(6 * 24 * 3600).sign(visitor_id)

    response = browser.send(VIEW)

    assert "pvid" not in response.cookies
    assert Event.objects.get().visitor_id == visitor_id


def test_expired_cookie_gets_a_new_visitor_id(browser):
    old_id = uuid.uuid4().hex
    browser.cookies["pvid"] = PastSigner(366 * 24 * 3600).sign(old_id)

    response = browser.send(VIEW)

    new_id = unsign(response.cookies["pvid"].value)
    assert new_id != old_id
    assert Event.objects.get().visitor_id == new_id


def test_cookie_name_is_configurable(browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "VISITOR_COOKIE_NAME": "vid"}

    response = browser.send(VIEW)

    assert "vid" in response.cookies and "pvid" not in response.cookies
    assert Event.objects.get().visitor_id == unsign(response.cookies["vid"].value)
