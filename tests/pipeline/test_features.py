import numpy as np
import pandas as pd
import pytest

from personalization.pipeline.columns import CATEGORY, ITEM, PRICE, TEXT
from personalization.pipeline.features import (
    item_features_frame,
    user_category_affinity,
    user_features,
)

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")  # a Friday
NOW = T0 + pd.Timedelta("48h")


@pytest.fixture
def events(events_factory):
    return events_factory(
        [
            ("u1", "p:1", "view", 0),
            ("u1", "p:2", "view", 25),
            ("u1", "p:2", "purchase", 26, 30.0),
            ("u1", "p:3", "purchase", 27),  # purchase without value: monetary 0
            ("u2", "p:1", "view", 47),
            ("u2", "p:1", "view", 60),  # after now: never used
        ],
        unit="h",
    )


@pytest.fixture
def catalog():
    return pd.DataFrame(
        {
            ITEM: ["p:1", "p:2", "p:3", "p:4"],
            CATEGORY: ["A", "B", "B", None],
            PRICE: [10.0, 20.0, 30.0, np.nan],
            "brand": ["acme", "acme", "zen", None],
            TEXT: ["abc", None, "", None],
            "available": [True, False, True, None],
        }
    )


def test_user_rfm(events):
    feats = user_features(events, now=NOW)
    assert feats.loc["u1"].to_dict() == {
        "user_recency_days": pytest.approx(21 / 24),
        "user_frequency": 4.0,
        "user_active_days": 2.0,
        "user_distinct_items": 3.0,
        "user_monetary": 30.0,
    }
    assert feats.loc["u2", "user_frequency"] == 1.0  # the event after now is ignored
    assert feats.loc["u2", "user_recency_days"] == pytest.approx(1 / 24)


def test_category_affinity_and_rfm_in_category(events, catalog):
    aff = user_category_affinity(events, catalog, weights={"view": 1.0, "purchase": 3.0}, now=NOW)
    rows = {(r.user, r.category): r for r in aff.itertuples()}
    assert set(rows) == {("u1", "A"), ("u1", "B"), ("u2", "A")}
    assert rows["u1", "A"].cat_affinity == pytest.approx(1 / 8)
    assert rows["u1", "B"].cat_affinity == pytest.approx(7 / 8)
    assert rows["u2", "A"].cat_affinity == pytest.approx(1.0)
    assert rows["u1", "B"].cat_frequency == 3.0
    assert rows["u1", "B"].cat_monetary == 30.0
    assert rows["u1", "B"].cat_recency_days == pytest.approx(21 / 24)
    assert rows["u1", "A"].cat_recency_days == pytest.approx(2.0)



def test_item_popularity_trend_conversion_and_attributes(events_factory, catalog):
    events = events_factory(
        [
            ("u1", "p:1", "view", -0.5),
            ("u2", "p:1", "view", -3),
            ("u3", "p:1", "purchase", -0.2),
            ("u4", "p:1", "view", -10),
            ("u1", "p:2", "view", -5),
            ("u1", "p:5", "view", -0.1),  # item missing from the catalog
            ("u5", "p:1", "view", 1),  # after now: never used
        ],
        unit="D",
    )
    feats = item_features_frame(events, catalog, now=T0, windows=(1, 7), price_bands=3)
    assert feats.index.tolist() == ["p:1", "p:2", "p:3", "p:4", "p:5"]
    assert feats["item_pop_1d"].tolist() == [2, 0, 0, 0, 1]
    assert feats["item_pop_7d"].tolist() == [3, 1, 0, 0, 1]
    assert feats.loc["p:1", "item_trend"] == pytest.approx(14 / 3)
    assert feats.loc["p:2", "item_trend"] == 0.0
    assert np.isnan(feats.loc["p:3", "item_trend"])
    assert feats.loc["p:1", "item_conversion"] == pytest.approx(1 / 3)
    assert feats.loc["p:2", "item_conversion"] == 0.0
    assert np.isnan(feats.loc["p:3", "item_conversion"])
    assert feats["item_price_band"].iloc[:3].tolist() == [0.0, 1.0, 2.0]
    assert feats["item_price_band"].iloc[3:].isna().all()
    assert feats[CATEGORY].tolist()[:3] == ["A", "B", "B"]
    assert feats["item_text_len"].tolist() == [3.0, 0.0, 0.0, 0.0, 0.0]
    assert feats["available"].iloc[:3].tolist() == [1.0, 0.0, 1.0]


def _ranker_frames():
    rng = np.random.default_rng(0)
    n = 40
    train = pd.DataFrame(
        {
            "score": np.r_[[1.0, 2.0, 3.0, np.nan], rng.normal(2.0, 1.0, n - 4)],
            "device": rng.choice(["mobile", "desktop"], n),
            "brand": rng.choice([f"b{i}" for i in range(12)], n),
        }
    )
    y = rng.integers(0, 2, n)
    test = pd.DataFrame({"score": [100.0, 200.0], "device": ["tv", "mobile"], "brand": ["b1", "never-seen"]})
    return train, y, test


def test_empty_training_window_gives_empty_frames(events):
    empty = events.iloc[:0]
    assert user_features(empty).shape == (0, 5)
    assert item_features_frame(empty).shape[0] == 0
    assert user_category_affinity(empty, pd.DataFrame({ITEM: ["p:1"], CATEGORY: ["A"]})).empty
