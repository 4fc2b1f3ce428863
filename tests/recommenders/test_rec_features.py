"""The ranker's feature sums: computed without scipy's sparse products, equal to them bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from personalization.recommenders.features import category_sums, price_sums


def test_ranker_category_and_price_sums_equal_the_sparse_expressions_bit_for_bit():
    """The ranker's features must not move when the sums are computed without scipy's sparse products."""
    rng = np.random.default_rng(2)
    n_items, n_cat = 500, 7
    for _ in range(200):
        n_rows = int(rng.integers(1, 4))
        lengths = rng.integers(0, 40, n_rows)
        cols = [np.sort(rng.choice(n_items, k, replace=False)) for k in lengths]
        hist = sparse.csr_matrix(((rng.random(int(lengths.sum())) * 3).astype(np.float32), np.concatenate(cols),
                                  np.concatenate([[0], np.cumsum(lengths)])), shape=(n_rows, n_items), dtype=np.float32)
        item_cat = rng.integers(-1, n_cat, n_items).astype(np.int32)
        has = item_cat >= 0
        onehot = sparse.csr_matrix((np.ones(int(has.sum()), np.float32), (np.flatnonzero(has), item_cat[has])),
                                   shape=(n_items, n_cat))
        price = np.where(rng.random(n_items) < 0.7, rng.random(n_items) * 100, np.nan)
        has_price = np.isfinite(price).astype(np.float32)
        price_or_zero = np.where(np.isfinite(price), price, 0).astype(np.float32)
        share, total = category_sums(hist, item_cat, n_cat)
        assert np.array_equal(share, np.asarray((hist @ onehot).toarray(), np.float32))
        assert np.array_equal(total, np.asarray(hist.sum(axis=1), np.float32))
        weighted = hist.multiply(has_price[None, :]).tocsr()
        num, den = price_sums(hist, has_price, price_or_zero)
        assert np.array_equal(num, np.asarray(weighted @ price_or_zero).ravel())
        assert np.array_equal(den, np.asarray(weighted.sum(axis=1)).ravel())


def _season_events(first_day: str) -> pd.DataFrame:
    rows = []
    # last year, in the weeks around 2025-12-01: "gift" was bought by 5 visitors, then by 20 in the next weeks
    rows += [(f"a{i}", "gift", "2024-12-01") for i in range(5)]
    rows += [(f"b{i}", "gift", "2024-12-20") for i in range(20)]
    rows += [(f"c{i}", "mug", "2024-12-02") for i in range(8)]  # steady: 8 then 8
    rows += [(f"d{i}", "mug", "2024-12-22") for i in range(8)]
    rows += [("e", "mug", first_day), ("f", "gift", "2025-11-30"), ("g", "lamp", "2025-11-30")]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["event"] = "purchase"
    return frame


def test_season_columns_read_the_same_weeks_last_year_and_what_followed():
    from personalization.pipeline.interactions import build_interactions
    from personalization.recommenders.features import SEASON_COLUMNS, season_table

    events = _season_events("2024-11-01")
    matrix = build_interactions(events, {"purchase": 1.0}, None, now=pd.Timestamp("2025-12-01", tz="UTC"))
    season = season_table(events, matrix, pd.Timestamp("2025-12-01", tz="UTC"))
    assert season.shape == (matrix.shape[1], len(SEASON_COLUMNS))
    gift, mug, lamp = (matrix.cols_for([k])[0] for k in ("gift", "mug", "lamp"))
    assert np.isclose(season[gift, 0], np.log1p(5)) and np.isclose(season[gift, 1], np.log1p(20) - np.log1p(5))
    assert np.isclose(season[mug, 1], 0.0)  # as many visitors after as during those weeks: no trend
    assert season[lamp, 0] == 0.0  # unknown last year: no visitor then (not missing)
    # less than a year and two weeks of history: there is no season to read, every value is missing
    short = events.loc[events["timestamp"] >= pd.Timestamp("2024-11-20", tz="UTC")]
    assert np.isnan(season_table(short, matrix, pd.Timestamp("2025-12-01", tz="UTC"))).all()


# -- context features -----------------------------------------------------------------------------------------
CONTEXT_MODELS = {"popularity": {}, "itemknn": {"k": 20}}


def _context_shop(seed: int = 0, n_users: int = 400, per_user: int = 10) -> pd.DataFrame:
    """Views over eight weeks at uniform hours: ``product:night`` only in the evening (18-24 h UTC), by a third of
    the evening views; ``product:fr`` only by visitors from FR; the rest by a popularity order, anywhere."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-03-03", tz="UTC")
    pop = 1.0 / np.arange(1, 21)
    pop /= pop.sum()
    rows = []
    for u in range(n_users):
        country = "FR" if u % 2 else "GB"
        for _ in range(per_user):
            at = start + pd.Timedelta(days=int(rng.integers(0, 56)), hours=int(rng.integers(0, 24)),
                                      minutes=int(rng.integers(0, 60)))
            if at.hour >= 18 and rng.random() < 0.35:
                item = "product:night"
            elif country == "FR" and rng.random() < 0.3:
                item = "product:fr"
            else:
                item = f"product:{rng.choice(20, p=pop)}"
            rows.append((f"u{u}", item, "view", at, country, "mobile" if u % 3 else "desktop"))
    return pd.DataFrame(rows, columns=["user", "item", "event", "timestamp", "country", "device"])


@pytest.fixture(scope="module")
def context_shop():
    from personalization.recommenders.system import RecommenderSystem

    events = _context_shop()
    with_context = RecommenderSystem(models=CONTEXT_MODELS, random_state=0, context_features=True).fit(events)
    without = RecommenderSystem(models=CONTEXT_MODELS, random_state=0).fit(events)
    return events, with_context, without


def _mean_rank(system, users: list[str], item: str, context: dict | None, n: int = 25) -> float:
    ranks = []
    for row in system.recommend(users, n=n, context=context):
        keys = [k for k, _, _ in row]
        ranks.append(keys.index(item) if item in keys else n)
    return float(np.mean(ranks))


def _at(hour: int, **extra) -> dict:
    return {"timestamp": f"2025-05-06T{hour:02d}:30:00Z", **extra}  # a Tuesday, after the training events


def test_context_lifts_read_where_an_item_is_used_more_than_usual(context_shop):
    from personalization.recommenders.features import HOUR_BUCKETS

    _, system, _ = context_shop
    tables, cols = system.tables_, system.matrix_.cols_for(["product:night", "product:fr", "product:0"])
    night, fr, steady = cols
    evening = 20 // (24 // HOUR_BUCKETS)
    assert tables.ctx_hour[night, evening] > 0.5 and tables.ctx_hour[night, 0] < -0.5
    assert abs(tables.ctx_hour[steady, evening]) < 0.3  # used at every hour: no lift anywhere
    fr_col = list(tables.ctx_countries).index("FR")
    assert tables.ctx_country[fr, fr_col] > 0.5 and abs(tables.ctx_country[steady, fr_col]) < 0.3
    assert set(tables.ctx_devices) == {"mobile", "desktop"}


def test_a_ranker_with_context_features_ranks_an_evening_item_higher_in_the_evening(context_shop):
    _, system, without = context_shop
    assert system.uses_context() and not without.uses_context()
    users = [f"u{u}" for u in range(200)]
    assert _mean_rank(system, users, "product:night", _at(20)) + 3 < _mean_rank(system, users, "product:night",
                                                                                  _at(8))
    assert _mean_rank(system, users, "product:fr", _at(12, country="FR")) + 3 < _mean_rank(
        system, users, "product:fr", _at(12, country="GB"))
    # without context features the request's context changes nothing
    assert without.recommend(users[:20], n=10, context=_at(20, country="FR")) == without.recommend(
        users[:20], n=10, context=_at(8, country="GB")) == without.recommend(users[:20], n=10)


def test_context_columns_are_built_the_same_at_training_and_serving(context_shop):
    """The columns the ranker learns from (a frame event's context) equal those a request with the same context
    gets: a training row and a served row of the same (visitor, item, context) are identical."""
    from personalization.recommenders.features import CONTEXT_COLUMNS, Contexts

    events, system, _ = context_shop
    names = system.ranker_feature_names()
    assert set(CONTEXT_COLUMNS) - {"item_device_lift", "ctx_device"} <= set(names)
    event = events.iloc[[123]]
    user = str(event["user"].iloc[0])
    request = {"timestamp": event["timestamp"].iloc[0].to_pydatetime(), "country": event["country"].iloc[0],
               "device": event["device"].iloc[0]}
    lists, rows = system.recommend([user], n=10, context=request, with_features=True)
    rows_idx, hist = system._histories([user], None)
    batch = system._candidates(system._stage(), rows_idx, hist, filter_seen=True, exclude=system._exclude_cols(()),
                               contexts=Contexts.from_frame(event))
    trained = batch.features[:, system.ranker_columns_]
    for (key, _, _), served in zip(lists[0], rows[0], strict=True):
        at = int(np.flatnonzero(batch.cands[0] == system.matrix_.cols_for([key])[0])[0])
        assert np.array_equal(trained[at], served, equal_nan=True)
    ctx = [names.index(c) for c in CONTEXT_COLUMNS if c in names]
    assert np.isfinite(rows[0][:, ctx]).all()  # every context column known for this request
    unknown = system.recommend([user], n=10, with_features=True)[1][0]
    assert np.isnan(unknown[:, ctx]).all()  # no context given: missing, not a made-up one


def test_without_context_features_the_columns_and_tables_are_what_they_always_were(context_shop, tmp_path):
    from personalization.recommenders.features import CONTEXT_COLUMNS, feature_groups, feature_names

    _, _, without = context_shop
    families = list(without.families_)
    assert not set(CONTEXT_COLUMNS) & set(without.feature_names_)
    assert without.feature_names_ == feature_names(families)
    assert len(feature_groups(families)) == len(feature_names(families))
    assert feature_names(families, context=True)[: len(without.feature_names_)] == without.feature_names_
    without.save(tmp_path)
    with np.load(tmp_path / "tables.npz") as npz:
        assert not [k for k in npz.files if k.startswith("tables_ctx")]


def test_a_system_saved_before_context_features_loads_and_serves(context_shop, tmp_path):
    """An artifact with context columns but without the context tables (as if saved before them) still serves:
    the lifts are missing (NaN), the raw context is read; one without the parameter is fitted without them."""
    import json

    from personalization.recommenders.features import CONTEXT_COLUMNS
    from personalization.recommenders.system import RecommenderSystem

    _, system, without = context_shop
    system.save(tmp_path / "ctx")
    with np.load(tmp_path / "ctx" / "tables.npz") as npz:
        kept = {k: npz[k] for k in npz.files if not k.startswith("tables_ctx")}
    np.savez(tmp_path / "ctx" / "tables.npz", **kept)
    loaded = RecommenderSystem.load(tmp_path / "ctx")
    assert loaded.tables_.ctx_hour is None
    lists, rows = loaded.recommend(["u1"], n=5, context=_at(20, country="FR"), with_features=True)
    assert len(lists[0]) == 5
    lifts = [loaded.ranker_feature_names().index(c) for c in CONTEXT_COLUMNS if c.startswith("item_")
             and c in loaded.ranker_feature_names()]
    assert np.isnan(rows[0][:, lifts]).all()
    without.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "system.json").read_text())
    meta["params"].pop("context_features", None)
    (tmp_path / "old" / "system.json").write_text(json.dumps(meta))
    old = RecommenderSystem.load(tmp_path / "old")
    assert not old.uses_context() and old.recommend(["u1"], n=5) == without.recommend(["u1"], n=5)


def test_an_evaluation_serves_each_user_in_the_context_of_their_first_test_event(context_shop):
    from personalization.evaluation.system import _AsGenerator

    events, system, without = context_shop
    later = pd.DataFrame({"user": ["u3", "u3", "u4"], "item": ["product:1"] * 3, "event": "view",
                          "timestamp": pd.to_datetime(["2025-05-03T21:00Z", "2025-05-05T07:00Z", "2025-05-06T10:00Z"]),
                          "country": ["FR", "GB", "GB"]})
    contexts = _AsGenerator(system, later).contexts
    u3, u4, u5 = system.matrix_.rows_for(["u3", "u4", "u5"])
    assert contexts.bucket(u3) == (5, 1, None, "FR")  # Saturday 21 h: the first of u3's two events
    assert contexts.bucket(u4) == (2, 0, None, "GB")
    assert contexts.bucket(u5) == (None, None, None, None)  # no test event: unknown
    assert _AsGenerator(without, later).contexts is None  # a ranker without context columns: nothing to pass


def test_an_update_between_retrains_keeps_the_context_tables_and_gives_new_items_no_lift(context_shop):
    from personalization.recommenders.updates import apply_delta, compute_delta

    _, system, _ = context_shop
    t0 = pd.Timestamp("2025-04-30T20:00", tz="UTC")
    new = pd.DataFrame([(f"n{v}", item, "view", t0 + pd.Timedelta(minutes=v)) for v in range(5)
                        for item in ("product:3", "product:new")], columns=["user", "item", "event", "timestamp"])
    updated = apply_delta(system, compute_delta(system, new).delta)
    col = updated.matrix_.cols_for(["product:new"])[0]
    assert updated.tables_.ctx_hour.shape == (updated.matrix_.shape[1], system.tables_.ctx_hour.shape[1])
    assert (updated.tables_.ctx_hour[col] == 0).all() and (updated.tables_.ctx_country[col] == 0).all()
    assert list(updated.tables_.ctx_countries) == list(system.tables_.ctx_countries)
    assert updated.uses_context()
    assert _mean_rank(updated, [f"u{u}" for u in range(100)], "product:night", _at(20)) + 3 < _mean_rank(
        updated, [f"u{u}" for u in range(100)], "product:night", _at(8))


def test_an_update_between_retrains_keeps_the_season_table_and_new_items_have_no_season(context_shop):
    """Between retrains the ranker still reads last year's weeks for known items; an item new since has none."""
    import copy
    import dataclasses

    from personalization.recommenders.features import SEASON_COLUMNS
    from personalization.recommenders.updates import apply_delta, compute_delta

    _, system, _ = context_shop
    n_items = system.matrix_.shape[1]
    seasoned = copy.copy(system)
    seasoned.tables_ = dataclasses.replace(system.tables_, season=np.arange(
        n_items * len(SEASON_COLUMNS), dtype=np.float32).reshape(n_items, len(SEASON_COLUMNS)))
    t0 = pd.Timestamp("2025-04-30T20:00", tz="UTC")
    new = pd.DataFrame([(f"n{v}", item, "view", t0 + pd.Timedelta(minutes=v)) for v in range(5)
                        for item in ("product:3", "product:new")], columns=["user", "item", "event", "timestamp"])
    updated = apply_delta(seasoned, compute_delta(seasoned, new).delta)
    col = updated.matrix_.cols_for(["product:new"])[0]
    assert updated.tables_.season.shape == (updated.matrix_.shape[1], len(SEASON_COLUMNS))
    assert np.array_equal(updated.tables_.season[:n_items], seasoned.tables_.season)
    assert np.isnan(updated.tables_.season[col]).all()
