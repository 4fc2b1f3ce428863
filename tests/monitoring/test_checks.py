"""System checks of the learning-loop settings (E040, W040)."""

from __future__ import annotations

import pytest

from personalization.checks import check_online_measurement


@pytest.mark.parametrize("name,value", [("ATTRIBUTION_WINDOW_HOURS", 0), ("CLICK_SESSION_MINUTES", "30"),
                                        ("EXPERIMENT_REFRESH_SECONDS", True)])
def test_settings_must_be_positive_numbers(settings, name, value):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, name: value}
    errors = check_online_measurement()
    assert [e.id for e in errors] == ["personalization.E040"] and name in errors[0].msg


def test_a_click_session_longer_than_the_attribution_window_is_a_warning(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "ATTRIBUTION_WINDOW_HOURS": 1,
                                "CLICK_SESSION_MINUTES": 90}
    assert [e.id for e in check_online_measurement()] == ["personalization.W040"]


def test_the_defaults_pass():
    assert check_online_measurement() == []
