"""RecommenderSystem on synthetic shop data with planted structure (no database).

Users like two of six categories (70% / 30% of their visits); inside a category items have a popularity order;
visits are sessions of a few views with some purchases; users come from three countries. One item is unavailable.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization.evaluation.system import evaluate_system
from personalization.pipeline.split import temporal_split
from personalization.recommenders import system as system_module
from personalization.recommenders.ease import EASERecommender
from personalization.recommenders.system import HISTORY_SOURCE, RecommenderSystem

N_CATS = 6
PER_CAT = 20
UNAVAILABLE = f"product:{N_CATS * PER_CAT - 1}"
MODELS = {
    "als": {"factors": 8, "iterations": 8, "regularization": 0.1},
    "itemknn": {"k": 30},
    "item2vec": {"vector_size": 8, "epochs": 5, "window": 3},
    "popularity": {},
    "content": {},
    "ease": {"l2": 50.0},
}


def category_of(key: str) -> int:
    return int(key.split(":")[1]) // PER_CAT


def make_shop(n_users: int = 240, days: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    n_items = N_CATS * PER_CAT
    items = pd.DataFrame({
        "item": [f"product:{i}" for i in range(n_items)],
        "category": [f"cat{i // PER_CAT}" for i in range(n_items)],
        "price": rng.uniform(1, 100, n_items).round(2),
        "text": [f"family{i // PER_CAT} style{i // PER_CAT} piece {i}" for i in range(n_items)],
        "available": [True] * (n_items - 1) + [False],
    })
    pop = np.tile(1.0 / np.arange(1, PER_CAT + 1) ** 0.8, N_CATS)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    rows, tastes = [], {}
    for u in range(n_users):
        taste = rng.choice(N_CATS, size=2, replace=False)
        tastes[f"u:{u}"] = taste
        country = ("FR", "DE", "GB")[u % 3]
        for s in range(int(rng.integers(3, 8))):
            t0 = start + pd.Timedelta(days=float(rng.uniform(0, days)))
            cat = taste[0] if rng.random() < 0.7 else taste[1]
            cand = np.arange(cat * PER_CAT, (cat + 1) * PER_CAT)
            chosen = rng.choice(cand, size=int(rng.integers(2, 6)), replace=False, p=pop[cand] / pop[cand].sum())
            for j, it in enumerate(chosen):
                ts = t0 + pd.Timedelta(minutes=3 * j)
                rows.append((f"u:{u}", f"product:{it}", "view", ts, np.nan, f"{u}-{s}", country))
                if rng.random() < 0.3:
                    rows.append((f"u:{u}", f"product:{it}", "purchase", ts + pd.Timedelta(minutes=1),
                                 float(items.price[it]), f"{u}-{s}", country))
    events = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp", "value", "session", "country"])
    return events.sort_values("timestamp", ignore_index=True), items, tastes


@pytest.fixture(scope="module")
def shop():
    events, items, tastes = make_shop()
    train, test = temporal_split(events, test_days=10)
    return train, test, items, tastes


@pytest.fixture(scope="module")
def fitted(shop):
    train, _, items, _ = shop
    calls = []
    system = RecommenderSystem(models=MODELS, candidates_per_model=30, random_state=0)
    system.fit(train, items, progress=lambda stage, fraction: calls.append((stage, fraction)))
    return system, calls


def test_fit_learns_both_stages_and_reports_progress(fitted):
    system, calls = fitted
    assert set(system.families_) == set(MODELS)
    assert system.ranker_ is not None
    assert system.metrics_["stage1"]["ranker_users"] > 0
    assert system.metrics_["ranker"]["validation_auc"] > 0.6
    fractions = [f for _, f in calls]
    assert fractions == sorted(fractions)
    assert calls[-1] == ("done", 1.0)


def test_recommend_shapes_keys_and_reasons(fitted, shop):
    system, _ = fitted
    train = shop[0]
    users = ["u:1", "u:2", "u:3"]
    recs = system.recommend(users, n=7)
    assert len(recs) == 3
    catalog = set(shop[2]["item"])
    for rec in recs:
        assert len(rec) == 7
        keys = [k for k, _, _ in rec]
        assert len(set(keys)) == 7 and set(keys) <= catalog
        scores = [s for _, s, _ in rec]
        assert scores == sorted(scores, reverse=True)
        for _, _, reason in rec:
            assert reason.split(":")[0] in {*MODELS, HISTORY_SOURCE}
    # "because <item>" names an item of the user's own history
    history = set(train.loc[train["user"] == "u:1", "item"])
    for _, _, reason in recs[0]:
        if ":because " in reason:
            assert reason.split(":because ")[1] in history


def test_recommend_filters_consumed_excluded_and_unavailable(fitted, shop):
    system, _ = fitted
    train = shop[0]
    user = "u:4"
    seen = set(train.loc[train["user"] == user, "item"])
    bought = set(train.loc[(train["user"] == user) & (train["event"] == "purchase"), "item"])
    first = [k for k, _, _ in system.recommend([user], n=10)[0]]
    assert bought and not bought & set(first)
    assert UNAVAILABLE not in first
    again = [k for k, _, _ in system.recommend([user], n=10, exclude=set(first[:3]))[0]]
    assert not set(first[:3]) & set(again)
    unfiltered = [k for k, _, _ in system.recommend([user], n=40, filter_seen=False)[0]]
    assert seen & set(unfiltered)


def test_a_user_with_every_candidate_excluded_gets_an_empty_list_not_an_error(fitted, shop):
    system, _ = fitted
    catalog = set(shop[2]["item"])
    history = {"v:all-gone": ["product:2", "product:5"]}
    assert system.recommend(["v:all-gone"], n=5, histories=history, exclude=catalog) == [[]]
    assert system.recommend(["u:3"], n=5, exclude=catalog) == [[]]


def test_unknown_user_with_history_gets_related_items(fitted):
    system, _ = fitted
    history = [f"product:{i}" for i in (2, 5, 7)]  # category 0
    rec = system.recommend(["v:new"], n=10, histories={"v:new": history})[0]
    keys = [k for k, _, _ in rec]
    assert len(keys) == 10
    assert sum(category_of(k) == 0 for k in keys) >= 6
    related = [k for k, _, _ in system.recommend(["v:new"], n=10, histories={"v:new": history},
                                                 exclude=set(history))[0]]
    assert len(related) == 10 and not set(history) & set(related)


def test_user_with_nothing_gets_popular_items(fitted, shop):
    system, _ = fitted
    train = shop[0]
    rec = system.recommend(["v:stranger"], n=5)[0]
    assert all(reason == "popularity" for _, _, reason in rec)
    counts = train.loc[train["item"] != UNAVAILABLE, "item"].value_counts()
    assert len(set(k for k, _, _ in rec) & set(counts.index[:15])) >= 3
    by_country = system.recommend(["v:stranger"], n=5, context={"country": "FR"})[0]
    assert all(reason == "popularity:country=FR" for _, _, reason in by_country)


def test_similar_items_and_recommend_for_model(fitted):
    system, _ = fitted
    similar = system.similar_items(["product:3", "product:nope"], n=5)
    assert len(similar[0]) == 5 and similar[1] == []
    assert "product:3" not in [k for k, _ in similar[0]]
    assert sum(category_of(k) == 0 for k, _ in similar[0]) >= 4
    alone = system.recommend_for_model("ease", ["u:1"], n=5)
    assert len(alone[0]) == 5 and all(r == "ease" for _, _, r in alone[0])
    assert "product:" in system.explain("u:1", alone[0][0][0])


def test_save_load_round_trip_is_identical(fitted, tmp_path):
    system, _ = fitted
    system.save(tmp_path)
    loaded = RecommenderSystem.load(tmp_path)
    users = ["u:1", "u:7", "v:anon", "v:none"]
    histories = {"v:anon": ["product:30", "product:31"]}
    assert loaded.recommend(users, n=10, histories=histories) == system.recommend(users, n=10, histories=histories)
    assert loaded.similar_items(["product:3"]) == system.similar_items(["product:3"])
    assert loaded.get_params() == system.get_params()


def test_no_leakage_into_the_first_stage(shop, monkeypatch):
    """The generators that produce the ranker's features are fitted on events before the label cut-off only."""
    train, _, items, _ = shop
    seen_until = []
    real = system_module.build_interactions

    def spy(events, *args, **kwargs):
        seen_until.append(events["timestamp"].max())
        return real(events, *args, **kwargs)

    monkeypatch.setattr(system_module, "build_interactions", spy)
    fit_stage = RecommenderSystem._fit_stage
    stage_events = []

    def spy_stage(self, events, *args, **kwargs):
        stage_events.append(events)
        return fit_stage(self, events, *args, **kwargs)

    monkeypatch.setattr(RecommenderSystem, "_fit_stage", spy_stage)
    small = {"itemknn": {"k": 20}, "popularity": {}}
    system = RecommenderSystem(models=small, label_days=12, random_state=1).fit(train, items)
    assert len(stage_events) == 2
    assert stage_events[0]["timestamp"].max() < system.cutoff_
    assert seen_until[0] < system.cutoff_
    assert system.cutoff_ == train["timestamp"].max() - pd.Timedelta(days=12)
    assert len(stage_events[1]) == len(train)  # serving stage: everything


def test_two_stage_system_beats_popularity(fitted, shop):
    system, _ = fitted
    result = evaluate_system(system, shop[1], k=(10, 20))
    assert result["system"]["n_users"] > 50
    assert result["system"]["ndcg@10"] > 1.5 * result["popularity"]["ndcg@10"]
    assert result["system"]["recall@20"] > result["popularity"]["recall@20"]
    assert result["cold"]["cold_users"] == 0


def test_without_ranker_and_input_errors(shop):
    train, _, items, _ = shop
    system = RecommenderSystem(models={"itemknn": {"k": 20}, "popularity": {}}, ranker=None).fit(train)
    assert system.ranker_ is None
    rec = system.recommend(["u:1"], n=5)[0]
    assert len(rec) == 5 and {r.split(":")[0] for _, _, r in rec} <= {"itemknn", "popularity", HISTORY_SOURCE}
    with pytest.raises(ValueError, match="unknown model"):
        RecommenderSystem(models={"nope": {}}).fit(train)
    with pytest.raises(ValueError, match="positive weight"):
        RecommenderSystem(event_weights={"other": 1.0}).fit(train)
    with pytest.raises(RuntimeError, match="not fitted"):
        RecommenderSystem().recommend(["u:1"])


def test_blend_with_an_anchor_family(fitted, shop):
    """blend=0 orders the system's candidates by the anchor family; blend=1 is the ranker; between them, both count."""
    system, _ = fitted
    users = ["u:1", "u:5", "u:9"]
    ranked = system.recommend(users, n=10)
    try:
        system.set_params(anchor="ease", blend=0.0, repeat=False)  # EASE's own list never repeats
        anchored = system.recommend(users, n=10)
        ease = system.recommend_for_model("ease", users, n=10, exclude={UNAVAILABLE})
        # the candidate set holds EASE's own top list, so ordering it by EASE gives EASE's top 10
        assert [[k for k, _, _ in r] for r in anchored] == [[k for k, _, _ in r] for r in ease]
        assert all(s1 >= s2 for r in anchored for (_, s1, _), (_, s2, _) in zip(r, r[1:], strict=False))
        system.set_params(blend=0.5)
        half = system.recommend(users, n=10)
        assert all(len(r) == 10 for r in half)
        assert all(reason.split(":")[0] in MODELS for r in half for _, _, reason in r)
        system.set_params(repeat=True)
        system.set_params(blend=1.0)
        assert system.recommend(users, n=10) == ranked
    finally:
        system.set_params(anchor=None, blend=1.0, repeat=True)
    train = shop[0]
    with pytest.raises(ValueError, match="blend must be between"):
        RecommenderSystem(models={"popularity": {}}, blend=1.5).fit(train)
    with pytest.raises(ValueError, match="anchor must be"):
        RecommenderSystem(models={"popularity": {}}, anchor="ease").fit(train)


def test_history_rows_add_the_session_to_the_training_row_like_sparse_addition(fitted):
    """Known users: training row + decayed session weights (repeats add up); unknown users: the session alone;
    unknown item keys are ignored. The same float32 values scipy's row indexing and addition give."""
    from personalization.recommenders.histories import history_rows

    system, _ = fitted
    matrix = system.matrix_
    known = [str(u) for u in matrix.user_ids[:3]]
    items = [str(k) for k in matrix.item_ids[:6]]
    histories = {known[0]: [items[0], items[1], items[0], "product:not-in-the-catalog"], "v:new": [items[2], items[3]],
                 known[2]: []}
    users = [*known, "v:new", "v:nothing"]
    rows, hist = system._histories(users, histories)
    assert rows.tolist()[:3] == [0, 1, 2] and rows.tolist()[3:] == [-1, -1]
    base = matrix.csr[np.where(rows >= 0, rows, 0)].multiply((rows >= 0)[:, None].astype(np.float32)).tocsr()
    cols = [matrix.cols_for(histories.get(u, [])) for u in users]
    expected = (base + history_rows([c[c >= 0] for c in cols], matrix.shape[1])).tocsr()
    expected.eliminate_zeros()
    expected.sort_indices()
    assert hist.dtype == np.float32 and hist.has_sorted_indices
    assert np.array_equal(hist.indptr, expected.indptr) and np.array_equal(hist.indices, expected.indices)
    assert np.array_equal(hist.data, expected.data.astype(np.float32))
    assert hist[4].nnz == 0


def test_ease_is_skipped_above_its_item_limit_with_the_reason_recorded(shop):
    train, _, items, _ = shop
    system = RecommenderSystem(models={"popularity": {}, "itemknn": {"k": 20}, "ease": {"max_items": 10}},
                               random_state=0).fit(train, items)
    assert "ease" not in system.families_ and system.recommend(["u:1"], n=5)[0]
    assert "max_items 10" in system.metrics_["stage2"]["skipped_families"]["ease"]
    small = RecommenderSystem(models={"popularity": {}, "ease": {}}, ranker=None, random_state=0).fit(train, items)
    assert "ease" in small.families_ and small.metrics_["stage2"]["skipped_families"] == {}


def test_a_catalog_of_blank_titles_skips_the_content_family_with_the_reason(shop):
    train, _, items, _ = shop
    blank = items.drop(columns=[c for c in ("category", "brand") if c in items]).assign(text=" ")
    system = RecommenderSystem(models={"popularity": {}, "itemknn": {"k": 20}, "content": {}},
                               random_state=0).fit(train, blank)
    assert "content" not in system.families_ and system.recommend(["u:1"], n=5)[0]
    assert "no item catalog with text" in system.metrics_["stage2"]["skipped_families"]["content"]


def test_ease_lambda_is_chosen_on_the_label_part_unless_given(shop, monkeypatch):
    train, _, items, _ = shop
    models = {"popularity": {}, "ease": {}}
    monkeypatch.setattr(system_module, "MIN_CHOICE_USERS", 5)
    system = RecommenderSystem(models=models, candidates_per_model=30, random_state=0).fit(train, items)
    choice = system.metrics_["chosen_params"]["ease"]
    scores = {float(k): v for k, v in choice["scores"].items()}
    assert choice["param"] == "l2" and set(scores) == set(system_module.CHOSEN_PARAMS["ease"][1])
    assert choice["value"] == max(scores, key=lambda v: (scores[v], -v)) and choice["users"] >= 5
    assert system.families_["ease"].l2 == choice["value"]  # serving uses the chosen value
    assert system.get_params()["models"] == models  # the parameters stay what the caller gave
    fixed = RecommenderSystem(models={"popularity": {}, "ease": {"l2": 50.0}}, candidates_per_model=30,
                              random_state=0).fit(train, items)
    assert "chosen_params" not in fixed.metrics_ and fixed.families_["ease"].l2 == 50.0
    monkeypatch.setattr(system_module, "MIN_CHOICE_USERS", 10**6)  # too few users: the class default
    few = RecommenderSystem(models=models, candidates_per_model=30, random_state=0).fit(train, items)
    assert "skipped" in few.metrics_["chosen_params"]["ease"]
    assert few.families_["ease"].l2 == EASERecommender().l2


def test_training_items_are_the_users_training_row(fitted):
    """What the system holds about one person (their data export): the items and weights of their training row."""
    system, _ = fitted
    user = str(system.matrix_.user_ids[0])
    row = system.matrix_.csr[0]
    expected = {str(system.matrix_.item_ids[c]): float(v) for c, v in zip(row.indices, row.data, strict=True) if v}
    assert dict(system.training_items(user)) == pytest.approx(expected)
    assert system.training_items("v:never-seen") == []


def test_an_ablation_drops_a_feature_group_from_the_ranker(shop):
    from personalization.recommenders.features import feature_groups

    train, _, items, _ = shop
    models = {"popularity": {}, "itemknn": {"k": 20}}
    system = RecommenderSystem(models=models, random_state=0, without_features=["family", "history"])
    system.fit(train, items)
    groups = np.asarray(feature_groups(list(system.families_)))
    assert len(groups) == len(system.feature_names_)
    used = set(groups[system.ranker_columns_])
    assert used and not used & {"family", "history"}
    assert system.recommend(["u:1"], n=5)[0]
    with pytest.raises(ValueError, match="unknown feature group"):
        RecommenderSystem(models=models, without_features=["nope"]).fit(train, items)


def test_ratings_weigh_by_their_value_unless_told_otherwise():
    events = pd.DataFrame({
        "user": ["u1", "u1", "u2", "u2", "u3"], "item": ["loved", "hated", "loved", "other", "other"],
        "event": "rate", "value": [5.0, 1.0, 4.0, 2.0, 3.0],
        "timestamp": pd.date_range("2026-01-01", periods=5, freq="D", tz="UTC"),
    })
    system = RecommenderSystem(models={"popularity": {}}, ranker=None).fit(events)
    row = system.matrix_.rows_for(["u1"])[0]
    loved, hated = system.matrix_.cols_for(["loved", "hated"])
    assert system.matrix_.csr[row, loved] == 5 * system.matrix_.csr[row, hated]  # a 5-star rating: five 1-stars
    plain = RecommenderSystem(models={"popularity": {}}, ranker=None, value_weighted_events=()).fit(events)
    assert plain.matrix_.csr[row, loved] == plain.matrix_.csr[row, hated]


def test_a_column_filled_on_a_handful_of_rows_is_left_out_of_the_ranker(monkeypatch):
    """A column with values on only a few rows (a few warm users among many session rows) may be missing from the
    trees' binning sample, which fails the whole training: it is left out instead."""
    rng = np.random.default_rng(0)
    n, groups = 3000, np.repeat(np.arange(300), 10)
    y = (rng.random(n) < 0.1).astype(int)
    X = np.column_stack([y + rng.normal(0, 0.5, n), np.full(n, np.nan), rng.normal(size=n)]).astype(np.float32)
    X[:5, 1] = np.arange(5)  # five filled rows: not enough for a leaf, and maybe none in a binning sample
    monkeypatch.setattr(system_module, "BINNING_SAMPLE", 1000)
    system = RecommenderSystem(models={"popularity": {}}, random_state=0)
    monkeypatch.setattr(system_module, "feature_groups",
                        lambda families, context=False, session=False: ["family", "user", "item"])
    ranker, info, columns = system._fit_ranker(X, y, groups, np.random.default_rng(0), ["popularity"])
    assert list(columns) == [0, 2]
    assert info["validation_auc"] > 0.7
