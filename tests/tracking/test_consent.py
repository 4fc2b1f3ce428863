"""Consent and browser privacy signals: without consent nothing is stored and no visitor cookie is set."""

from __future__ import annotations

import pytest

from personalization.models import Event

pytestmark = pytest.mark.django_db

VIEW = {"event": "view", "item": "product:1"}


@pytest.fixture
def consent_required(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CONSENT_REQUIRED": True}


@pytest.mark.usefixtures("consent_required")
def test_without_the_consent_cookie_nothing_is_stored_and_no_cookie_is_set(browser):
    response = browser.send(VIEW)

    assert response.status_code == 202
    assert response.json() == {"accepted": 0, "duplicates": 0, "dropped": 1, "reason": "no_consent"}
    assert "pvid" not in response.cookies
    assert Event.objects.count() == 0


@pytest.mark.usefixtures("consent_required")
@pytest.mark.parametrize("answer", ["1", "yes", "granted", "true", "all"])
def test_with_the_consent_cookie_events_are_stored(browser, answer):
    browser.cookies["personalization_consent"] = answer

    response = browser.send(VIEW)

    assert response.json()["accepted"] == 1
    assert "pvid" in response.cookies
    assert Event.objects.get().visitor_id == browser.visitor_id


@pytest.mark.usefixtures("consent_required")
@pytest.mark.parametrize("answer", ["0", "no", "denied", ""])
def test_a_refusal_in_the_consent_cookie_stores_nothing(browser, answer):
    browser.cookies["personalization_consent"] = answer

    response = browser.send(VIEW)

    assert response.json()["dropped"] == 1
    assert Event.objects.count() == 0


@pytest.mark.usefixtures("consent_required")
def test_withdrawn_consent_deletes_the_visitor_cookie(browser):
    browser.cookies["personalization_consent"] = "yes"
    browser.send(VIEW)
    assert browser.visitor_id

    browser.cookies["personalization_consent"] = "no"
    response = browser.send({"event": "click", "item": "product:1"})

    assert response.cookies["pvid"].value == ""
    assert int(response.cookies["pvid"]["max-age"]) == 0
    assert list(Event.objects.values_list("event_type", flat=True)) == ["view"]


def test_custom_consent_callback_decides(browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CONSENT_REQUIRED": True,
                                "CONSENT_CALLBACK": lambda request: request.headers.get("X-Consent") == "ok"}

    refused = browser.send(VIEW)
    granted = browser.send(VIEW, HTTP_X_CONSENT="ok")

    assert refused.json()["dropped"] == 1
    assert granted.json()["accepted"] == 1
    assert Event.objects.count() == 1


def test_global_privacy_control_is_honoured_by_default(browser):
    response = browser.send(VIEW, HTTP_SEC_GPC="1")

    assert response.json() == {"accepted": 0, "duplicates": 0, "dropped": 1, "reason": "no_consent"}
    assert "pvid" not in response.cookies
    assert Event.objects.count() == 0


def test_global_privacy_control_overrides_a_consent_cookie(browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CONSENT_REQUIRED": True}
    browser.cookies["personalization_consent"] = "yes"

    browser.send(VIEW, HTTP_SEC_GPC="1")

    assert Event.objects.count() == 0


def test_global_privacy_control_can_be_ignored(browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "HONOR_GPC": False}

    browser.send(VIEW, HTTP_SEC_GPC="1")

    assert Event.objects.count() == 1


def test_do_not_track_is_ignored_by_default(browser):
    response = browser.send(VIEW, HTTP_DNT="1")

    assert response.json()["accepted"] == 1


def test_do_not_track_is_honoured_when_configured(browser, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "HONOR_DNT": True}

    dnt = browser.send(VIEW, HTTP_DNT="1")
    no_dnt = browser.send(VIEW, HTTP_DNT="0")

    assert dnt.json()["dropped"] == 1 and "pvid" not in dnt.cookies
    assert no_dnt.json()["accepted"] == 1
    assert Event.objects.count() == 1
