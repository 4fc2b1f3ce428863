"""Serving during an A/B test: arm B gets version B's lists, through the cache and the precompute; the log
carries the arm; a version B that cannot load falls back to A without an error."""

from __future__ import annotations

from django.core.cache import caches

from personalization import serving
from personalization.models import Experiment, ModelVersion, RecommendationLog
from personalization.serving import live
from personalization.serving.live import version_system, version_token
from tests.caches import clear_cache
from tests.monitoring.shop import subjects_in_arms
from tests.serving.shop import counting, precomputed_and_online, uncount, warm_subjects


def start(a: ModelVersion, b: ModelVersion, **fields) -> Experiment:
    return Experiment.objects.create(name="knn vs live", version_a=a, version_b=b, **{"share_b": 0.5, **fields})


def test_each_arm_is_served_by_its_version_and_logged(versions, django_capture_on_commit_callbacks):
    a, b = versions
    experiment = start(a, b)
    who = subjects_in_arms(experiment)
    clear_cache(caches["default"])
    with django_capture_on_commit_callbacks(execute=True):
        in_b = serving.recommend(who["B"][0], 6, slot="home")
        in_a = serving.recommend(who["A"][0], 6, slot="home")
    assert (in_b.model_version, in_b.arm, in_b.experiment) == (b.pk, "B", experiment.pk)
    assert (in_a.model_version, in_a.arm, in_a.experiment) == (a.pk, "A", experiment.pk)
    logged = RecommendationLog.objects.get(pk=in_b.recommendation_id)
    assert (logged.model_version_id, logged.arm, logged.experiment_id) == (b.pk, "B", experiment.pk)
    assert RecommendationLog.objects.get(pk=in_a.recommendation_id).arm == "A"
    # version B's own system made the list: B has item-kNN only, so every item is item-kNN's or a repeat of the
    # visitor's history (A's other families never appear)
    assert all(r.reason.startswith(("itemknn", "history")) for r in in_b.items), [r.reason for r in in_b.items]

    _, system_b = version_system(version_token(b))
    counts = counting(system_b)
    try:
        again = serving.recommend(who["B"][0], 6, slot="home")
    finally:
        uncount(system_b)
    assert again.cached and counts["recommend"] == 0
    assert (again.keys(), again.model_version, again.arm) == (in_b.keys(), b.pk, "B")


def test_a_slot_filter_leaves_other_slots_to_the_live_version(versions):
    a, b = versions
    experiment = start(a, b, slot="home")
    subject = subjects_in_arms(experiment)["B"][0]
    assert serving.recommend(subject, 4, slot="home").model_version == b.pk
    other = serving.recommend(subject, 4, slot="default")
    assert (other.model_version, other.arm, other.experiment) == (a.pk, "", None)


def test_ending_the_experiment_serves_everyone_the_live_version(versions):
    a, b = versions
    experiment = start(a, b)
    subject = subjects_in_arms(experiment)["B"][0]
    assert serving.recommend(subject, 4).model_version == b.pk
    experiment.status = Experiment.Status.ENDED
    experiment.save()  # the save signal makes this process re-read the running experiments
    result = serving.recommend(subject, 4)
    assert (result.model_version, result.arm) == (a.pk, "")


def test_the_precompute_fills_each_arm_with_its_own_versions_list(versions, settings):
    from personalization.tasks import precompute_recommendations

    a, b = versions
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SLOTS": {"default": {}, "home": {"n": 4}}}
    experiment = start(a, b)
    who = subjects_in_arms(experiment)
    clear_cache(caches["default"])
    precompute_recommendations.delay(days=30, slots=["home"]).get()
    _, system_a = serving.live_system()
    _, system_b = version_system(version_token(b))
    counts_a, counts_b = counting(system_a), counting(system_b)
    try:
        in_b = serving.recommend(who["B"][0], slot="home")
        in_a = serving.recommend(who["A"][0], slot="home")
    finally:
        uncount(system_a)
        uncount(system_b)
    assert in_b.cached and in_a.cached and counts_a["recommend"] == counts_b["recommend"] == 0
    assert (in_b.model_version, in_a.model_version) == (b.pk, a.pk)
    # online, every visitor of either arm gets the list precomputed for them (their purchases and cart excluded)
    precomputed, online = precomputed_and_online(warm_subjects(), ["home"])
    assert len(precomputed) > 20 and precomputed == online


def test_a_version_b_that_cannot_load_falls_back_to_a(versions, caplog):
    a, b = versions
    ModelVersion.objects.filter(pk=b.pk).update(artifact_sha256="0" * 64)  # the stored file no longer matches
    live._extra.systems.clear()
    experiment = start(a, b)
    subject = subjects_in_arms(experiment)["B"][0]
    clear_cache(caches["default"])
    result = serving.recommend(subject, 4)
    assert result.items and (result.model_version, result.arm, result.fallback) == (a.pk, "B", "")
    assert "cannot be loaded" in caplog.text
    assert ModelVersion.objects.get(pk=b.pk).load_error.startswith("ArtifactIntegrityError")
