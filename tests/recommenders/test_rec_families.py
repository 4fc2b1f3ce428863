"""Family-specific behaviour beyond the shared contract."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from personalization.recommenders import (
    ALSRecommender,
    BPRRecommender,
    ContentRecommender,
    EASERecommender,
    Item2VecRecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    top_n,
)
from tests.recommenders.planted import N_ITEMS, N_USERS


def test_top_n_filters_pads_and_breaks_ties_by_column():
    scores = np.array([[0.5, 0.9, 0.9, -np.inf, np.nan], [1.0, 2.0, 3.0, 4.0, 5.0]], dtype=np.float32)
    seen = sparse.csr_matrix(np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=np.float32))
    ids, out = top_n(scores, 4, seen=seen, exclude=np.array([3]))
    np.testing.assert_array_equal(ids, [[1, 2, 0, -1], [2, 1, 0, -1]])
    np.testing.assert_array_equal(out, np.array([[0.9, 0.9, 0.5, -np.inf], [3, 2, 1, -np.inf]], dtype=np.float32))
    assert top_n(np.zeros((2, 3)), 0)[0].shape == (2, 0)


def _large_rows(kind: str, rng: np.random.Generator, n: int = 60_000) -> np.ndarray:
    if kind == "uniform":
        return rng.random((3, n), dtype=np.float32)
    if kind == "ties":
        return np.round(rng.random((3, n)), 2).astype(np.float32)
    rows = np.full((3, n), -np.inf, dtype=np.float32)
    finite = {"sparse": 3000, "few finite": 30, "nan": 2000}[kind]
    rows[:, rng.choice(n, finite, replace=False)] = rng.random(finite)
    if kind == "nan":
        rows[:, rng.choice(n, 5000, replace=False)] = np.nan
    return rows


@pytest.mark.parametrize("kind", ["uniform", "ties", "sparse", "few finite", "nan"])
def test_top_n_on_large_catalogs_equals_a_full_sort(kind):
    """Large rows take the sampled-threshold path; the result must be the exact top n of a full sort."""
    rng = np.random.default_rng(3)
    rows = _large_rows(kind, rng)
    seen = sparse.random(3, rows.shape[1], density=0.001, format="csr", random_state=4)
    ids, out = top_n(rows.copy(), 70, seen=seen, exclude=np.arange(10))
    masked = np.where(np.isnan(rows), -np.inf, rows)
    masked[seen.toarray() > 0] = -np.inf
    masked[:, :10] = -np.inf
    expected = -np.sort(-masked, axis=1)[:, :70]
    np.testing.assert_array_equal(out, expected)
    valid = out > -np.inf
    assert ((ids >= 0) == valid).all()
    np.testing.assert_array_equal(np.take_along_axis(masked, np.where(valid, ids, 0), axis=1)[valid], out[valid])


def test_ease_equals_hand_computed_closed_form():
    x = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 0]], dtype=np.float32)
    l2 = 2.0
    model = EASERecommender(l2=l2).fit(sparse.csr_matrix(x))
    g = x.T.astype(np.float64) @ x + l2 * np.eye(4)
    p = np.linalg.inv(g)
    b = np.eye(4) - p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(model.B_, b, rtol=1e-5, atol=1e-7)
    # scores are x @ B
    got = model.score_items(np.arange(5), sparse.csr_matrix(x), np.tile(np.arange(4), (5, 1)))
    np.testing.assert_allclose(got, x @ b, rtol=1e-5, atol=1e-6)


def test_ease_fit_each_equals_a_fit_per_l2():
    x = sparse.csr_matrix(np.random.default_rng(0).random((30, 8)) < 0.3, dtype=np.float32)
    base = EASERecommender(l2=7.0, max_items=100)
    fitted = list(base.fit_each(x, [1.0, 10.0, 100.0]))
    assert [m.l2 for m in fitted] == [1.0, 10.0, 100.0] and all(m.max_items == 100 for m in fitted)
    for model in fitted:
        np.testing.assert_allclose(model.B_, EASERecommender(l2=model.l2).fit(x).B_, rtol=1e-5, atol=1e-7)
    assert not hasattr(base, "B_")  # the copies are fitted, not the model asked
    with pytest.raises(ValueError, match="l2 must be > 0"):
        list(base.fit_each(x, [0.0]))


def test_ease_refuses_too_many_items():
    with pytest.raises(ValueError, match="max_items"):
        EASERecommender(max_items=10).fit(sparse.csr_matrix((3, 11), dtype=np.float32))


def test_popularity_segments_trending_and_decay():
    x = sparse.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]], dtype=np.float32))
    model = PopularityRecommender().fit(x, recent_counts=[0, 5, 1, 0], older_counts=[4, 1, 1, 0])
    np.testing.assert_array_equal(model.recommend_popular(2)[0], [0, 3])
    model.fit_segments(x, np.array(["FR", "FR", "DE", "DE"]))
    np.testing.assert_array_equal(model.recommend_for_segment("FR", 2)[0], [0, 1])
    np.testing.assert_array_equal(model.recommend_for_segment("DE", 2)[0], [3, 2])
    np.testing.assert_array_equal(model.recommend_for_segment("XX", 1)[0], [0])  # global fallback
    # zero-count items still rank (score 0), after the counted ones, ties by column
    np.testing.assert_array_equal(model.recommend_for_segment("DE", 2, exclude=[3])[0], [2, 0])
    assert model.recommend_trending(1)[0][0] == 1
    # decay: the old interactions with item 0 count for little
    ages = np.array([100.0, 0.0, 100.0, 0.0, 0.0, 0.0])  # aligned with x.data
    decayed = PopularityRecommender(decay_half_life_days=10).fit(x, ages_days=ages)
    assert decayed.recommend_popular(1)[0][0] == 3
    with pytest.raises(ValueError, match="ages_days"):
        PopularityRecommender(decay_half_life_days=10).fit(x)


def test_popularity_segments_survive_save_load(tmp_path):
    x = sparse.csr_matrix(np.eye(3, dtype=np.float32))
    model = PopularityRecommender().fit_segments(x, ["mobile", "desktop", "mobile"])
    model.save(tmp_path / "pop")
    loaded = PopularityRecommender.load(tmp_path / "pop")
    np.testing.assert_array_equal(loaded.recommend_for_segment("mobile", 3)[0], [0, 2, 1])


@pytest.mark.parametrize("similarity", ["cosine", "bm25", "tfidf"])
def test_itemknn_similarities(planted, similarity):
    model = ItemKNNRecommender(k=10, similarity=similarity, num_threads=1).fit(planted.user_items)
    assert model.similarity_.shape == (N_ITEMS, N_ITEMS)
    ids, _ = model.recommend(np.arange(N_USERS), planted.user_items, n=3)
    own = planted.item_block[np.where(ids >= 0, ids, 0)] == planted.user_block[:, None]
    assert own[ids >= 0].mean() > 0.9
    with pytest.raises(ValueError, match="similarity"):
        ItemKNNRecommender(similarity="jaccard").fit(planted.user_items)


def test_als_unknown_user_recomputed_close_to_training_factors(planted):
    model = ALSRecommender(factors=4, regularization=5.0, iterations=15, random_state=0).fit(planted.user_items)
    assert model.user_factors_.shape == (N_USERS, 4) and model.item_factors_.shape == (N_ITEMS, 4)
    emb = model.user_embedding(planted.user_items[:5])
    cos = np.sum(emb * model.user_factors_[:5], axis=1) / (
        np.linalg.norm(emb, axis=1) * np.linalg.norm(model.user_factors_[:5], axis=1)
    )
    assert np.all(cos > 0.99)


def test_bpr_unknown_user_is_mean_of_history_factors(planted):
    model = BPRRecommender(factors=4, iterations=20, random_state=0).fit(planted.user_items)
    assert model.item_factors_.shape == (N_ITEMS, 5)  # implicit's bias column
    row = sparse.csr_matrix(([1.0, 3.0], ([0, 0], [2, 5])), shape=(1, N_ITEMS), dtype=np.float32)
    expected = (model.item_factors_[2] + 3 * model.item_factors_[5]) / 4
    expected[-1] = 1.0
    np.testing.assert_allclose(model.user_embedding(row)[0], expected, rtol=1e-5)


def test_item2vec_sessions_and_unseen_items(planted):
    sessions = [s for s in planted.sessions if 27 not in s and 28 not in s]
    model = Item2VecRecommender(vector_size=8, epochs=10, sample=0.0, random_state=1).fit(
        planted.user_items, sessions=sessions
    )
    assert not model.has_vector_[27] and not model.has_vector_[28] and not model.has_vector_[29]
    ids, scores = model.recommend_session(np.array([0, 1, 2]), n=N_ITEMS)
    assert not np.isin(ids, [0, 1, 2, 27, 28, 29]).any()
    assert np.mean(planted.item_block[ids[:5]] == 0) >= 0.8
    vec = model.session_vector(np.array([0, 12]))
    # the most recent item weighs more
    v0, v12 = model.item_vectors_[0], model.item_vectors_[12]
    np.testing.assert_allclose(vec, (0.9 * v0 + v12) / 1.9, rtol=1e-5)
    s = model.score_items(np.array([-1]), planted.user_items[:1], np.array([[29, 3]]))
    assert np.isneginf(s[0, 0]) and np.isfinite(s[0, 1])
    with pytest.raises(ValueError, match="item columns"):
        Item2VecRecommender().fit(planted.user_items, sessions=[[0, N_ITEMS]])


def test_content_needs_text_or_attributes(planted):
    with pytest.raises(ValueError, match="item_text"):
        ContentRecommender().fit(planted.user_items)
    with pytest.raises(ValueError, match="entries"):
        ContentRecommender().fit(planted.user_items, item_text=["a"])
    blank = ContentRecommender().fit(planted.user_items, item_text=[""] * N_ITEMS)  # no vocabulary: no vectors
    assert blank.item_vectors_.nnz == 0 and (blank.similar_items(np.array([0]), n=3)[0] == -1).all()
    only_attrs = ContentRecommender().fit(planted.user_items, item_attributes=planted.item_attributes)
    ids, _ = only_attrs.similar_items(np.array([0]), n=3)
    assert np.all(planted.item_block[ids[0][ids[0] != 29]] == 0)


def test_unfitted_model_raises():
    with pytest.raises(RuntimeError, match="fit"):
        EASERecommender().recommend(np.array([0]), sparse.csr_matrix((1, 3), dtype=np.float32))
