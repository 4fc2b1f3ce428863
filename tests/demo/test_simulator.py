"""The simulated shop is deterministic and its visitors' known tastes show in their events."""

from __future__ import annotations

import pandas as pd
import pytest

from storefront_demo.shop.simulator import CATEGORIES, EVENT_COLUMNS, simulate_shop


@pytest.fixture(scope="module")
def shop():
    return simulate_shop(n_products=120, n_visitors=200, days=30, seed=3)


def test_deterministic_for_a_seed(shop):
    again = simulate_shop(n_products=120, n_visitors=200, days=30, seed=3)
    pd.testing.assert_frame_equal(shop.events, again.events)
    pd.testing.assert_frame_equal(shop.catalog, again.catalog)
    pd.testing.assert_frame_equal(shop.truth, again.truth)
    other = simulate_shop(n_products=120, n_visitors=200, days=30, seed=4)
    assert not other.events[["visitor", "item"]].equals(shop.events[["visitor", "item"]])


def test_shape_and_columns(shop):
    events, catalog = shop.events, shop.catalog
    assert list(events.columns) == EVENT_COLUMNS
    assert list(catalog.columns) == ["sku", "name", "description", "category", "brand", "price"]
    assert len(catalog) == 120 and catalog["sku"].is_unique and set(catalog["category"]) == set(CATEGORIES)
    assert set(events["item"]) <= set(catalog["sku"])
    assert str(events["timestamp"].dt.tz) == "UTC"
    assert events["timestamp"].is_monotonic_increasing
    assert events["timestamp"].max() < pd.Timestamp("2024-06-30", tz="UTC")
    assert events["timestamp"].min() >= pd.Timestamp("2024-05-31", tz="UTC")
    counts = events["event"].value_counts()
    assert counts["view"] > counts["add_to_cart"] > counts["purchase"] > 0
    assert events.loc[events["event"] == "purchase", "value"].gt(0).all()
    assert events.loc[events["event"] == "view", "value"].isna().all()
    assert set(events["device"]) >= {"desktop", "mobile"}
    assert events["country"].nunique() > 3


def test_end_moves_the_window():
    shop = simulate_shop(n_products=40, n_visitors=30, days=5, seed=1, end="2030-01-01")
    assert shop.events["timestamp"].max() < pd.Timestamp("2030-01-01", tz="UTC")
    assert shop.events["timestamp"].min() >= pd.Timestamp("2029-12-27", tz="UTC")


def test_truth_is_reflected_in_events(shop):
    category = shop.catalog.set_index("sku")["category"]
    humans = shop.events[~shop.events["is_bot"]].assign(category=lambda f: f["item"].map(category))
    humans = humans.merge(shop.truth[["visitor", "primary", "secondary"]], on="visitor")
    liked = (humans["category"] == humans["primary"]) | (humans["category"] == humans["secondary"])
    # two of eight categories would get 25% by chance
    assert liked[humans["event"] == "view"].mean() > 0.6
    assert liked[humans["event"] == "purchase"].mean() > 0.8
    # each visitor's most viewed category is usually their primary one
    top = (humans[humans["event"] == "view"].groupby("visitor")["category"].agg(lambda s: s.value_counts().index[0]))
    primary = shop.truth.set_index("visitor")["primary"]
    assert (top == primary.reindex(top.index)).mean() > 0.5


def test_bots_are_few_and_fast(shop):
    truth = shop.truth
    assert 0.01 <= truth["is_bot"].mean() <= 0.06
    bots = shop.events[shop.events["is_bot"]]
    assert set(bots["event"]) == {"view"}
    per_visitor = shop.events.groupby("visitor").size()
    assert per_visitor[truth.loc[truth["is_bot"], "visitor"]].median() > 2 * per_visitor.median()
    gaps = bots.groupby("visitor")["timestamp"].diff().dt.total_seconds().dropna()
    assert gaps.median() < 5


def test_signed_up_users(shop):
    users = shop.events["user"].dropna()
    assert len(users) > 0
    assert set(users) <= set(shop.truth["user"].dropna())
    # a user id always belongs to one visitor
    assert shop.events.dropna(subset=["user"]).groupby("user")["visitor"].nunique().max() == 1
