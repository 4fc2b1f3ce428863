"""personalization.testutils: what a host project's tests use to capture events, override settings and reset."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

import personalization
from personalization.conf import settings as psettings
from personalization.models import Event
from personalization.ratelimit import book
from personalization.testutils import capture_events, override_personalization, reset_state
from personalization.tracking.collectors import DatabaseCollector, MemoryCollector, get_collector
from tests.conftest import DESKTOP_UA

pytestmark = pytest.mark.django_db


def test_capture_events_records_tracked_events_instead_of_storing_them(shopper):
    request = RequestFactory(HTTP_USER_AGENT=DESKTOP_UA).get("/checkout/")
    request.user = shopper
    with capture_events() as events:
        personalization.track(request, "purchase", "product:4", 25.0)
        assert [(e.event_type, e.item_key, e.value, e.user_id) for e in events] == [
            ("purchase", "product:4", 25.0, shopper.pk)]  # filled as they are tracked
    assert Event.objects.count() == 0
    assert isinstance(get_collector(), DatabaseCollector)  # the site's own collector is back after the block
    assert MemoryCollector.events == []


def test_capture_events_sees_page_views_of_the_middleware(browser, product):
    with capture_events() as events:
        browser.get(f"/p/{product.pk}/")
    assert [(e.event_type, e.item_key, e.source) for e in events] == [("view", f"product:{product.pk}", "middleware")]
    assert Event.objects.count() == 0


def test_override_personalization_changes_some_keys_and_keeps_the_others(settings):
    slots = dict(psettings.SLOTS)
    with override_personalization(CONSENT_REQUIRED=True):
        assert psettings.CONSENT_REQUIRED is True
        assert psettings.SLOTS == slots  # the site's other keys are kept
    assert psettings.CONSENT_REQUIRED is False


@override_personalization(RECOMMENDATION_POOL=77)
def test_override_personalization_as_a_decorator():
    assert psettings.RECOMMENDATION_POOL == 77


def test_override_personalization_rejects_unknown_keys_as_the_settings_do():
    from django.core.exceptions import ImproperlyConfigured

    with override_personalization(NOT_A_SETTING=1), pytest.raises(ImproperlyConfigured, match="NOT_A_SETTING"):
        psettings.SLOTS  # noqa: B018


def test_reset_state_forgets_derived_objects_and_rate_counts():
    collector = get_collector()
    book.known["personalization:throttle:t:x:1"] = 5
    reset_state()
    assert get_collector() is not collector  # rebuilt from the settings
    assert not book.known
