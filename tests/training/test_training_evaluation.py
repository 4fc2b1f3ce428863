"""train() evaluates a capped, seeded sample of test-window users, the same one for the new and the live version."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.db.models import Max

from personalization import training
from personalization.models import Event, ModelVersion
from personalization.training import train

FAST = ["popularity", "itemknn"]


def test_new_and_live_versions_are_scored_on_the_same_capped_sample(shop_history, settings, monkeypatch):
    latest = Event.objects.aggregate(m=Max("occurred_at"))["m"]
    live = train(ModelVersion.objects.create(), until=latest - timedelta(days=6), models=FAST)
    assert live.status == ModelVersion.Status.LIVE
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"eval_max_users": 12},
                                "PROMOTION_MARGIN": 1.0}
    samples = []
    original = training.evaluate_system

    def spy(system, test_events, **kwargs):
        samples.append(kwargs.get("users"))
        return original(system, test_events, **kwargs)

    monkeypatch.setattr(training, "evaluate_system", spy)
    version = train(ModelVersion.objects.create(), models=FAST)

    assert live.data_end <= version.cutoff  # the live version never saw the new test window
    assert len(samples) == 2 and np.array_equal(samples[0], samples[1]) and len(samples[0]) == 12
    metrics = version.test_metrics
    assert metrics["live_version"] == live.pk
    for name in ("system", *FAST):
        assert metrics[name]["n_users"] == 12 < metrics[name]["n_users_total"]
    assert 0 < metrics["live"]["n_users"] <= 12
    assert metrics["cold"]["sampled_users"] == 12


def test_without_a_cap_every_eligible_user_is_scored(shop_history, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"eval_max_users": None}}
    version = train(ModelVersion.objects.create(), models=FAST)
    system = version.test_metrics["system"]
    assert system["n_users"] == system["n_users_total"] == version.test_metrics["cold"]["warm_users"] > 12


def test_the_nightly_case_is_paired_on_a_window_neither_version_was_fitted_on(shop_history, settings):
    """The live version was refitted on everything up to yesterday, so it saw most of today's test window: its
    configuration is refitted on the candidate's training events and scored on the same users of the same window."""
    latest = Event.objects.aggregate(m=Max("occurred_at"))["m"]
    live = train(ModelVersion.objects.create(), until=latest - timedelta(days=1), models=FAST)
    assert live.status == ModelVersion.Status.LIVE and live.data_end > latest - timedelta(days=14)
    candidate = train(ModelVersion.objects.create(), models=["popularity"])
    assert candidate.cutoff < live.data_end  # the live version saw part of the candidate's test window
    metrics = candidate.test_metrics
    assert metrics["live_version"] == live.pk
    assert metrics["live_paired"] == "live configuration refitted on the same training events"
    assert metrics["live"]["n_users"] == metrics["system"]["n_users"] > 0
    ours, theirs = metrics["system"]["ndcg@10"], metrics["live"]["ndcg@10"]
    assert (candidate.status == ModelVersion.Status.LIVE) == (ours > theirs)  # the gate used the paired score
    current = ModelVersion.objects.get(status=ModelVersion.Status.LIVE)
    nightly = train(ModelVersion.objects.create(), models=list(current.params["models"]))
    assert nightly.test_metrics["live_version"] == current.pk
    assert nightly.test_metrics["live_paired"] == "same configuration"  # the live procedure on newer data
    assert nightly.status == ModelVersion.Status.LIVE
