"""SHAP attributions of the gradient-boosted ranker, on the feature rows the system really served."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization.evaluation.insights import shap_summary
from personalization.recommenders.attributions import margin, mean_abs_shap, shap_values, top_contributions
from personalization.recommenders.system import RecommenderSystem


def popular_shop(seed: int = 0, users: int = 200, items: int = 60) -> pd.DataFrame:
    """Visitors view items at random, but what they buy follows a steep popularity law: popularity decides."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    pop = 1.0 / np.arange(1, items + 1) ** 1.5
    pop /= pop.sum()
    rows = []
    for u in range(users):
        for _ in range(12):
            kind = "purchase" if rng.random() < 0.5 else "view"
            item = rng.choice(items, p=pop) if kind == "purchase" else rng.integers(items)
            at = t0 + pd.Timedelta(minutes=int(rng.integers(0, 60 * 24 * 30)))
            rows.append((f"v:{u}", f"product:{item}", kind, at))
    return pd.DataFrame(rows, columns=["user", "item", "event", "timestamp"])


@pytest.fixture(scope="module")
def system() -> RecommenderSystem:
    return RecommenderSystem(models={"popularity": {}, "itemknn": {}}, random_state=0).fit(popular_shop())


def test_served_feature_rows_are_what_the_ranker_scored(system):
    lists, rows = system.recommend(["v:1", "v:2", "v:stranger"], n=8, with_features=True)
    assert lists == system.recommend(["v:1", "v:2", "v:stranger"], n=8)  # asking for rows changes nothing
    for served, X in zip(lists[:2], rows[:2], strict=True):
        assert X.shape == (len(served), len(system.ranker_feature_names()))
        np.testing.assert_allclose(system.ranker_.predict_proba(X), [score for _, score, _ in served], rtol=1e-6)
    assert rows[2] is None  # a stranger gets popular items: no ranker row


def test_shap_values_add_up_to_the_ranker_margin(system):
    _, rows = system.recommend(["v:3", "v:4"], n=10, with_features=True)
    X = np.vstack(rows)
    values, base = shap_values(system.ranker_, X)
    assert values.shape == X.shape
    np.testing.assert_allclose(base + values.sum(axis=1), margin(system.ranker_, X), atol=1e-6)
    # and the margin is the served probability's log-odds
    p = system.ranker_.predict_proba(X)
    np.testing.assert_allclose(1 / (1 + np.exp(-margin(system.ranker_, X))), p, rtol=1e-6)


def test_popularity_dominates_the_summary_of_a_popularity_driven_shop(system):
    summary = shap_summary(system, None, max_rows=600, random_state=0)
    assert summary["rows"] <= 600
    top = list(summary["features"])[:3]
    popularity = {"item_users_log", "popularity_score", "popularity_rank", "popularity_gap", "item_pop_7d",
                  "item_pop_30d", "item_pop_90d"}
    assert top[0] in popularity and len(set(top) & popularity) >= 2
    values = list(summary["features"].values())
    assert values == sorted(values, reverse=True) and all(v >= 0 for v in values)


def test_mean_abs_shap_samples_at_most_max_rows_and_top_contributions_are_positive(system):
    _, rows = system.recommend([f"v:{u}" for u in range(20)], n=10, with_features=True)
    X = np.vstack([r for r in rows if r is not None])
    summary = mean_abs_shap(system.ranker_, X, system.ranker_feature_names(), max_rows=50, random_state=1)
    assert summary["rows"] == 50
    values, _ = shap_values(system.ranker_, X[:5])
    for row, tops in zip(values, top_contributions(values, system.ranker_feature_names(), k=3), strict=True):
        assert len(tops) <= 3 and all(v > 0 for _, v in tops)
        assert [v for _, v in tops] == sorted(row[row > 0], reverse=True)[:3]


def test_a_ranker_without_trees_has_no_explainer():
    mlp = RecommenderSystem(models={"popularity": {}, "itemknn": {}}, ranker="mlp", random_state=0,
                            ranker_params={"max_iter": 20}).fit(popular_shop(users=80))
    _, rows = mlp.recommend(["v:1"], n=5, with_features=True)
    assert rows[0] is not None and shap_values(mlp.ranker_, rows[0]) is None
    assert shap_summary(mlp, None, max_rows=100) is None
