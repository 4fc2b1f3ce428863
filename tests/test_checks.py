"""System checks: configuration mistakes are reported at start-up with a hint."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

MIDDLEWARE = "personalization.middleware.TrackingMiddleware"


def personalization_messages(*, deploy=False):
    return {m.id: m for m in run_checks(include_deployment_checks=deploy)
            if m.id and m.id.startswith("personalization.")}


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


# -- the cache's reach ---------------------------------------------------------------------------------------------

def test_local_memory_cache_is_i003_on_deploy_explaining_its_per_process_scope(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

    assert personalization_messages() == {}  # not on every command: fine for one process
    messages = personalization_messages(deploy=True)

    assert set(messages) == {"personalization.I003"}
    assert "per process" in messages["personalization.I003"].msg
    assert "one server process" in messages["personalization.I003"].hint
    assert "RedisCache" in messages["personalization.I003"].hint


def test_a_shared_cache_gets_no_cache_message(settings, tmp_path):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                                   "LOCATION": str(tmp_path)}}

    assert personalization_messages(deploy=True) == {}


@pytest.mark.parametrize(("backend", "shared"), [
    ("django.core.cache.backends.locmem.LocMemCache", False),
    ("django.core.cache.backends.dummy.DummyCache", False),
    ("django.core.cache.backends.filebased.FileBasedCache", True),
    ("django.core.cache.backends.db.DatabaseCache", True),
])
def test_is_shared_tells_caches_every_process_reads_from_per_process_ones(settings, tmp_path, backend, shared):
    from personalization import shared_cache

    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": str(tmp_path) if "file" in backend else "t"}}

    assert shared_cache.is_shared() is shared


# -- the catalog's field paths and URL names -------------------------------------------------------------------------

def catalog(**entry):
    return {"product": {"model": "shop.Product", "url_names": ["shop:product"], "url_kwarg": "pk", **entry}}


def test_the_readme_brand_path_on_a_model_without_brand_is_e012(settings):
    override(settings, CATALOG={"category": {"model": "shop.Category", "fields": {"title": "name",
                                                                                   "brand": "brand__name"}}})

    messages = personalization_messages()

    assert set(messages) == {"personalization.E012"}
    msg = messages["personalization.E012"].msg
    assert "['category']" in msg and "['brand']" in msg and "'brand__name'" in msg  # type, key, path
    assert "shop.Category has no field 'brand'" in msg and "name" in msg and "slug" in msg  # the model's fields


@pytest.mark.parametrize(("fields", "wrong", "close"), [
    ({"title": "nmae"}, "'nmae'", "did you mean 'name'?"),
    ({"brand": "brand__nmae"}, "shop.Brand has no field 'nmae'", "did you mean 'name'?"),  # across a relation
    ({"text": ["name", "descripton"]}, "'descripton'", "did you mean 'description'?"),  # one path of a list
    ({"url": "get_absolute_ur"}, "no attribute 'get_absolute_ur'", "did you mean 'get_absolute_url'?"),
])
def test_an_unknown_field_path_is_e012_with_a_close_match(settings, fields, wrong, close):
    override(settings, CATALOG=catalog(fields=fields))

    messages = personalization_messages()

    assert set(messages) == {"personalization.E012"}
    assert wrong in messages["personalization.E012"].msg and close in messages["personalization.E012"].msg


def test_a_method_where_serving_reads_a_column_is_e012(settings):
    """title/price/category... are read with values(): a method works only for url and image."""
    override(settings, CATALOG=catalog(fields={"title": "get_absolute_url", "url": "get_absolute_url",
                                               "image": "image_url"}))

    messages = personalization_messages()

    assert set(messages) == {"personalization.E012"}
    assert "['title']" in messages["personalization.E012"].msg


def test_valid_paths_of_every_kind_pass(settings):
    override(settings, CATALOG=catalog(fields={
        "title": "name", "category": "category__slug", "brand": "brand_id", "price": "price",
        "text": ["name", "category__name", "brand__name"], "available": "in_stock",
        "url": "get_absolute_url", "image": "category__name",
    }))

    assert personalization_messages() == {}


def test_a_field_name_nothing_reads_is_w008(settings):
    override(settings, CATALOG=catalog(fields={"title": "name", "colour": "name"}))

    messages = personalization_messages()

    assert set(messages) == {"personalization.W008"}
    assert "'colour'" in messages["personalization.W008"].msg


def test_an_unknown_url_name_is_e013_with_the_close_names(settings):
    override(settings, CATALOG=catalog(url_names=["shop:prodcut"]))

    messages = personalization_messages()

    assert set(messages) == {"personalization.E013"}
    assert "'shop:prodcut'" in messages["personalization.E013"].msg
    assert "'shop:product'" in messages["personalization.E013"].hint


def test_a_url_name_without_its_namespace_is_e013(settings):
    override(settings, CATALOG=catalog(url_names=["product"]))

    messages = personalization_messages()

    assert set(messages) == {"personalization.E013"}
    assert "'shop:product'" in messages["personalization.E013"].hint


def test_a_url_without_the_url_kwarg_is_w005(settings):
    override(settings, CATALOG=catalog(url_kwarg="slug"))

    messages = personalization_messages()

    assert set(messages) == {"personalization.W005"}
    assert "'slug'" in messages["personalization.W005"].msg and "pk" in messages["personalization.W005"].hint


def test_url_names_and_kwargs_that_match_pass(settings):
    override(settings, CATALOG=catalog(url_names=["shop:product", "shop:cart_add"]))

    assert personalization_messages() == {}


# -- the middleware's place ------------------------------------------------------------------------------------------

def test_tracking_before_authentication_is_w006(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE]
    settings.MIDDLEWARE.insert(0, MIDDLEWARE)

    messages = personalization_messages()

    assert set(messages) == {"personalization.W006"}
    assert "AuthenticationMiddleware" in messages["personalization.W006"].hint


# -- the templates' slots --------------------------------------------------------------------------------------------

@pytest.fixture
def template_dir(settings, tmp_path):
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]  # the demo's own templates aside
    return tmp_path


def test_a_template_slot_not_in_slots_is_w007_naming_the_template(settings, template_dir):
    (template_dir / "side.html").write_text(
        '{% load personalization %}\n<aside>{% recommended_items slot="sidebar" limit=3 %}{{ items }}'
        "{% endrecommended_items %}</aside>\n{% similar_items product as others %}\n"
        "{% recommended_items slot=name as chosen %}{% recommended_items slot='home' as home %}")
    override(settings, SLOTS={"default": {}, "home": {}})

    messages = [m for m in run_checks() if m.id == "personalization.W007"]

    assert len(messages) == 2  # "sidebar" and the similar_items tag's default "similar"; the variable is skipped
    sidebar, similar = messages
    assert "'sidebar'" in sidebar.msg and f"{template_dir / 'side.html'}:2" in sidebar.msg
    assert '"sidebar": {}' in sidebar.hint
    assert "'similar'" in similar.msg and f"{template_dir / 'side.html'}:3" in similar.msg


def test_template_slots_that_are_configured_pass(settings, template_dir):
    (template_dir / "side.html").write_text('{% recommended_items slot="home" as a %}{% recommended_items as b %}')
    override(settings, SLOTS={"default": {}, "home": {}})

    assert "personalization.W007" not in personalization_messages()
