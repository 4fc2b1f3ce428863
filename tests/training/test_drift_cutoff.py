"""A retrain after a drift detection learns from the first half of the new traffic and is tested on the second;
its ranker learns from what visitors did after the change only."""

from __future__ import annotations

import pandas as pd

from personalization.pipeline.columns import TIMESTAMP
from personalization.training import drift_cutoff, drift_label_days


def _times(hours: list[float]) -> pd.Series:
    return pd.Series(pd.Timestamp("2026-12-01", tz="UTC") + pd.to_timedelta(hours, unit="h"))


def test_the_test_window_starts_at_the_median_event_since_the_change():
    stamps = _times([float(h) for h in range(100)])  # one event an hour; the change at hour 80
    usual = pd.Timestamp("2026-12-01", tz="UTC") + pd.Timedelta(hours=70)  # test_days would take hours 70-99
    cut = drift_cutoff(usual, stamps, pd.Timestamp("2026-12-01 08:00", tz="UTC") + pd.Timedelta(hours=72), 10)
    assert cut == pd.Timestamp("2026-12-01", tz="UTC") + pd.Timedelta(hours=90)  # hours 80-89 train, 90-99 test


def test_the_usual_window_stays_when_the_change_gives_nothing_to_learn_from():
    stamps = _times([float(h) for h in range(100)])
    usual = pd.Timestamp("2026-12-01", tz="UTC") + pd.Timedelta(hours=95)
    start = pd.Timestamp("2026-12-01", tz="UTC")
    assert drift_cutoff(usual, stamps, start + pd.Timedelta(hours=80), 10) == usual  # already later than the median
    assert drift_cutoff(usual, stamps, start + pd.Timedelta(hours=99), 10) == usual  # one event since: no halves
    early = start + pd.Timedelta(hours=50)
    assert drift_cutoff(early, stamps, start + pd.Timedelta(hours=60), 95) == early  # too little left to train on


def test_the_ranker_of_a_drift_retrain_learns_from_the_traffic_since_the_change():
    events = pd.DataFrame({TIMESTAMP: _times([float(h) for h in range(100)])})
    start = pd.Timestamp("2026-12-01", tz="UTC")
    assert drift_label_days(events, (start + pd.Timedelta(hours=90)).isoformat()) == {"label_days": 9 / 24}
    # no change, a change before the default label part (the last fifth) or outside the events: the default part
    assert drift_label_days(events, None) == {}
    assert drift_label_days(events, (start + pd.Timedelta(hours=60)).isoformat()) == {}
    assert drift_label_days(events, (start + pd.Timedelta(hours=120)).isoformat()) == {}
