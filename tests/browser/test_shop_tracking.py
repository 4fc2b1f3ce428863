"""The demo shop in a real browser: what tracker.js, the middleware and the shop's views store, event by event.

Each test drives Debian's Chromium (Playwright) against the live server and compares the Event table with the
exact list of events the journey must produce (type, item, source, visitor, user, value, recommendation id and the
context keys that matter). Events are compared as multisets: the client's and the server's clocks both stamp
events, so the order of near-simultaneous rows is not a contract.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from decimal import Decimal
from typing import Any, NamedTuple

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOME = re.compile(r"^https?://[^/]+/$")
PASSWORD = "correct-horse-battery-staple"
# Context keys a journey controls; the others (device, country, hour, ...) are covered by the tracking tests.
CONTEXT_KEYS = ("page", "slot", "position", "query", "results", "quantity", "order")


class Ev(NamedTuple):
    type: str
    item: str
    source: str
    visitor: str
    user: int | None
    value: float | None
    rec: str
    context: tuple


def ev(type_: str, item: str, source: str, visitor: str, user: int | None = None, value: float | None = None,
       rec: str = "", **context: Any) -> Ev:
    return Ev(type_, item, source, visitor, user, value, rec, tuple(sorted(context.items())))


def _row(event: Any) -> Ev:
    ctx = {k: event.context[k] for k in CONTEXT_KEYS if k in event.context}
    return Ev(event.event_type, event.item_key, event.source, event.visitor_id, event.user_id, event.value,
              event.recommendation_id, tuple(sorted(ctx.items())))


def _sorted(events: list[Ev]) -> list[Ev]:
    return sorted(events, key=repr)


def stored(**filters: Any) -> list[Ev]:
    from personalization.models import Event

    return _sorted([_row(e) for e in Event.objects.filter(**filters)])


def who(events: list[Ev]) -> list[tuple]:
    """The identity view of events (type, item, visitor, user), for tests about stitching rather than sources."""
    return sorted((e.type, e.item, e.visitor, e.user) for e in events)


def wait_for(fetch: Any, until: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Call ``fetch`` until ``until(result)`` holds or ``timeout`` seconds pass; return the last result.

    The caller asserts on what comes back, so a timeout shows what was actually stored.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if until(result) or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def wait_for_events(expected: list[Ev], **filters: Any) -> list[Ev]:
    """Poll the Event table until it holds exactly ``expected``; return what it holds.

    Page views are written after the response has been sent and beacons arrive on their own connections, hence
    the polling.
    """
    return wait_for(lambda: stored(**filters), lambda got: got == _sorted(expected))


def wait_for_identities(expected: list[tuple], **filters: Any) -> list[tuple]:
    """Like ``wait_for_events`` for the (type, item, visitor, user) view of the events."""
    return wait_for(lambda: who(stored(**filters)), lambda got: got == sorted(expected))


def assert_same_events(got: list, want: list) -> None:
    """Multiset equality with a readable message: what is missing and what should not be there."""
    missing, unexpected = Counter(want) - Counter(got), Counter(got) - Counter(want)
    lines = [f"  missing:    {e}" for e in missing.elements()]
    lines += [f"  unexpected: {e}" for e in unexpected.elements()]
    assert not lines, "stored events differ from the journey's:\n" + "\n".join(lines)


def flush_tracker(page: Any) -> None:
    """Make tracker.js send its queue now and wait until the server has acknowledged it."""
    page.wait_for_function("() => window.personalization !== undefined")
    page.evaluate("() => window.personalization.flush()")
    page.wait_for_function("() => window.personalization.queue().length === 0")


def cookies_of(context: Any) -> dict[str, dict]:
    return {c["name"]: c for c in context.cookies()}


def visitor_of(context: Any) -> str | None:
    """The visitor id in the context's signed visitor cookie (None without one)."""
    from django.core import signing

    from personalization.conf import settings as psettings

    cookie = cookies_of(context).get(psettings.VISITOR_COOKIE_NAME)
    if cookie is None:
        return None
    return signing.TimestampSigner(salt=psettings.VISITOR_COOKIE_SALT).unsign(cookie["value"])


def open_tile(page: Any, product: Any) -> None:
    """Click a product tile's title on the current listing and wait for the product page."""
    page.click(f'main .tile-title[href="/p/{product.pk}/"]')
    page.wait_for_url(f"**/p/{product.pk}/")
    page.wait_for_function("() => window.personalization !== undefined")


def log_in(page: Any, username: str) -> None:
    """Log in through the shop's login form (from the header's link), as a shopper would."""
    page.click('header a[href="/accounts/login/"]')
    page.wait_for_url("**/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_selector(f'header button:has-text("Log out {username}")')


@pytest.fixture
def catalog(db):
    from storefront_demo.shop.models import Brand, Category, Product

    candles = Category.objects.create(name="Candles", slug="candles")
    mugs = Category.objects.create(name="Mugs", slug="mugs")
    brand = Brand.objects.create(name="Hearth & Co")
    amber = Product.objects.create(sku="CAN-1", name="Amber candle", price=Decimal("12.50"), category=candles,
                                   brand=brand, description="Warm amber and vanilla.")
    blue = Product.objects.create(sku="MUG-1", name="Blue mug", price=Decimal("8.00"), category=mugs)
    cedar = Product.objects.create(sku="CAN-2", name="Cedar candle", price=Decimal("15.00"), category=candles)
    return amber, blue, cedar


@pytest.fixture
def shopper_ada(db, django_user_model):
    return django_user_model.objects.create_user("ada", "ada@example.com", PASSWORD)


def test_anonymous_journey_stores_exactly_the_expected_events(new_context, catalog, tmp_path):
    from storefront_demo.shop.models import Order

    amber, blue, _ = catalog
    context = new_context()
    page = context.new_page()

    page.goto("/")
    visitor = visitor_of(context)
    assert visitor and len(visitor) == 32

    # Home -> product tile: a tracker click, then the middleware's page view.
    open_tile(page, amber)
    shot = tmp_path / "product.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0, "the product page screenshot is empty"

    # Search from the header: one server-side search event (its text stored as a keyed hash only).
    page.fill("#search-q", "candle")
    page.press("#search-q", "Enter")
    page.wait_for_url("**/search/?q=candle")
    assert page.locator("main .tile").count() == 2
    open_tile(page, amber)

    # Two of the product from its page (clicking into the quantity field is not a click on the product), then
    # one mug from a home page tile.
    page.click("#qty")
    page.fill("#qty", "2")
    page.click("form.buy button[type=submit]")
    page.wait_for_url("**/cart/")
    page.click("header a.brand")
    page.wait_for_url(HOME)
    page.click(f'main .tile[data-personalization-item="product:{blue.pk}"] button[type=submit]')
    page.wait_for_selector("text=Added Blue mug to your cart.")

    # Cart -> checkout -> place the order.
    page.click("header a.cart-link")
    page.wait_for_url("**/cart/")
    assert page.locator("table.cart tbody tr").count() == 2
    page.click('main a.button:has-text("Checkout")')
    page.wait_for_url("**/checkout/")
    page.click('main button:has-text("Place order")')
    page.wait_for_url("**/checkout/thanks/*/")
    flush_tracker(page)

    order = Order.objects.get()
    assert (order.visitor_id, order.user_id, order.total) == (visitor, None, Decimal("33.00"))
    a, b = f"product:{amber.pk}", f"product:{blue.pk}"
    expected = [
        ev("click", a, "tracker", visitor, page="/"),
        ev("view", a, "middleware", visitor, page=f"/p/{amber.pk}/"),
        ev("search", "", "python", visitor, page="/search/", results=2),  # the text only as query_hash
        ev("click", a, "tracker", visitor, page="/search/"),
        ev("view", a, "middleware", visitor, page=f"/p/{amber.pk}/"),
        # add_to_cart is recorded once, by the shop's view (with the quantity and value actually added).
        ev("add_to_cart", a, "python", visitor, value=25.0, page=f"/cart/add/{amber.pk}/", quantity=2),
        ev("add_to_cart", b, "python", visitor, value=8.0, page=f"/cart/add/{blue.pk}/", quantity=1),
        # One purchase per order line, valued at the line total.
        ev("purchase", a, "python", visitor, value=25.0, page="/checkout/", quantity=2, order=order.pk),
        ev("purchase", b, "python", visitor, value=8.0, page="/checkout/", quantity=1, order=order.pk),
    ]
    assert_same_events(wait_for_events(expected), expected)
    assert visitor_of(context) == visitor, "the visitor cookie changed during an anonymous visit"


def test_login_links_past_and_later_events_on_every_device(new_context, catalog, shopper_ada):
    from personalization.models import VisitorLink

    amber, blue, cedar = catalog
    a, b, c = (f"product:{p.pk}" for p in (amber, blue, cedar))
    user = shopper_ada.pk

    # Device 1 browses anonymously.
    laptop = new_context()
    page = laptop.new_page()
    page.goto("/")
    v1 = visitor_of(laptop)
    open_tile(page, amber)
    page.fill("#search-q", "mug")
    page.press("#search-q", "Enter")
    page.wait_for_url("**/search/?q=mug")
    flush_tracker(page)
    before = [("click", a, v1, None), ("view", a, v1, None), ("search", "", v1, None)]
    assert_same_events(wait_for_identities(before), before)

    # Logging in links this browser and its history to the user; the visitor id itself is kept.
    log_in(page, "ada")
    assert visitor_of(laptop) == v1
    assert VisitorLink.objects.filter(visitor_id=v1, user_id=user).exists()
    stitched = [(t, i, v, user) for t, i, v, _ in before]
    assert_same_events(who(stored()), stitched)

    # Later events from this browser carry the user: a tracker click and a page view.
    open_tile(page, blue)
    flush_tracker(page)
    laptop_events = [*stitched, ("click", b, v1, user), ("view", b, v1, user)]
    assert_same_events(wait_for_identities(laptop_events), laptop_events)

    # Device 2 views a product anonymously, then logs in as the same user: its history joins the user's.
    phone = new_context(viewport={"width": 390, "height": 844})
    page2 = phone.new_page()
    page2.goto(f"/p/{cedar.pk}/")
    v2 = visitor_of(phone)
    assert v2 and v2 != v1
    anonymous_phone = [("view", c, v2, None)]
    assert_same_events(wait_for_identities(anonymous_phone, visitor_id=v2), anonymous_phone)
    log_in(page2, "ada")
    assert VisitorLink.objects.filter(visitor_id=v2, user_id=user).exists()
    history = [*laptop_events, ("view", c, v2, user)]
    assert_same_events(who(stored(user_id=user)), history)
    assert {e.visitor for e in stored(user_id=user)} == {v1, v2}
    assert_same_events(who(stored()), history)  # nothing of the journey left unattributed


def test_logout_starts_a_new_anonymous_visitor(new_context, catalog, shopper_ada):
    from personalization.models import VisitorLink

    amber, blue, _ = catalog
    a, b = f"product:{amber.pk}", f"product:{blue.pk}"
    user = shopper_ada.pk
    context = new_context()
    page = context.new_page()
    page.goto("/")
    v1 = visitor_of(context)
    log_in(page, "ada")
    open_tile(page, amber)
    flush_tracker(page)
    signed_in = [("click", a, v1, user), ("view", a, v1, user)]
    assert_same_events(wait_for_identities(signed_in), signed_in)

    page.click('header button:has-text("Log out ada")')
    page.wait_for_selector('header a[href="/accounts/login/"]')
    v2 = visitor_of(context)
    assert v2 and v2 != v1, "logging out must replace the visitor cookie"
    assert not VisitorLink.objects.filter(visitor_id=v2).exists()

    page.goto("/")
    open_tile(page, blue)
    flush_tracker(page)
    after = [*signed_in, ("click", b, v2, None), ("view", b, v2, None)]
    assert_same_events(wait_for_identities(after), after)
    assert_same_events(who(stored(user_id=user)), signed_in)
    assert visitor_of(context) == v2


def test_visitor_cookie_is_httponly_and_samesite_lax(new_context, catalog):
    from personalization.conf import settings as psettings

    context = new_context()
    page = context.new_page()
    page.goto("/")
    cookie = cookies_of(context)[psettings.VISITOR_COOKIE_NAME]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["expires"] > time.time() + 300 * 24 * 3600, "the visitor cookie should last about a year"
    assert f"{psettings.VISITOR_COOKIE_NAME}=" not in page.evaluate("() => document.cookie")
    assert len(visitor_of(context)) == 32


def test_consent_mode_stores_nothing_until_the_visitor_consents(new_context, catalog, settings, live_server):
    from personalization.conf import settings as psettings

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CONSENT_REQUIRED": True}
    amber, blue, _ = catalog
    context = new_context()
    page = context.new_page()

    page.goto("/")
    assert page.locator("script[data-consent-required='1']").count() == 1
    open_tile(page, amber)
    page.fill("#search-q", "candle")
    page.press("#search-q", "Enter")
    page.wait_for_url("**/search/?q=candle")
    assert page.evaluate("() => window.personalization.queue().length") == 0, "the tracker queued without consent"
    assert visitor_of(context) is None, "a visitor cookie was set without consent"

    context.add_cookies([{"name": psettings.CONSENT_COOKIE_NAME, "value": "1", "url": live_server.url}])
    page.goto("/")
    visitor = visitor_of(context)
    assert visitor, "no visitor cookie after consent"
    open_tile(page, blue)
    flush_tracker(page)
    b = f"product:{blue.pk}"
    # Only the consented events exist: the earlier view, click and search were never stored.
    expected = [("click", b, visitor, None), ("view", b, visitor, None)]
    assert_same_events(wait_for_identities(expected), expected)
