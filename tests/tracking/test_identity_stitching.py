"""Sign-in joins a browser's anonymous history to the user; sign-out starts a new, unattributed visitor."""

from __future__ import annotations

import pytest

from personalization.models import Event, VisitorLink

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


def log_in(browser, user):
    response = browser.post("/accounts/login/", {"username": user.get_username(), "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    return response


def log_out(browser):
    response = browser.post("/accounts/logout/")
    assert response.status_code in (200, 302)
    return response


def test_login_attributes_earlier_anonymous_events_to_the_user(browser, product, shopper):
    browser.get(f"/p/{product.pk}/")
    browser.send({"event": "click", "item": "product:9"})
    visitor_id = browser.visitor_id
    assert list(Event.objects.values_list("user_id", flat=True)) == [None, None]

    log_in(browser, shopper)

    assert browser.visitor_id == visitor_id  # signing in keeps the browser's visitor id
    assert set(Event.objects.values_list("user_id", "visitor_id")) == {(shopper.pk, visitor_id)}
    assert VisitorLink.objects.get(visitor_id=visitor_id).user_id == shopper.pk


def test_events_after_login_carry_the_user(browser, product, shopper):
    browser.get("/")
    log_in(browser, shopper)

    browser.get(f"/p/{product.pk}/")
    browser.send({"event": "add_to_cart", "item": f"product:{product.pk}", "value": 12.5})

    rows = set(Event.objects.values_list("event_type", "user_id", "visitor_id"))
    assert rows == {("view", shopper.pk, browser.visitor_id), ("add_to_cart", shopper.pk, browser.visitor_id)}


def test_login_does_not_claim_other_visitors_events(make_browser, product, shopper):
    mine, stranger = make_browser(), make_browser()
    mine.get(f"/p/{product.pk}/")
    stranger.get(f"/p/{product.pk}/")

    log_in(mine, shopper)

    assert Event.objects.get(visitor_id=stranger.visitor_id).user_id is None
    assert Event.objects.get(visitor_id=mine.visitor_id).user_id == shopper.pk


def test_logout_rotates_the_visitor_and_later_events_are_anonymous(browser, product, shopper):
    browser.get(f"/p/{product.pk}/")
    log_in(browser, shopper)
    signed_in_visitor = browser.visitor_id

    response = log_out(browser)

    assert "pvid" in response.cookies
    new_visitor = browser.visitor_id
    assert new_visitor and new_visitor != signed_in_visitor
    browser.get(f"/p/{product.pk}/")
    browser.send({"event": "click", "item": f"product:{product.pk}"})
    later = Event.objects.filter(visitor_id=new_visitor)
    assert later.count() == 2
    assert set(later.values_list("user_id", flat=True)) == {None}
    assert not VisitorLink.objects.filter(visitor_id=new_visitor).exists()
    assert Event.objects.get(visitor_id=signed_in_visitor).user_id == shopper.pk


def test_two_browsers_of_one_user_share_one_history(make_browser, make_product, shopper):
    laptop, phone = make_browser(), make_browser()
    first, second = make_product(), make_product()
    laptop.get(f"/p/{first.pk}/")
    phone.get(f"/p/{second.pk}/")

    log_in(laptop, shopper)
    log_in(phone, shopper)

    assert laptop.visitor_id != phone.visitor_id
    history = set(Event.objects.filter(user=shopper).values_list("item_key", flat=True))
    assert history == {f"product:{first.pk}", f"product:{second.pk}"}
    assert set(VisitorLink.objects.filter(user=shopper).values_list("visitor_id", flat=True)) == {
        laptop.visitor_id, phone.visitor_id,
    }


def test_events_buffered_before_login_and_sent_after_are_attributed(browser, shopper):
    """The tracker flushes its queue late; the browser's visitor link attributes the events anyway."""
    browser.get("/")
    log_in(browser, shopper)
    del browser.cookies["sessionid"]  # the session ends without a logout (it expired)

    browser.send({"event": "dwell", "item": "product:3", "value": 30})

    assert Event.objects.get().user_id == shopper.pk


def test_login_without_consent_links_nothing(browser, product, shopper, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CONSENT_REQUIRED": True}

    log_in(browser, shopper)

    assert not VisitorLink.objects.exists()
    assert "pvid" not in browser.cookies
