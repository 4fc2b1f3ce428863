import json

import numpy as np
import pandas as pd
import pytest

from personalization.pipeline.clean import DROP_REASONS, activity_features, clean_events
from personalization.pipeline.columns import EVENT, ITEM, TIMESTAMP, USER

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")


def test_each_rule_counts_its_drops(events_factory):
    events = events_factory(
        [
            ("u1", "p:1", "view", 0),
            ("u1", "p:1", "view", 0),  # exact duplicate
            ("u1", "p:2", "view", 1),
            (None, "p:1", "view", 2),  # missing user
            ("u2", "p:1", None, 3),  # missing event
            ("u2", "p:3", "view", 4),  # bot
            ("u2", "p:99", "view", 5),  # unknown item
            ("u2", "p:1", "view", 70),  # 10 min ahead of now: clock skew
            ("u2", "p:1", "view", 63),  # 3 min ahead: tolerated
            ("u3", "p:2", "purchase", 2),
        ]
    )
    events["is_bot"] = [False] * 5 + [True] + [False] * 4
    clean, report = clean_events(
        events, known_items={"p:1", "p:2", "p:3"}, now=T0 + pd.Timedelta("60min"), anomaly=None
    )
    assert report.dropped == {
        "missing_user": 1,
        "missing_event": 1,
        "missing_timestamp": 0,
        "bot": 1,
        "unknown_item": 1,
        "future_timestamp": 1,
        "duplicate": 1,
        "anomalous_user": 0,
    }
    assert list(report.dropped) == list(DROP_REASONS)
    assert (report.rows_in, report.rows_out) == (10, 4)
    assert (report.users_in, report.users_out) == (3, 3)
    assert (report.items_in, report.items_out) == (4, 2)
    assert len(clean) == 4 and list(clean.index) == [0, 1, 2, 3]
    assert clean[TIMESTAMP].max() == T0 + pd.Timedelta("63min")
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data


def test_clock_skew_uses_wall_clock_by_default(events_factory):
    now = pd.Timestamp.now(tz="UTC")
    events = events_factory([("u1", "p:1", "view", -60), ("u1", "p:1", "view", 60 * 24)], t0=now)
    clean, report = clean_events(events, anomaly=None)
    assert report.dropped["future_timestamp"] == 1
    assert len(clean) == 1


def test_naive_timestamps_are_taken_as_utc(events_factory):
    events = events_factory([("u1", "p:1", "view", 0)])
    events[TIMESTAMP] = events[TIMESTAMP].dt.tz_localize(None)
    clean, _ = clean_events(events, now=T0, anomaly=None)
    assert clean[TIMESTAMP].iloc[0] == T0


def _normal_users(n_users, per_user):
    rows = []
    for u in range(n_users):
        for k in range(per_user):
            rows.append((f"u{u}", f"p:{k}", "view", k * 10))
    return rows


def test_rate_rule_flags_bursts_and_heavy_visitors(events_factory):
    rows = _normal_users(25, 5)
    rows += [("burst", f"p:{k}", "view", 0.01 * k) for k in range(40)]  # 40 events inside one minute
    rows += [("heavy", f"p:{k % 7}", "view", 1.5 * k) for k in range(200)]  # 200 events, < 1 per minute
    events = events_factory(rows)
    clean, report = clean_events(events, now=T0 + pd.Timedelta("1D"))
    assert report.anomalous_users == ["burst", "heavy"]
    assert report.dropped["anomalous_user"] == 240
    assert report.rows_out == 125
    assert report.to_dict()["anomalous_user_count"] == 2 and "anomalous_users" not in report.to_dict()
    assert not clean[USER].isin(["burst", "heavy"]).any()


def test_rate_rule_is_configurable(events_factory):
    rows = _normal_users(25, 5) + [("burst", f"p:{k}", "view", 0.01 * k) for k in range(40)]
    events = events_factory(rows)
    _, report = clean_events(events, now=T0 + pd.Timedelta("1D"), anomaly=("rate", {"max_per_minute": 50}))
    assert report.dropped["anomalous_user"] == 0


def test_rate_rule_does_not_count_impressions(events_factory):
    # A shopper opens two pages of 20 recommended items and a product page within a minute: 40 impressions the
    # pages emitted, 3 actions of their own. They are a person to learn from, not a bot.
    rows = _normal_users(25, 5)
    rows += [("shopper", f"p:{k % 20}", "impression", 0.01 * k) for k in range(40)]
    rows += [("shopper", "p:1", "click", 0.5), ("shopper", "p:1", "view", 0.51), ("shopper", "p:2", "view", 0.9)]
    rows += [("heavy", f"p:{k % 7}", "impression", 1.5 * k) for k in range(200)]
    rows += [("burst", f"p:{k}", "view", 0.01 * k) for k in range(40)]  # still a burst of views
    events = events_factory(rows)
    clean, report = clean_events(events, now=T0 + pd.Timedelta("1D"))
    assert report.anomalous_users == ["burst"]
    assert (clean[USER] == "shopper").sum() == 43
    _, counted = clean_events(events, now=T0 + pd.Timedelta("1D"), anomaly=("rate", {"passive_events": ()}))
    assert counted.anomalous_users == ["burst", "heavy", "shopper"]


def test_rate_rule_counts_one_order_as_one_action(events_factory):
    # A wholesale customer's checkout: 60 order lines with the same timestamp, every week. Counting lines flagged
    # 35% of Online Retail's customers (71% of its purchases) as bots; an order is one action.
    rows = _normal_users(25, 5)
    rows += [("wholesale", f"p:{k}", "purchase", 7 * 24 * 60 * week) for week in range(3) for k in range(60)]
    rows += [("burst", f"p:{k}", "purchase", 0.01 * k) for k in range(40)]  # 40 separate checkouts in a minute
    events = events_factory(rows)
    clean, report = clean_events(events, now=T0 + pd.Timedelta("30D"))
    assert report.anomalous_users == ["burst"]
    assert (clean[USER] == "wholesale").sum() == 180
    _, counted = clean_events(events, now=T0 + pd.Timedelta("30D"), anomaly=("rate", {"batched_events": ()}))
    assert counted.anomalous_users == ["burst", "wholesale"]


def test_isolation_forest_flags_scripted_visitor():
    rng = np.random.default_rng(1)
    frames = []
    for u in range(100):
        n = int(rng.integers(5, 15))
        frames.append(
            pd.DataFrame(
                {
                    USER: f"u{u}",
                    ITEM: [f"p:{i}" for i in rng.integers(0, 50, n)],
                    EVENT: rng.choice(["view", "view", "view", "cart", "purchase"], n),
                    TIMESTAMP: T0 + pd.to_timedelta(np.sort(rng.integers(0, 3 * 86400, n)), unit="s"),
                }
            )
        )
    frames.append(
        pd.DataFrame(
            {
                USER: "crawler",
                ITEM: [f"p:{i}" for i in range(2000)],
                EVENT: "view",
                TIMESTAMP: T0 + pd.to_timedelta(np.arange(2000), unit="s"),
            }
        )
    )
    events = pd.concat(frames, ignore_index=True)
    events["value"] = np.nan
    clean, report = clean_events(events, now=T0 + pd.Timedelta("4D"), anomaly=("isolation_forest", {}))
    assert "crawler" in report.anomalous_users
    assert len(report.anomalous_users) <= 3
    assert "crawler" not in set(clean[USER])


def test_unknown_anomaly_rule_is_rejected(events_factory):
    with pytest.raises(ValueError, match="anomaly"):
        clean_events(events_factory([("u1", "p:1", "view", 0)]), now=T0, anomaly=("magic", {}))


def test_activity_features(events_factory):
    events = events_factory(
        [("u1", "p:1", "view", 0), ("u1", "p:2", "view", 60), ("u1", "p:2", "purchase", 120), ("u2", "p:1", "cart", 0)]
    )
    feats = activity_features(events)
    assert feats.loc["u1"].tolist() == [3.0, 2.0, 1.5, pytest.approx(2 / 3)]
    assert feats.loc["u2"].tolist() == [1.0, 1.0, 1.0, 0.0]
