"""Training service and registry: train, validate on the later window, store, promote, roll back."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from personalization import registry
from personalization.artifact_storage import artifact_storage
from personalization.extraction import extract_events
from personalization.models import ModelVersion
from personalization.training import TrainingCancelled, TrainingError, train


def test_first_trained_version_goes_live_with_metrics_and_artifact(trained):
    version = trained
    assert version.status == ModelVersion.Status.LIVE
    assert version.progress == 100.0 and version.stage == "done"
    assert artifact_storage().exists(version.artifact)
    system = version.test_metrics["system"]
    assert 0.0 < system["ndcg@10"] <= 1.0 and 0.0 < system["recall@20"] <= 1.0
    # every candidate model is measured on the same window, beside the full system
    assert {"als", "itemknn", "popularity"} <= set(version.test_metrics)
    assert version.data_quality["rows_in"] >= version.data_quality["rows_out"] > 0
    assert version.params["models"] and version.params["event_weights"]["purchase"] == 8.0
    assert version.data_start < version.cutoff < version.data_end


def test_the_test_window_is_later_than_everything_the_model_was_validated_on(trained):
    # The test window is the last TRAINING["test_days"], holding at most 20% of the events, from the cutoff on.
    from personalization.models import Event

    window = trained.data_end - trained.cutoff
    items = Event.objects.exclude(item_key="")
    held_out = items.filter(occurred_at__gte=trained.cutoff, occurred_at__lte=trained.data_end).count()
    everything = items.filter(occurred_at__lte=trained.data_end).count()
    assert 0 < held_out <= 0.25 * everything  # 20% of the cleaned events; the raw rows include what cleaning drops
    assert timedelta(0) < window <= timedelta(days=14)


def test_extract_gives_one_history_per_user_across_devices(shop_history):
    from personalization.models import Event

    frame = extract_events()
    linked = Event.objects.filter(user__isnull=False).exclude(item_key="").count()
    assert (frame["user"].str.startswith("u:")).sum() == linked
    assert (frame["user"].str.startswith("v:")).sum() == len(frame) - linked
    assert str(frame["timestamp"].dtype).startswith("datetime64") and frame["timestamp"].dt.tz is not None


def test_a_version_that_does_not_beat_the_live_one_stays_ready(trained, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "PROMOTION_MARGIN": 1.0}  # impossible to beat
    second = train(ModelVersion.objects.create())
    assert second.status == ModelVersion.Status.READY
    assert registry.live_version().pk == trained.pk
    # the same configuration on newer data: its paired score is its own, which cannot win by a margin of 1.0
    assert second.test_metrics["live_paired"] == "same configuration"
    with pytest.raises(registry.PromotionRefused, match="asks for a win it cannot show"):
        registry.promote(second)


def test_staff_can_force_promotion_and_roll_back(trained, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "PROMOTION_MARGIN": 1.0}
    second = train(ModelVersion.objects.create())

    registry.promote(second, force=True)
    second.refresh_from_db()
    trained.refresh_from_db()
    assert second.status == ModelVersion.Status.LIVE and second.previous_id == trained.pk
    assert trained.status == ModelVersion.Status.RETIRED
    assert ModelVersion.objects.filter(status=ModelVersion.Status.LIVE).count() == 1

    back = registry.rollback()
    assert back.pk == trained.pk
    assert registry.live_version().pk == trained.pk
    second.refresh_from_db()
    assert second.status == ModelVersion.Status.RETIRED
    with pytest.raises(registry.PromotionRefused, match="no previous version"):
        registry.rollback()


def test_training_twice_is_idempotent(trained):
    artifact = trained.artifact
    again = train(trained)
    assert again.pk == trained.pk and again.artifact == artifact and again.status == ModelVersion.Status.LIVE
    assert ModelVersion.objects.count() == 1


def test_too_few_events_fail_with_a_clear_message(db, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")  # artifacts beside it, in this test's folder
    version = ModelVersion.objects.create()
    with pytest.raises(TrainingError, match="usable events"):
        train(version)
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.FAILED
    assert "personalization_import" in version.error
    assert registry.live_version() is None


def test_cancelled_training_stops_and_leaves_no_live_model(shop_history):
    version = ModelVersion.objects.create(cancel_requested=True)
    with pytest.raises(TrainingCancelled):
        train(version)
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.CANCELLED
    assert not version.artifact
    assert registry.live_version() is None


def test_evaluate_model_task_scores_a_version_on_later_events(trained):
    from datetime import timedelta

    from personalization.models import Event
    from personalization.tasks import evaluate_model

    assert evaluate_model(trained.pk)["error"].startswith("No events since")  # nothing after its data yet
    # Fresh traffic after the training data: known visitors buy items they never touched before.
    later = trained.data_end + timedelta(hours=1)
    items = list(Event.objects.order_by().values_list("item_key", flat=True).distinct()[:30])
    visitors = list(Event.objects.order_by().values_list("visitor_id", flat=True).distinct()[:20])
    fresh = []
    for i, visitor in enumerate(visitors):
        history = Event.objects.filter(visitor_id=visitor)
        seen = set(history.values_list("item_key", flat=True))
        item = next(k for k in items[i:] + items[:i] if k not in seen)
        fresh.append(Event(event_type="purchase", item_key=item, visitor_id=visitor, user_id=history[0].user_id,
                           occurred_at=later, received_at=later, source="import"))
    Event.objects.bulk_create(fresh)

    recheck = evaluate_model(trained.pk)
    assert recheck["events"] == len(fresh)
    assert 0.0 <= recheck["system"]["ndcg@10"] <= 1.0 and recheck["system"]["n_users"] > 0
    trained.refresh_from_db()
    assert trained.test_metrics["recheck"]["events"] == len(fresh)


def test_tuning_searches_on_the_validation_window_and_records_trials(shop_history):
    version = train(ModelVersion.objects.create(), models=["popularity", "als"], tune=True)
    tuning = version.tuning
    assert tuning["method"] == "bayesian" and tuning["metric"] == "ndcg@10"
    assert 1 <= len(tuning["trials"]) <= 8
    best = tuning["best_params"]["models"]["als"]
    assert {"factors", "regularization", "iterations"} <= set(best)
    assert version.params["models"]["als"]["factors"] == best["factors"]  # the tuned parameters were used
    assert tuning["best_score"] == max(t["score"] for t in tuning["trials"])


def test_tuning_without_the_tuning_extra_searches_at_random_and_says_why(shop_history, monkeypatch):
    import sys

    from personalization.evaluation import tuning as tuning_module

    monkeypatch.setitem(sys.modules, "optuna", None)  # as if `pip install django-personalization` had no [tuning]
    monkeypatch.setattr(tuning_module, "bayesian_available", lambda: False)
    version = train(ModelVersion.objects.create(), models=["popularity", "als"], tune=True)
    assert version.tuning["method"] == "random" and 1 <= len(version.tuning["trials"]) <= 8
    assert "django-personalization[tuning]" in version.tuning["note"]
    with pytest.raises(ImportError, match=r"django-personalization\[tuning\]"):
        tuning_module.tune(lambda **p: None, {"a": [1]}, None, None, method="bayesian")


def test_an_imported_history_older_than_the_window_still_trains(shop_history):
    from datetime import timedelta

    from django.db.models import F

    from personalization.models import Event

    Event.objects.update(occurred_at=F("occurred_at") - timedelta(days=800))  # e.g. a 2011 dataset imported today
    version = train(ModelVersion.objects.create(), models=["popularity", "itemknn"])
    assert version.status == ModelVersion.Status.LIVE
    assert version.data_end < version.created_at - timedelta(days=790)


def test_training_chooses_its_configuration_before_the_test_window_and_applies_it(shop_history, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"choose_min_users": 5}}
    trained = train(ModelVersion.objects.create(), models=["popularity", "itemknn", "ease"])
    choice = trained.tuning["configuration"]
    assert pd.Timestamp(choice["window"]["start"]) < pd.Timestamp(trained.cutoff)  # validation never sees the test
    assert choice["chosen"] in [c["name"] for c in choice["configurations"]]
    for key, value in choice["overrides"].items():  # the chosen configuration is the one trained and served
        assert trained.params[key] == value
        assert getattr(registry.load_system(trained), key) == value
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"choose_min_users": 100_000}}
    few = train(ModelVersion.objects.create(), models=["popularity", "itemknn", "ease"]).tuning["configuration"]
    assert "the ranker stays" in few["skipped"]


def test_tune_respects_models_and_tunes_the_ranker_and_blend_on_rolling_folds(shop_history):
    version = train(ModelVersion.objects.create(), models=["popularity", "itemknn"], tune=True)
    tuning = version.tuning
    assert set(tuning["families"]) == {"itemknn"} and set(version.params["models"]) == {"popularity", "itemknn"}
    assert version.params["models"]["itemknn"]["k"] == tuning["families"]["itemknn"]["best_params"]["k"]
    ranker = tuning["ranker"]
    assert len(ranker["folds"]) == 2 and all(len(t["fold_scores"]) == 2 for t in ranker["trials"])
    best = max(ranker["trials"], key=lambda t: t["score"])
    assert version.params["ranker_params"] == best["ranker_params"] and version.params["blend"] == best["blend"]
    system = registry.load_system(version)
    assert system.blend == best["blend"] and system.ranker_params == best["ranker_params"]
