"""personalization.conf.settings: defaults, the host's overrides, unknown keys and reloading."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from personalization.conf import DEFAULTS
from personalization.conf import settings as psettings
from personalization.tracking.collectors import DatabaseCollector, MemoryCollector, get_collector


def test_defaults_apply_where_the_host_sets_nothing(settings):
    settings.PERSONALIZATION = {}

    assert psettings.MAX_BATCH_SIZE == 500
    assert psettings.VISITOR_COOKIE_NAME == "pvid"
    assert psettings.IP_STORAGE == "truncate"
    assert psettings.CONSENT_REQUIRED is False
    assert psettings.HONOR_GPC is True and psettings.HONOR_DNT is False
    assert psettings.COLLECTOR_BACKEND is DatabaseCollector  # dotted paths are imported
    assert set(psettings.event_types) >= {"view", "click", "add_to_cart", "purchase", "search"}
    assert psettings.event_types["search"]["item"] is False
    assert psettings.event_weights["purchase"] == 8.0


def test_host_values_override_the_defaults(settings):
    settings.PERSONALIZATION = {"MAX_BATCH_SIZE": 50, "ITEM_TYPES": ["product", "article"]}

    assert psettings.MAX_BATCH_SIZE == 50
    assert psettings.ITEM_TYPES == ["product", "article"]
    assert psettings.MAX_CONTEXT_BYTES == DEFAULTS["MAX_CONTEXT_BYTES"]


def test_unknown_key_raises_naming_the_key(settings):
    settings.PERSONALIZATION = {"MAX_BATCH_SIZES": 10}

    with pytest.raises(ImproperlyConfigured, match=r"'MAX_BATCH_SIZES' \(did you mean 'MAX_BATCH_SIZE'\?\)"):
        psettings.MAX_BATCH_SIZE  # noqa: B018


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NOT_A_SETTING"):
        psettings.NOT_A_SETTING  # noqa: B018


def test_unimportable_path_raises_improperly_configured(settings):
    settings.PERSONALIZATION = {"COLLECTOR_BACKEND": "personalization.missing.Collector"}

    with pytest.raises(ImproperlyConfigured, match="COLLECTOR_BACKEND"):
        psettings.COLLECTOR_BACKEND  # noqa: B018


def test_overriding_the_setting_reloads_values_and_the_collector():
    assert isinstance(get_collector(), DatabaseCollector)
    assert psettings.RATE_LIMIT_EVENTS == 300

    with override_settings(PERSONALIZATION={"COLLECTOR_BACKEND": "personalization.tracking.collectors.MemoryCollector",
                                            "RATE_LIMIT_EVENTS": 5}):
        assert psettings.RATE_LIMIT_EVENTS == 5
        assert isinstance(get_collector(), MemoryCollector)

    assert psettings.RATE_LIMIT_EVENTS == 300
    assert isinstance(get_collector(), DatabaseCollector)


def test_extra_event_types_add_to_the_defaults(settings):
    settings.PERSONALIZATION = {"EXTRA_EVENT_TYPES": {"share": {"weight": 3, "item": True},
                                                      "newsletter_signup": {"item": False}}}

    assert psettings.event_types["share"] == {"weight": 3.0, "item": True, "value_weighted": False}
    assert psettings.event_types["newsletter_signup"] == {"weight": 0.0, "item": False, "value_weighted": False}
    assert "view" in psettings.event_types
    assert psettings.value_weighted_events == ["rate"]  # ratings weigh by their value unless a type says otherwise


@pytest.mark.django_db
def test_extra_event_types_are_accepted_by_the_api(browser, settings):
    from personalization.models import Event

    settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                "EXTRA_EVENT_TYPES": {"newsletter_signup": {"weight": 0.5, "item": False}}}

    accepted = browser.send({"event": "newsletter_signup", "context": {"x_list": "weekly"}})
    settings.PERSONALIZATION = {k: v for k, v in settings.PERSONALIZATION.items() if k != "EXTRA_EVENT_TYPES"}
    refused = browser.send({"event": "newsletter_signup"})

    assert accepted.status_code == 202
    assert refused.status_code == 400
    assert "Unknown event type 'newsletter_signup'" in refused.json()["event"][0]
    assert Event.objects.get().event_type == "newsletter_signup"


def test_event_types_replaces_the_whole_table(settings):
    settings.PERSONALIZATION = {"EVENT_TYPES": {"play": {"weight": 1.0}}}

    assert set(psettings.event_types) == {"play"}
