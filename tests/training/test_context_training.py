"""TRAINING["context_features"] through the training service: what it fits, what it leaves alone, its check."""

from __future__ import annotations

from django.core.checks import run_checks

from personalization.models import ModelVersion
from personalization.recommenders.features import CONTEXT_COLUMNS


def test_training_with_context_features_fits_a_ranker_with_the_context_columns(shop_history, settings):
    from personalization import registry
    from personalization.training import train

    settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                "TRAINING": {"context_features": True, "choose_configuration": False}}
    version = train(ModelVersion.objects.create())

    assert version.params["context_features"] is True
    system = registry.load_system(version)
    assert system.feature_names_[-len(CONTEXT_COLUMNS):] == CONTEXT_COLUMNS
    assert system.tables_.ctx_hour is not None
    users = list(system.matrix_.user_ids[:3])
    lists = system.recommend(users, n=5, context={"timestamp": "2026-01-06T20:00:00Z", "device": "mobile"})
    assert all(len(lst) == 5 for lst in lists)


def test_training_without_the_setting_fits_what_it_always_did(shop_history, settings):
    from personalization import registry
    from personalization.training import train

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"choose_configuration": False}}
    version = train(ModelVersion.objects.create())

    assert "context_features" not in version.params  # the recorded parameters are unchanged
    system = registry.load_system(version)
    assert not set(CONTEXT_COLUMNS) & set(system.feature_names_) and system.tables_.ctx_hour is None
    assert not system.uses_context()


def test_a_context_setting_that_is_not_a_bool_is_an_error(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"context_features": "yes"}}
    messages = {m.id: m for m in run_checks() if m.id and m.id.startswith("personalization.")}
    assert "personalization.E120" in messages and "'yes'" in messages["personalization.E120"].msg
