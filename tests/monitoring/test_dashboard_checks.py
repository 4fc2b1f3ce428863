"""System checks of the dashboard's settings and of the training weights the dashboard also validates."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks


def _messages():
    return {m.id: m for m in run_checks() if m.id and m.id.startswith("personalization.")}


def test_the_demo_configuration_has_no_dashboard_message():
    assert not {k for k in _messages() if k[-3:-1] == "09"}


@pytest.mark.parametrize("weight", [1000.0, -101, "heavy", float("nan"), None])
def test_a_bad_event_weight_is_e090(settings, weight):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "EXTRA_EVENT_TYPES": {"wish": {"weight": weight}}}
    messages = _messages()
    assert "personalization.E090" in messages
    assert "EVENT_TYPES['wish']" in messages["personalization.E090"].msg
    assert "-100..100" in messages["personalization.E090"].hint


@pytest.mark.parametrize("value", [0, -3, "7", 1.5, True])
def test_a_bad_dashboard_setting_is_e091(settings, value):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "DASHBOARD": {"event_days": value}}
    assert "DASHBOARD['event_days']" in _messages()["personalization.E091"].msg


def test_an_unknown_dashboard_key_is_e091(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "DASHBOARD": {"days": 3}}
    message = _messages()["personalization.E091"].msg
    assert "Unknown key(s) in PERSONALIZATION['DASHBOARD']: days" in message and "event_days" in message


def test_counter_days_beyond_what_the_cache_keeps_is_w090(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "DASHBOARD": {"counter_days": 14}}
    assert "kept 8 days" in _messages()["personalization.W090"].msg


def test_missing_matplotlib_is_w091(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert "[dashboard]" in _messages()["personalization.W091"].hint
