"""System checks: configuration mistakes are reported at start-up with a hint."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

MIDDLEWARE = "personalization.middleware.TrackingMiddleware"


def personalization_messages():
    return {m.id: m for m in run_checks() if m.id and m.id.startswith("personalization.")}


def override(settings, **values):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, **values}


def test_the_demo_configuration_passes():
    assert personalization_messages() == {}


def test_check_command_passes_on_the_demo_configuration(capsys):
    call_command("check")

    assert "personalization" not in capsys.readouterr().err


def test_unknown_key_is_e001_with_a_did_you_mean_hint(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "COLLECTER_BACKEND": "x"}

    messages = personalization_messages()

    assert set(messages) == {"personalization.E001"}
    assert "'COLLECTER_BACKEND'" in messages["personalization.E001"].msg
    assert "did you mean 'COLLECTOR_BACKEND'?" in messages["personalization.E001"].msg


def test_check_command_fails_on_an_unknown_key(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "MAX_BATCH": 10}

    with pytest.raises(SystemCheckError, match=r"personalization\.E001.*'MAX_BATCH'.*'MAX_BATCH_SIZE'"):
        call_command("check")


def test_non_dict_setting_is_e001(settings):
    settings.PERSONALIZATION = ["COLLECTOR_BACKEND"]

    assert "personalization.E001" in personalization_messages()


@pytest.mark.parametrize("name", ["COLLECTOR_BACKEND", "CATALOG_ADAPTER", "CONSENT_CALLBACK"])
def test_unimportable_dotted_path_is_e002(settings, name):
    override(settings, **{name: "personalization.tracking.nowhere.Thing"})

    messages = personalization_messages()

    assert "personalization.E002" in messages
    assert name in messages["personalization.E002"].msg
    assert "personalization.tracking.nowhere.Thing" in messages["personalization.E002"].msg


@pytest.mark.parametrize("catalog", [
    {"product": {"model": "shop.Nope"}},
    {"product": {"model": "not a model"}},
    {"product": {"url_names": ["shop:product"]}},
    {"product": {"model": "shop.Product", "colour": "red"}},
])
def test_bad_catalog_is_e003(settings, catalog):
    override(settings, CATALOG=catalog)

    messages = personalization_messages()

    assert "personalization.E003" in messages
    assert "CATALOG" in messages["personalization.E003"].msg


def test_empty_catalog_is_w002(settings):
    override(settings, CATALOG={})

    assert set(personalization_messages()) == {"personalization.W002"}


def test_missing_middleware_is_w001(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE]

    messages = personalization_messages()

    assert set(messages) == {"personalization.W001"}
    assert MIDDLEWARE in messages["personalization.W001"].hint


def test_middleware_under_its_long_path_is_accepted(settings):
    settings.MIDDLEWARE = [
        "personalization.tracking.middleware.TrackingMiddleware" if m == MIDDLEWARE else m for m in settings.MIDDLEWARE
    ]

    assert "personalization.W001" not in personalization_messages()


def test_dummy_cache_is_w003(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}

    assert set(personalization_messages()) == {"personalization.W003"}


def test_missing_cache_alias_is_e004(settings):
    override(settings, CACHE_ALIAS="tracking")

    assert "personalization.E004" in personalization_messages()


def test_bad_event_type_name_is_e005(settings):
    override(settings, EXTRA_EVENT_TYPES={"add to wishlist": {"weight": 1.0}})

    messages = personalization_messages()

    assert "personalization.E005" in messages
    assert "add to wishlist" in messages["personalization.E005"].msg


def test_bad_ip_storage_is_e007(settings):
    override(settings, IP_STORAGE="hash")

    assert "personalization.E007" in personalization_messages()


@pytest.mark.parametrize("cap", [0, -5, 2.5, "10000", True])
def test_bad_eval_max_users_is_e008(settings, cap):
    override(settings, TRAINING={"eval_max_users": cap})

    messages = personalization_messages()

    assert set(messages) == {"personalization.E008"}
    assert "eval_max_users" in messages["personalization.E008"].msg


@pytest.mark.parametrize("cap", [None, 1, 10_000])
def test_eval_max_users_may_be_none_or_positive(settings, cap):
    override(settings, TRAINING={"eval_max_users": cap})

    assert "personalization.E008" not in personalization_messages()


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2", True])
def test_bad_extract_connections_is_e009(settings, workers):
    override(settings, TRAINING={"extract_connections": workers})

    messages = personalization_messages()

    assert set(messages) == {"personalization.E009"}
    assert "extract_connections" in messages["personalization.E009"].msg


def test_one_extract_connection_is_fine(settings):
    override(settings, TRAINING={"extract_connections": 1})

    assert "personalization.E009" not in personalization_messages()


@pytest.mark.parametrize("name", ["NEAR_CACHE_SECONDS", "NEAR_CACHE_MAX_BYTES"])
@pytest.mark.parametrize("value", [0, -5, "60", True, None])
def test_bad_near_cache_bound_is_e010(settings, name, value):
    override(settings, **{name: value})

    messages = personalization_messages()

    assert set(messages) == {"personalization.E010"}
    assert name in messages["personalization.E010"].msg
    assert "NEAR_CACHE to False" in messages["personalization.E010"].hint


def test_fractional_near_cache_seconds_are_fine(settings):
    override(settings, NEAR_CACHE_SECONDS=0.5, NEAR_CACHE_MAX_BYTES=1 << 20)

    assert "personalization.E010" not in personalization_messages()
