"""TRAINING["session_ranker"] through the training service: on by default, off leaves one ranker, and its check."""

from __future__ import annotations

from django.core.checks import run_checks

from personalization.models import ModelVersion


def test_training_records_the_session_ranker_or_why_it_was_skipped(shop_history, settings):
    from personalization import registry
    from personalization.training import train

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"choose_configuration": False}}
    version = train(ModelVersion.objects.create())

    assert "session_ranker" not in version.params  # the default: the recorded parameters are unchanged
    info = version.metrics["session_ranker"]
    system = registry.load_system(version)
    assert (system.session_ranker_ is None) == ("skipped" in info)


def test_training_with_the_session_ranker_off_fits_one_ranker(shop_history, settings):
    from personalization import registry
    from personalization.training import train

    settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                "TRAINING": {"session_ranker": False, "choose_configuration": False}}
    version = train(ModelVersion.objects.create())

    assert version.params["session_ranker"] is False
    system = registry.load_system(version)
    assert system.session_ranker_ is None and "session_ranker" not in version.metrics


def test_a_session_ranker_setting_that_is_not_a_bool_is_an_error(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"session_ranker": "yes"}}
    messages = {m.id: m for m in run_checks() if m.id and m.id.startswith("personalization.")}
    assert "personalization.E130" in messages and "'yes'" in messages["personalization.E130"].msg
