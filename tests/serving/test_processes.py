"""What one process serves after another process changed things: a model trained elsewhere, a shop's first events.

The embedded configuration's local-memory cache is per process, as in a site run with ``runserver`` and trained
with ``manage.py personalization_train``: a promotion made "in another process" is simulated by changing the live
version in the database without publishing it in this one (``registry.make_live`` outside
``django_capture_on_commit_callbacks``: its ``model_promoted`` never runs here).
"""

from __future__ import annotations

import logging
import time

import pytest
from django.template import Context, Template

from personalization import registry, serving
from personalization.serving import live
from tests.serving.shop import active_visitor, copy_of


@pytest.fixture
def per_process_cache(settings):
    """A local-memory cache, whatever the suite's configuration (on Redis, every process reads one cache)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "per-process"}}


def test_a_model_promoted_by_another_process_is_served_within_seconds(shop, per_process_cache, monkeypatch):
    monkeypatch.setattr(live, "LIVE_MEMO_SECONDS", 0.2)
    visitor = active_visitor()
    before = serving.recommend(visitor, 5)
    assert before.model_version == shop.pk and serving.recommend(visitor, 5).cached
    second = copy_of(shop)

    registry.make_live(second, previous=shop)  # "another process": nothing is published to this one
    time.sleep(0.3)

    after = serving.recommend(visitor, 5)
    # the list cached here under the old live version is not served: the version is part of the entry
    assert after.model_version == second.pk and not after.cached
    assert serving.live_system()[0] == second.pk


def test_between_database_reads_a_cache_hit_makes_no_query(shop, per_process_cache, django_assert_num_queries):
    visitor = active_visitor()
    serving.recommend(visitor, 5)

    with django_assert_num_queries(0):
        assert serving.recommend(visitor, 5).cached


def test_this_processs_own_promotion_is_served_at_once(shop, django_capture_on_commit_callbacks):
    visitor = active_visitor()
    assert serving.recommend(visitor, 5).model_version == shop.pk
    second = copy_of(shop)

    with django_capture_on_commit_callbacks(execute=True):
        registry.make_live(second, previous=shop)

    assert serving.recommend(visitor, 5).model_version == second.pk  # no LIVE_MEMO_SECONDS wait


def test_on_a_shared_cache_the_published_version_is_read_from_the_cache(shop, settings, tmp_path,
                                                                       django_assert_num_queries):
    """File-based caches are shared by the processes of a machine: a hit reads the live version there, as on Redis."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                                   "LOCATION": str(tmp_path / "cache")}}
    serving.publish_live_version()
    visitor = active_visitor()
    assert serving.recommend(visitor, 5).model_version == shop.pk
    second = copy_of(shop)
    registry.make_live(second, previous=shop)
    serving.publish_live_version()  # what the promoting process does on commit, into the cache every process reads

    assert serving.recommend(visitor, 5).model_version == second.pk
    with django_assert_num_queries(0):
        assert serving.recommend(visitor, 5).cached


# -- truthful labels ----------------------------------------------------------------------------------------------

def test_a_brand_new_visitor_with_a_live_model_gets_popular_items_labelled_so(shop):
    result = serving.recommend("v:" + "0" * 32, 4)

    assert len(result.keys()) == 4 and all(r.reason.startswith("popularity") for r in result.items)
    assert result.fallback == "popularity" and result.model_version == shop.pk  # the live model's popularity
    again = serving.recommend("v:" + "0" * 32, 4)
    assert again.cached and again.fallback == "popularity" and again.model_version == shop.pk


def test_a_visitor_with_a_history_gets_a_personal_list(shop):
    result = serving.recommend(active_visitor(), 4)

    assert result.fallback == "" and result.model_version == shop.pk


def test_a_template_labels_a_newcomers_list_popular(shop, rf):
    template = Template('{% load personalization %}{% recommended_items limit=3 as items %}{{ items|length }} '
                        '{% if items.fallback %}Popular{% else %}Picked for you{% endif %}')

    assert template.render(Context({"request": rf.get("/")})) == "3 Popular"


# -- slots the host never configured -------------------------------------------------------------------------------

def test_an_unknown_slot_is_served_with_the_default_rules_and_logged_once(shop, caplog):
    visitor = active_visitor()
    with caplog.at_level(logging.WARNING, logger="personalization.serving"):
        results = [serving.recommend(visitor, 4, slot="sidebar") for _ in range(3)]

    assert all(len(r.keys()) == 4 and r.slot == "sidebar" for r in results)
    unknown = [r for r in caplog.records if "Unknown slot 'sidebar'" in r.getMessage()]
    assert len(unknown) == 1
