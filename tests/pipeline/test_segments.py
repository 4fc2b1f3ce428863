"""Visitor segments from events: device, country (top N), new vs returning, history length."""

from __future__ import annotations

import pandas as pd

from personalization.pipeline.segments import history_bucket, visitor_segments


def test_history_buckets():
    assert [history_bucket(n) for n in (0, 1, 2, 4, 5, 9, 10, 19, 20, 49, 50, 500)] == [
        "0", "1", "2-4", "2-4", "5-9", "5-9", "10-19", "10-19", "20-49", "20-49", "50+", "50+"]


def test_segments_take_the_most_used_device_the_top_countries_and_the_number_of_visit_days():
    t = pd.Timestamp("2026-03-01 10:00", tz="UTC")
    rows = [
        ("v:a", "view", t, "mobile", "FR"), ("v:a", "view", t, "mobile", "FR"), ("v:a", "purchase", t, "desktop", "FR"),
        ("v:b", "view", t, "desktop", "DE"), ("v:b", "view", t + pd.Timedelta(days=2), "desktop", "DE"),
        ("v:c", "view", t, None, "NL"),
        ("v:d", "view", t, "tablet", "FR"),
    ]
    events = pd.DataFrame(rows, columns=["user", "event", "timestamp", "device", "country"]).assign(item="product:1")
    seg = visitor_segments(events, ["v:a", "v:b", "v:c", "v:d", "v:none"], {"view": 1.0, "purchase": 5.0},
                           top_countries=2)
    assert seg.loc["v:a"].to_dict() == {"device": "mobile", "country": "FR", "visitor": "new", "history": "2-4"}
    assert seg.loc["v:b", "visitor"] == "returning" and seg.loc["v:b", "country"] == "DE"
    assert seg.loc["v:c", "device"] == "unknown"
    assert seg.loc["v:c", "country"] == "other"  # FR (2 visitors) and DE (alphabetically before NL) are the top 2
    assert seg.loc["v:none"].to_dict() == {"device": "unknown", "country": "unknown", "visitor": "new", "history": "0"}
