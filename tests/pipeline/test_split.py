import pandas as pd
import pytest

from personalization.pipeline.columns import ITEM, SESSION, TIMESTAMP, USER
from personalization.pipeline.split import (
    adaptive_cutoff,
    leave_last_out,
    rolling_splits,
    sessionize,
    temporal_split,
)

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")


def _daily(events_factory, days=10):
    return events_factory([(f"u{d % 3}", f"p:{d % 4}", "view", d) for d in range(days)], unit="D")


def _assert_no_leak(train, test):
    assert train[TIMESTAMP].max() < test[TIMESTAMP].min()


def test_explicit_cutoff_sends_the_cutoff_instant_to_test(events_factory):
    events = _daily(events_factory)
    train, test = temporal_split(events, cutoff=T0 + pd.Timedelta("7D"))
    assert len(train) == 7 and len(test) == 3
    assert test[TIMESTAMP].min() == T0 + pd.Timedelta("7D")
    _assert_no_leak(train, test)


def test_test_days_counts_back_from_the_latest_event(events_factory):
    train, test = temporal_split(_daily(events_factory), test_days=3)  # cutoff day 9 - 3 = day 6
    assert len(train) == 6 and len(test) == 4
    _assert_no_leak(train, test)


def test_test_fraction(events_factory):
    train, test = temporal_split(_daily(events_factory), test_fraction=0.3)
    assert len(train) == 7 and len(test) == 3
    _assert_no_leak(train, test)


def test_ties_at_the_cutoff_never_straddle(events_factory):
    events = events_factory([("u1", "p:1", "view", 0), ("u1", "p:2", "view", 1), ("u2", "p:1", "view", 1)], unit="D")
    train, test = temporal_split(events, test_fraction=0.4)
    assert len(train) == 1 and len(test) == 2
    _assert_no_leak(train, test)


def test_exactly_one_cutoff_rule(events_factory):
    events = _daily(events_factory)
    with pytest.raises(ValueError, match="exactly one"):
        temporal_split(events)
    with pytest.raises(ValueError, match="exactly one"):
        temporal_split(events, test_days=2, test_fraction=0.1)


def test_rolling_splits_expand_and_never_leak(events_factory):
    events = events_factory([(f"u{d % 5}", f"p:{d % 6}", "view", d) for d in range(30)], unit="D")
    folds = list(rolling_splits(events, n_splits=3, test_days=5))
    assert [c for c, _, _ in folds] == [T0 + pd.Timedelta(days=d) for d in (14, 19, 24)]
    assert [len(tr) for _, tr, _ in folds] == [14, 19, 24]
    assert [len(te) for _, _, te in folds] == [5, 5, 6]  # the last window includes the latest event
    for cutoff, train, test in folds:
        assert train[TIMESTAMP].max() < cutoff <= test[TIMESTAMP].min()
        _assert_no_leak(train, test)
        assert test[TIMESTAMP].max() < cutoff + pd.Timedelta("5D") or cutoff == folds[-1][0]


def test_rolling_splits_skip_short_training_windows(events_factory):
    events = events_factory([("u1", "p:1", "view", d) for d in range(30)], unit="D")
    folds = list(rolling_splits(events, n_splits=3, test_days=5, min_train_days=17))
    assert [c for c, _, _ in folds] == [T0 + pd.Timedelta(days=d) for d in (19, 24)]


def test_sessionize_splits_on_inactivity_and_keeps_row_order(events_factory):
    events = events_factory(
        [
            ("u1", "p:3", "view", 45),  # 35 min after the previous u1 event: new session
            ("u2", "p:1", "view", 5),
            ("u1", "p:1", "view", 0),
            ("u1", "p:4", "view", 75),  # exactly 30 min later: same session
            ("u1", "p:2", "view", 10),
            ("u2", "p:2", "view", 40),  # 35 min: new session
        ]
    )
    out = sessionize(events)
    assert out[ITEM].tolist() == events[ITEM].tolist()
    assert out[SESSION].tolist() == [1, 2, 0, 1, 0, 3]
    assert len(sessionize(events, gap=pd.Timedelta("2h"))[SESSION].unique()) == 2


def test_leave_last_out_targets_each_sessions_last_item(events_factory):
    events = sessionize(
        events_factory(
            [
                ("u1", "p:2", "view", 10),
                ("u1", "p:1", "view", 0),
                ("u1", "p:3", "view", 20),
                ("u2", "p:9", "view", 0),  # single-event session: dropped
                ("u3", "p:5", "view", 0),
                ("u3", "p:6", "view", 1),
            ]
        )
    )
    inputs, targets = leave_last_out(events)
    assert inputs[ITEM].tolist() == ["p:1", "p:2", "p:5"]
    assert targets[ITEM].tolist() == ["p:3", "p:6"]
    assert targets[USER].tolist() == ["u1", "u3"]
    assert set(inputs[SESSION]) == set(targets[SESSION])
    inputs3, targets3 = leave_last_out(events, min_length=3)
    assert targets3[ITEM].tolist() == ["p:3"] and inputs3[ITEM].tolist() == ["p:1", "p:2"]


def _stamps(*offsets_seconds):
    base = pd.Timestamp("2026-01-01", tz="UTC")
    return pd.Series([base + pd.Timedelta(seconds=s) for s in offsets_seconds])


def test_adaptive_cutoff_keeps_the_last_days_of_a_long_history():
    stamps = _stamps(*[i * 3600 for i in range(24 * 100)])  # hourly for 100 days
    cut = adaptive_cutoff(stamps, max_days=14, max_share=0.2, min_train=50)
    assert cut == stamps.max() - pd.Timedelta(days=14)


def test_adaptive_cutoff_shrinks_to_a_share_of_the_events_of_a_burst():
    stamps = _stamps(*[i * 0.01 for i in range(477)])  # a young site's traffic: 477 events in 5 seconds
    cut = adaptive_cutoff(stamps, max_days=14, max_share=0.2, min_train=50)
    train, test = (stamps < cut).sum(), (stamps >= cut).sum()
    assert (train, test) == (382, 95)


def test_adaptive_cutoff_never_gives_an_empty_or_whole_window():
    tied = _stamps(*([0] * 90 + [1] * 10))
    cut = adaptive_cutoff(tied, max_days=14, max_share=0.05, min_train=50)  # 5% would split a tie: all of it goes
    assert (tied < cut).sum() == 90 and (tied >= cut).sum() == 10
    late_tie = _stamps(*([0] * 10 + [1] * 90))  # the last instant holds most events: the window is that instant
    assert adaptive_cutoff(late_tie, max_days=14, max_share=0.2, min_train=5) == late_tie.max()
    assert adaptive_cutoff(late_tie, max_days=14, max_share=0.2, min_train=50) is None  # 10 before it: too few
    assert adaptive_cutoff(_stamps(*([0] * 100)), max_days=14) is None  # one instant: nothing to hold out
    assert adaptive_cutoff(_stamps(0), max_days=14) is None
