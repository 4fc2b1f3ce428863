"""An A/B test on PostgreSQL and the Redis cache: an arm-B visitor gets version B's list online, from the cache and
from the precompute, and the log row (written with PostgreSQL's batch insert) carries the arm."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.db import connection

from personalization import serving
from personalization.models import Experiment, RecommendationLog
from personalization.serving import arms, live
from personalization.serving.live import version_system, version_token
from tests.caches import clear_cache
from tests.monitoring.shop import challenger_shop_fixture, subjects_in_arms, versions_fixture  # noqa: F401
from tests.serving.shop import counting, live_shop_fixture, shop_fixture, uncount  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _production_services():
    backend = caches["default"].__class__.__name__
    if connection.vendor != "postgresql" or backend != "RedisCache":
        pytest.fail(f"This test needs PostgreSQL (DATABASE_URL) and a Redis cache (CACHE_URL), not "
                    f"{connection.vendor} and {backend}.")
    arms.forget_running()
    live._extra.systems.clear()
    yield
    arms.forget_running()
    live._extra.systems.clear()


def test_arm_b_gets_version_bs_list_through_the_cache_and_the_precompute(versions, settings,
                                                                          django_capture_on_commit_callbacks):
    from personalization.tasks import precompute_recommendations

    a, b = versions
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SLOTS": {"default": {}, "home": {"n": 4}}}
    experiment = Experiment.objects.create(name="knn vs live", version_a=a, version_b=b, share_b=0.5)
    who = subjects_in_arms(experiment)
    cache = caches["default"]
    clear_cache(cache)
    with django_capture_on_commit_callbacks(execute=True):
        online = serving.recommend(who["B"][0], slot="home")
    assert (online.model_version, online.arm, online.cached) == (b.pk, "B", False)
    row = RecommendationLog.objects.get(pk=online.recommendation_id)
    assert (row.model_version_id, row.experiment_id, row.arm) == (b.pk, experiment.pk, "B")

    clear_cache(cache)
    precompute_recommendations.delay(days=30, slots=["home"]).get()
    _, system_a = serving.live_system()
    _, system_b = version_system(version_token(b))
    counts_a, counts_b = counting(system_a), counting(system_b)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            in_b = serving.recommend(who["B"][0], slot="home")
            in_a = serving.recommend(who["A"][0], slot="home")
    finally:
        uncount(system_a)
        uncount(system_b)
    assert in_b.cached and in_a.cached and counts_a["recommend"] == counts_b["recommend"] == 0
    assert (in_b.model_version, in_b.keys()) == (b.pk, online.keys())  # the precomputed B list, not A's
    assert in_a.model_version == a.pk
    logged = dict(RecommendationLog.objects.filter(pk__in=[in_a.recommendation_id, in_b.recommendation_id])
                  .values_list("arm", "model_version_id"))
    assert logged == {"A": a.pk, "B": b.pk}
