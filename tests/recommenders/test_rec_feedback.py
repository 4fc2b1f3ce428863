"""Feedback on served lists as ranker rows: labels, positions, histories, and what the ranker learns from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization.pipeline.columns import (
    CLICKED,
    EVENT,
    EXPLORED,
    ITEM,
    LIST,
    POSITION,
    SHOWN_AT,
    TIMESTAMP,
    USER,
)
from personalization.recommenders.features import POSITION_FEATURE, SERVING_POSITION
from personalization.recommenders.ranker_data import FEEDBACK_COLUMNS, feedback_rows, with_feedback
from personalization.recommenders.system import RecommenderSystem

T0 = pd.Timestamp("2024-01-01", tz="UTC")
N_ITEMS = 20
DUD = "i0"  # the most viewed item, never clicked when recommended


def shop(seed: int = 0, n_users: int = 200, lists_per_user: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Views with a Zipf popularity (the dud most viewed) over 30 days, and lists of 10 random items shown in the
    last week: each item is clicked with probability relevance / (1 + position), the dud's relevance 0."""
    rng = np.random.default_rng(seed)
    items = np.array([f"i{k}" for k in range(N_ITEMS)])
    pop = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.7
    pop /= pop.sum()
    rows = []
    for u in range(n_users):
        for day in (rng.uniform(0, 20), rng.uniform(22, 30)):
            for s, it in enumerate(rng.choice(N_ITEMS, 5, replace=False, p=pop)):
                rows.append((f"u{u}", items[it], "view", T0 + pd.Timedelta(days=day, minutes=s)))
    events = pd.DataFrame(rows, columns=[USER, ITEM, EVENT, TIMESTAMP])
    shown = []
    for u in range(n_users):
        for k in range(lists_per_user):
            at = T0 + pd.Timedelta(days=rng.uniform(24, 30))
            for p, it in enumerate(rng.permutation(N_ITEMS)[:10]):
                relevance = 0.0 if it == 0 else 0.6
                shown.append((f"L{u}-{k}", f"u{u}", items[it], p, at, rng.random() < relevance / (1 + p), False))
    return events, pd.DataFrame(shown, columns=FEEDBACK_COLUMNS)


@pytest.fixture(scope="module")
def data():
    return shop()


@pytest.fixture(scope="module")
def systems(data):
    events, feedback = data
    make = lambda: RecommenderSystem(models={"popularity": {}, "itemknn": {}}, random_state=0, label_days=8)  # noqa: E731
    return make().fit(events), make().fit(events, feedback=feedback)


def _stage1(events: pd.DataFrame):
    """A fitted stage over the fit part (what fit() hands feedback_rows) and the label part."""
    cutoff = events[TIMESTAMP].max() - pd.Timedelta(days=8)
    fit_part, label_part = events[events[TIMESTAMP] < cutoff], events[events[TIMESTAMP] >= cutoff]
    probe = RecommenderSystem(models={"popularity": {}}, ranker=None, random_state=0).fit(fit_part)
    return probe, probe._stage(), label_part


def test_rows_are_labelled_from_a_hand_made_log():
    events, _ = shop(n_users=40, lists_per_user=0)
    system, stage, label_part = _stage1(events)
    known = [u for u in stage.matrix.user_ids if u in set(label_part[USER])][:1][0]
    at = events[TIMESTAMP].max()
    newcomer_first = label_part.sort_values(TIMESTAMP).iloc[0]
    log = pd.DataFrame([
        ("A", known, "i3", 0, at, True, False),
        ("A", known, "i5", 1, at, False, False),
        ("A", known, "i7", 2, at, False, True),
        ("A", known, "no-such-item", 3, at, True, False),  # not in the catalogue: no row
        # a visitor unknown to the fit part, with one label-part event before the list: history from it
        ("B", "stranger", "i2", 4, at, True, False),
        # an unknown visitor with no event before the list: served popular items, never ranked: no row
        ("C", "nobody", "i4", 0, at, True, False),
    ], columns=FEEDBACK_COLUMNS)
    stranger = pd.DataFrame([("stranger", str(newcomer_first[ITEM]), "view", at - pd.Timedelta(minutes=5))],
                            columns=[USER, ITEM, EVENT, TIMESTAMP])
    label = pd.concat([label_part, stranger], ignore_index=True)
    X, y, groups, positions, info = feedback_rows(stage.matrix, log, label, system.interaction_weights(),
                                                  np.random.default_rng(0), system._labelled_candidates(stage))
    assert info["feedback_lists"] == 2 and info["feedback_rows"] == 4
    assert y.tolist() == [1, 0, 0, 1]
    assert positions.tolist() == [0, 1, 2, 4]
    assert groups.tolist() == [0, 0, 0, 1]
    assert info["feedback_clicks"] == 2 and info["feedback_explored_rows"] == 1
    assert X.shape == (4, len(system.feature_names_))
    # the rows carry the candidates' own features: the stranger's row is anonymous, the known user's are not
    anonymous = system.feature_names_.index("anonymous")
    assert X[:, anonymous].tolist() == [0, 0, 0, 1]


def test_a_log_without_the_columns_is_refused():
    events, _ = shop(n_users=10, lists_per_user=0)
    system, stage, label_part = _stage1(events)
    with pytest.raises(ValueError, match="feedback lacks column"):
        feedback_rows(stage.matrix, pd.DataFrame({USER: ["u1"], ITEM: ["i1"]}), label_part, {},
                      np.random.default_rng(0), system._labelled_candidates(stage))


def test_organic_rows_have_no_position_and_feedback_rows_their_logged_one():
    X = np.ones((3, 4), np.float32)
    fX = np.ones((2, 4), np.float32)
    out_X, out_y, out_groups = with_feedback((X, np.array([1, 0, 0]), np.array([0, 0, 5])),
                                             (fX, np.array([0, 1]), np.array([0, 1]), np.array([3.0, 7.0])), 2)
    assert np.isnan(out_X[:3, 2]).all() and out_X[3:, 2].tolist() == [3.0, 7.0]
    assert out_y.tolist() == [1, 0, 0, 0, 1]
    assert out_groups.tolist() == [0, 0, 5, 6, 7]  # feedback lists are groups of their own


def test_the_position_feature_is_constant_when_serving(systems, data):
    events, _ = data
    _, with_fb = systems
    column = with_fb.feature_names_.index(POSITION_FEATURE)
    assert column in with_fb.ranker_columns_  # the ranker uses it ...
    users = with_fb.matrix_.rows_for([f"u{u}" for u in range(30)])
    rows, hist = with_fb._histories([f"u{u}" for u in range(30)], None)
    batch = with_fb._candidates(with_fb._stage(), users, hist, filter_seen=True, exclude=None)
    values = batch.features.reshape(*batch.cands.shape, -1)[:, :, column][batch.cands >= 0]
    assert len(values) and (values == SERVING_POSITION).all()  # ... and every candidate it ranks gets one value


def test_without_feedback_the_position_feature_is_not_used(systems):
    without, _ = systems
    assert without.feature_names_.index(POSITION_FEATURE) not in without.ranker_columns_
    assert "feedback_rows" not in without.metrics_["stage1"]


def test_the_ranker_learns_to_rank_a_skipped_item_lower(systems):
    without, with_fb = systems
    users = [f"u{u}" for u in range(200)]

    def mean_rank(system: RecommenderSystem) -> float:
        lists = system.recommend(users, n=10, filter_seen=False)
        return float(np.mean([next((k for k, r in enumerate(lst) if r[0] == DUD), 10) for lst in lists]))

    assert with_fb.metrics_["stage1"]["feedback_rows"] > 1000
    assert mean_rank(without) < 3  # organic views make it a top item ...
    assert mean_rank(with_fb) > mean_rank(without) + 4  # ... the skips push it down


def test_lists_shown_after_the_training_events_are_ignored(data):
    events, feedback = data
    late = feedback.assign(**{SHOWN_AT: events[TIMESTAMP].max() + pd.Timedelta(days=1)})
    system = RecommenderSystem(models={"popularity": {}}, random_state=0, label_days=8).fit(events, feedback=late)
    assert system.metrics_["stage1"]["feedback_rows"] == 0
    assert LIST in late and POSITION in late and CLICKED in late and EXPLORED in late
