import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler, TargetEncoder

from personalization.pipeline.columns import CATEGORY, ITEM, PRICE, TEXT, TIMESTAMP, USER
from personalization.pipeline.features import (
    build_preprocessor,
    context_features,
    item_features_frame,
    pair_category_features,
    pair_features,
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

    pairs = pd.DataFrame({USER: ["u1", "u2", "u9", "u1", "u1"], ITEM: ["p:3", "p:2", "p:1", "p:4", "p:new"]})
    per_pair = pair_category_features(pairs, aff, catalog.set_index(ITEM)[CATEGORY])
    assert per_pair["cat_affinity"].iloc[0] == pytest.approx(7 / 8)
    assert per_pair["cat_affinity"].iloc[1] == 0.0  # known user, untouched category
    assert np.isnan(per_pair["cat_recency_days"].iloc[1])
    assert per_pair["cat_affinity"].iloc[2:].isna().all()  # unknown user / no category / unknown item


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


def test_cyclical_encodings():
    ctx = context_features(
        pd.DataFrame(
            {"hour": [0, 24, 6, 12, 23], "weekday": [0, 7, 0, 0, 0], "device": ["mobile", None, "tv", "tv", "tv"]}
        )
    )
    hour = ["hour_sin", "hour_cos"]
    assert ctx.loc[0, hour].tolist() == pytest.approx(ctx.loc[1, hour].tolist())
    assert ctx.loc[2, ["hour_sin", "hour_cos"]].tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert ctx.loc[3, ["hour_sin", "hour_cos"]].tolist() == pytest.approx([0.0, -1.0], abs=1e-12)
    # 23h is close to 0h on the circle
    assert np.hypot(ctx.loc[4, "hour_sin"] - ctx.loc[0, "hour_sin"], ctx.loc[4, "hour_cos"] - 1) < 0.3
    assert ctx.loc[0, ["weekday_sin", "weekday_cos"]].tolist() == pytest.approx(
        ctx.loc[1, ["weekday_sin", "weekday_cos"]].tolist()
    )
    assert ctx["month_sin"].isna().all()  # no timestamp, no month
    assert ctx["device"].dtype == "category" and pd.isna(ctx.loc[1, "device"])
    assert ctx["country"].isna().all()


def test_context_from_timestamp():
    ctx = context_features(pd.DataFrame({TIMESTAMP: [T0 + pd.Timedelta("-6h")]}))  # Friday 06:00, March
    row = ctx.iloc[0]
    assert (row["hour_sin"], row["hour_cos"]) == pytest.approx((1.0, 0.0), abs=1e-12)
    assert (row["weekday_sin"], row["weekday_cos"]) == pytest.approx(
        (np.sin(2 * np.pi * 4 / 7), np.cos(2 * np.pi * 4 / 7))
    )
    assert (row["month_sin"], row["month_cos"]) == pytest.approx((np.sin(np.pi / 3), np.cos(np.pi / 3)))


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


def test_preprocessor_is_fitted_on_training_rows_only():
    train, y, test = _ranker_frames()
    pre = build_preprocessor(["score"], ["device"], ["brand"])
    out_train = pre.fit_transform(train, y)
    imputed = train["score"].fillna(train["score"].median())
    scaler = pre.named_transformers_["numeric"][-1]
    assert isinstance(scaler, StandardScaler)
    assert scaler.mean_[0] == pytest.approx(imputed.mean())  # test values (100, 200) never reach the scaler
    out_test = pre.transform(test)
    names = list(pre.get_feature_names_out())
    assert out_train.shape == (40, len(names)) and out_test.shape == (2, len(names))
    assert out_test[0, names.index("numeric__score")] == pytest.approx((100 - imputed.mean()) / imputed.std(ddof=0))
    onehot = [i for i, name in enumerate(names) if name.startswith("onehot__")]
    assert out_test[0, onehot].tolist() == [0.0] * len(onehot)  # unknown device "tv": all zeros
    assert isinstance(pre.named_transformers_["onehot"][-1], OneHotEncoder)
    assert isinstance(pre.named_transformers_["target"][-1], TargetEncoder)
    # fit_transform cross-fits the target encoding, so it differs from a plain transform of the same rows
    target_col = names.index("target__brand")
    assert not np.allclose(out_train[:, target_col], pre.transform(train)[:, target_col])


def test_iterative_imputer_and_minmax():
    train, y, _ = _ranker_frames()
    train["other"] = train["score"] * 2 + 1
    train.loc[5, "other"] = np.nan
    pre = build_preprocessor(["score", "other"], imputer="iterative", scaler="minmax")
    out = pre.fit_transform(train, y)
    assert not np.isnan(out).any()
    assert out.min() == pytest.approx(0.0) and out.max() == pytest.approx(1.0)
    assert isinstance(pre.named_transformers_["numeric"][-1], MinMaxScaler)
    # the iterative imputer learns other = 2 * score + 1
    assert pre.named_transformers_["numeric"][0].transform(train[["score", "other"]])[5, 1] == pytest.approx(
        2 * train.loc[5, "score"] + 1, rel=1e-3
    )


def test_bad_preprocessor_options_are_rejected():
    with pytest.raises(ValueError, match="imputer"):
        build_preprocessor(["x"], imputer="knn")
    with pytest.raises(ValueError, match="scaler"):
        build_preprocessor(["x"], scaler="robust")


def test_pair_features_join_and_keep_order(events, catalog):
    users = user_features(events, now=NOW)
    items = item_features_frame(events, catalog, now=NOW)
    aff = user_category_affinity(events, catalog, now=NOW)
    pairs = pd.DataFrame(
        {USER: ["u2", "ghost", "u1"], ITEM: ["p:3", "p:1", "p:unknown"], "score_als": [0.3, 0.2, 0.1]},
        index=[10, 11, 12],
    )
    out = pair_features(pairs, users, items, aff, context={TIMESTAMP: NOW, "device": "mobile"})
    assert out.index.tolist() == [10, 11, 12]
    assert out["score_als"].tolist() == [0.3, 0.2, 0.1]
    assert out.loc[10, "user_frequency"] == 1.0 and out.loc[10, CATEGORY] == "B"
    assert out.loc[10, "cat_affinity"] == 0.0
    assert np.isnan(out.loc[11, "user_frequency"]) and out.loc[11, "item_pop_30d"] == 2.0
    assert np.isnan(out.loc[12, "item_pop_30d"]) and out.loc[12, "user_frequency"] == 4.0
    assert out["device"].tolist() == ["mobile"] * 3
    assert out["hour_cos"].tolist() == pytest.approx([-1.0] * 3)  # noon
    with pytest.raises(ValueError, match="align"):
        pair_features(pairs, users, items, aff, context=pd.DataFrame({TIMESTAMP: [NOW]}))


def test_empty_training_window_gives_empty_frames(events):
    empty = events.iloc[:0]
    assert user_features(empty).shape == (0, 5)
    assert item_features_frame(empty).shape[0] == 0
    assert user_category_affinity(empty, pd.DataFrame({ITEM: ["p:1"], CATEGORY: ["A"]})).empty
