import io

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight

from personalization.pipeline.columns import EVENT, ITEM, TIMESTAMP, USER, VALUE
from personalization.pipeline.interactions import InteractionMatrix, build_interactions

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")
WEIGHTS = {"view": 1.0, "cart": 2.0, "purchase": 5.0, "remove": -5.0}


def test_weights_are_summed_per_pair_and_negative_sums_clipped(events_factory):
    events = events_factory(
        [
            ("u1", "p:1", "view", 0),
            ("u1", "p:1", "view", 1),
            ("u1", "p:1", "purchase", 2),
            ("u1", "p:2", "hover", 3),  # unknown type: weight 0
            ("u2", "p:2", "cart", 4),
            ("u2", "p:1", "view", 5),
            ("u2", "p:1", "remove", 6),  # 1 - 5 < 0: clipped away
            ("u3", "p:3", "hover", 7),  # only weight-0 events: not in the index
        ]
    )
    m = build_interactions(events, WEIGHTS)
    assert m.user_ids.tolist() == ["u1", "u2"]
    assert m.item_ids.tolist() == ["p:1", "p:2"]
    assert m.csr.dtype == np.float32
    assert m.csr.toarray().tolist() == [[7.0, 0.0], [0.0, 2.0]]
    assert m.csr.nnz == 2  # the clipped pair is not stored as an explicit zero
    assert m.user_index == {"u1": 0, "u2": 1}
    assert m.rows_for(["u2", "nobody", "u1"]).tolist() == [1, -1, 0]
    assert m.cols_for(["p:2", "p:3"]).tolist() == [1, -1]


def test_categorical_columns_give_the_matrix_plain_strings_give(events_factory):
    events = events_factory([("u10", "p:2", "view", 0), ("u9", "p:10", "purchase", 1), ("u10", "p:10", "view", 2),
                             ("u2", "p:1", "hover", 3), ("u9", "p:2", "cart", 4)])
    events.loc[4, USER] = None  # a row without a subject is left out
    plain = build_interactions(events, WEIGHTS)
    for categories in (["u10", "u2", "u9", "zz-unused"], ["zz-unused", "u9", "u2", "u10"]):  # sorted, unsorted
        categorical = events.astype({USER: pd.CategoricalDtype(categories), ITEM: "category"})
        m = build_interactions(categorical, WEIGHTS)
        assert m.user_ids.tolist() == plain.user_ids.tolist() == ["u10", "u9"]
        assert m.item_ids.tolist() == plain.item_ids.tolist()
        assert (m.csr != plain.csr).nnz == 0


def test_value_weighted_types_multiply_by_value(events_factory):
    events = events_factory(
        [("u1", "p:1", "rating", 0, 4.0), ("u1", "p:2", "rating", 0), ("u1", "p:2", "view", 0, 9.0)]
    )
    m = build_interactions(events, {"rating": 0.5, "view": 1.0}, value_weighted=["rating"])
    # 0.5 * 4 for p:1; a missing rating value counts 1 (0.5), and the view's value is ignored (+1).
    assert m.csr.toarray().tolist() == [[2.0, 1.5]]


def test_decay_halves_weight_at_one_half_life(events_factory):
    events = events_factory(
        [
            ("u1", "p:1", "view", 0),
            ("u1", "p:2", "view", -7),
            ("u1", "p:3", "view", -14),
            ("u1", "p:4", "view", 3),  # after now: not boosted above 1
        ],
        unit="D",
    )
    m = build_interactions(events, WEIGHTS, half_life_days=7, now=T0)
    np.testing.assert_allclose(m.csr.toarray()[0], [1.0, 0.5, 0.25, 1.0], rtol=1e-6)
    # now defaults to the latest event (day +3)
    m = build_interactions(events, WEIGHTS, half_life_days=7)
    np.testing.assert_allclose(m.csr.toarray()[0], 0.5 ** (np.array([3, 10, 17, 0]) / 7), rtol=1e-6)


def _random_events(n_users=30, n_items=20, per_user=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, per_user, replace=False):
            for _ in range(int(rng.integers(1, 4))):
                rows.append((f"u{u:02d}", f"p:{i:02d}", "view", 0))
    return rows


def test_log_scaling_matches_numpy(events_factory):
    events = events_factory(_random_events())
    raw = build_interactions(events, WEIGHTS)
    logged = build_interactions(events, WEIGHTS, scaling="log")
    np.testing.assert_allclose(logged.csr.toarray(), np.log1p(raw.csr.toarray()), rtol=1e-6)


def test_bm25_scaling_matches_implicit(events_factory):
    events = events_factory(_random_events())
    raw = build_interactions(events, WEIGHTS)
    scaled = build_interactions(events, WEIGHTS, scaling="bm25", bm25_k1=1.2, bm25_b=0.75)
    expected = bm25_weight(sp.csr_matrix(raw.csr, dtype=np.float64).T, K1=1.2, B=0.75).T.toarray()
    assert (expected >= 0).all()
    np.testing.assert_allclose(scaled.csr.toarray(), expected, rtol=1e-5)
    assert scaled.csr.dtype == np.float32


def test_bad_scaling_is_rejected(events_factory):
    with pytest.raises(ValueError, match="scaling"):
        build_interactions(events_factory([("u1", "p:1", "view", 0)]), WEIGHTS, scaling="tfidf")


def test_fixed_ids_align_a_test_matrix_with_training(events_factory):
    train = build_interactions(
        events_factory([("u1", "p:1", "view", 0), ("u2", "p:2", "view", 0), ("u3", "p:3", "view", 0)]), WEIGHTS
    )
    test_events = events_factory(
        [
            ("u3", "p:1", "purchase", 10),
            ("u1", "p:3", "cart", 10),
            ("new-user", "p:1", "view", 10),  # unknown user: dropped
            ("u2", "p:new", "view", 10),  # unknown item: dropped
        ]
    )
    test = build_interactions(test_events, WEIGHTS, user_ids=train.user_ids, item_ids=train.item_ids)
    assert test.shape == train.shape == (3, 3)
    assert test.user_ids.tolist() == ["u1", "u2", "u3"]
    assert test.csr.toarray().tolist() == [[0, 0, 2], [0, 0, 0], [5, 0, 0]]
    assert test.dropped == {"unknown_user": 1, "unknown_item": 1}


def test_save_load_round_trip(tmp_path, events_factory):
    m = build_interactions(events_factory(_random_events()), WEIGHTS, half_life_days=3, scaling="log")
    path = tmp_path / "interactions.npz"
    m.save(str(path))
    with np.load(path, allow_pickle=False) as npz:
        assert npz["user_ids"].dtype.kind == "U"
    loaded = InteractionMatrix.load(str(path))
    assert (loaded.csr != m.csr).nnz == 0
    assert loaded.csr.dtype == np.float32
    assert loaded.user_ids.tolist() == m.user_ids.tolist()
    assert loaded.item_ids.tolist() == m.item_ids.tolist()
    assert loaded.item_index == m.item_index

    buffer = io.BytesIO()
    m.save(buffer)
    buffer.seek(0)
    assert (InteractionMatrix.load(buffer).csr != m.csr).nnz == 0


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        InteractionMatrix(csr=sp.csr_matrix((2, 2), dtype=np.float32), user_ids=np.array(["a"]), item_ids=["x", "y"])


def test_million_events_sum_correctly():
    n, n_users, n_items = 1_000_000, 50_000, 20_000
    rng = np.random.default_rng(42)
    user_codes = rng.integers(0, n_users, n)
    item_codes = rng.integers(0, n_items, n)
    type_codes = rng.integers(0, 3, n)
    types = np.array(["view", "cart", "purchase"])
    events = pd.DataFrame(
        {
            USER: pd.Categorical.from_codes(user_codes, [f"u:{i}" for i in range(n_users)]),
            ITEM: pd.Categorical.from_codes(item_codes, [f"product:{i}" for i in range(n_items)]),
            EVENT: pd.Categorical.from_codes(type_codes, types),
            TIMESTAMP: T0 + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s"),
            VALUE: np.nan,
        }
    )
    m = build_interactions(events, WEIGHTS)
    w = np.array([1.0, 2.0, 5.0])[type_codes]
    assert m.csr.sum(dtype=np.float64) == pytest.approx(w.sum())
    rows = m.rows_for([f"u:{i}" for i in range(n_users)])
    assert (rows >= 0).all()
    np.testing.assert_allclose(
        np.asarray(m.csr.sum(axis=1)).ravel()[rows], np.bincount(user_codes, weights=w, minlength=n_users)
    )
    cols = m.cols_for([f"product:{i}" for i in range(n_items)])
    np.testing.assert_allclose(
        np.asarray(m.csr.sum(axis=0)).ravel()[cols], np.bincount(item_codes, weights=w, minlength=n_items)
    )
    # one pair checked cell by cell
    u, i = user_codes[0], item_codes[0]
    pair = (user_codes == u) & (item_codes == i)
    assert m.csr[rows[u], cols[i]] == pytest.approx(w[pair].sum())


def test_empty_events_give_an_empty_matrix(events_factory):
    empty = events_factory([]).iloc[:0]
    for scaling in ("none", "log", "bm25"):
        assert build_interactions(empty, WEIGHTS, half_life_days=3, scaling=scaling).shape == (0, 0)
