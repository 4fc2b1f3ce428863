"""The one contract every candidate generator honours, run against every family in FAMILIES."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from personalization.recommenders import FAMILIES, CandidateGenerator
from personalization.recommenders.selection import PRUNED_MAX_ROWS
from tests.recommenders.planted import COLD_ITEM, N_ITEMS, N_USERS, SPECS

ALL_USERS = np.arange(N_USERS)


def test_every_family_is_covered():
    assert set(SPECS) == set(FAMILIES)
    for name, cls in FAMILIES.items():
        assert issubclass(cls, CandidateGenerator)
        assert cls.family == name


class TestCandidateGeneratorContract:
    def test_fit_returns_self_and_init_stores_params_only(self, spec, planted):
        model = spec.make(0)
        assert not [k for k in vars(model) if k.endswith("_")]
        assert spec.fit(model, planted) is model
        assert model.n_items_ == N_ITEMS

    def test_shapes_and_dtypes(self, fitted, planted):
        ids, scores = fitted.recommend(ALL_USERS, planted.user_items, n=5)
        assert ids.shape == scores.shape == (N_USERS, 5)
        assert ids.dtype == np.int32 and scores.dtype == np.float32
        valid = ids >= 0
        assert np.all(ids[valid] < N_ITEMS)
        # best first
        finite = np.where(valid, scores, -np.inf)
        assert np.all(np.diff(finite, axis=1) <= 1e-6)

    def test_padding_when_n_exceeds_catalogue(self, fitted, planted):
        ids, scores = fitted.recommend(ALL_USERS[:3], planted.user_items[:3], n=N_ITEMS + 5)
        assert ids.shape == (3, N_ITEMS + 5)
        # at least the seen items + the extra slots are padding
        assert np.all(ids[:, N_ITEMS:] == -1)
        assert np.all(np.isneginf(scores[ids == -1]))
        assert np.all(np.isfinite(scores[ids >= 0]))
        for row in ids:
            valid = row[row >= 0]
            assert len(np.unique(valid)) == len(valid)
            # padding only at the end
            assert np.all(row[len(valid) :] == -1)

    def test_filter_seen(self, fitted, planted):
        x = planted.user_items
        ids, _ = fitted.recommend(ALL_USERS, x, n=N_ITEMS)
        for u in ALL_USERS:
            seen = x.indices[x.indptr[u] : x.indptr[u + 1]]
            assert not np.isin(ids[u], seen).any()

    def test_exclude(self, fitted, planted):
        exclude = np.array([0, 1, 12, 13, 25])
        ids, _ = fitted.recommend(ALL_USERS, planted.user_items, n=N_ITEMS, exclude=exclude)
        assert not np.isin(ids, exclude).any()

    def test_filter_seen_false_can_return_seen(self, fitted, planted):
        ids, _ = fitted.recommend(ALL_USERS[:1], planted.user_items[:1], n=N_ITEMS, filter_seen=False)
        assert np.isin(planted.user_items[0].indices, ids[0]).any()

    def test_batch_equals_one_by_one(self, fitted, planted):
        ids, scores = fitted.recommend(ALL_USERS, planted.user_items, n=7)
        for u in (0, 5, 21, 39):
            one_ids, one_scores = fitted.recommend(np.array([u]), planted.user_items[u], n=7)
            np.testing.assert_allclose(one_scores[0], scores[u], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(one_ids[0], ids[u])

    def test_unknown_user_row(self, fitted, planted):
        history = planted.user_items[[3, 30]]
        ids, _ = fitted.recommend(np.array([-1, -1]), history, n=5)
        assert ids.shape == (2, 5)
        assert (ids >= 0).any()
        for row, u in zip(ids, (3, 30), strict=True):
            seen = planted.user_items[u].indices
            assert not np.isin(row, seen).any()

    def test_unknown_user_with_new_history(self, fitted):
        history = sparse.csr_matrix(([1.0, 2.0], ([0, 0], [2, 5])), shape=(1, N_ITEMS), dtype=np.float32)
        ids, _ = fitted.recommend(np.array([-1]), history, n=3)
        assert not np.isin(ids, [2, 5]).any()

    def test_bad_queries_raise(self, fitted, planted):
        with pytest.raises(ValueError, match="one row per entry"):
            fitted.recommend(ALL_USERS[:2], planted.user_items[:3])
        with pytest.raises(ValueError, match="columns"):
            fitted.recommend(ALL_USERS[:1], sparse.csr_matrix((1, N_ITEMS + 1), dtype=np.float32))
        with pytest.raises(IndexError):
            fitted.recommend(np.array([-2]), planted.user_items[:1])

    def test_score_items_matches_recommend(self, fitted, planted):
        ids, scores = fitted.recommend(ALL_USERS, planted.user_items, n=5)
        got = fitted.score_items(ALL_USERS, planted.user_items, ids)
        valid = ids >= 0
        np.testing.assert_allclose(got[valid], scores[valid], rtol=1e-5, atol=1e-6)
        assert np.all(np.isneginf(got[~valid]))

    def test_similar_items_excludes_self(self, fitted):
        items = np.arange(N_ITEMS)
        ids, scores = fitted.similar_items(items, n=5)
        assert ids.shape == scores.shape == (N_ITEMS, 5)
        assert ids.dtype == np.int32 and scores.dtype == np.float32
        assert not (ids == items[:, None]).any()

    def test_save_load_round_trip(self, fitted, planted, tmp_path):
        path = tmp_path / "model.npz"
        fitted.save(path)
        loaded = type(fitted).load(path)
        assert loaded.get_params() == fitted.get_params()
        again = CandidateGenerator.load(str(path))  # dispatch on the stored class name
        assert type(again) is type(fitted)
        for model in (loaded, again):
            for rows in (ALL_USERS, np.full(N_USERS, -1)):
                a = fitted.recommend(rows, planted.user_items, n=6)
                b = model.recommend(rows, planted.user_items, n=6)
                np.testing.assert_array_equal(a[0], b[0])
                np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
            np.testing.assert_array_equal(fitted.similar_items([0, 13], n=4)[0], model.similar_items([0, 13], n=4)[0])
        # no pickle inside: loadable with allow_pickle=False
        with np.load(path, allow_pickle=False) as data:
            assert all(data[k].dtype != object for k in data.files)

    def test_deterministic_with_random_state(self, spec, planted, fitted):
        again = spec.fit(spec.make(42), planted)
        a = fitted.recommend(ALL_USERS, planted.user_items, n=6)
        b = again.recommend(ALL_USERS, planted.user_items, n=6)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5)

    def test_learns_planted_blocks(self, spec, fitted, planted):
        if not spec.learns_structure:
            # Popularity is the same for everyone by design: it must rank the most interacted items first.
            ids, _ = fitted.recommend(ALL_USERS, planted.user_items, n=4, filter_seen=False)
            counts = np.asarray((planted.user_items > 0).sum(axis=0)).ravel()
            assert np.all(counts[ids[:, 0]] == counts.max())
            return
        ids, _ = fitted.recommend(ALL_USERS, planted.user_items, n=4)
        blocks = planted.item_block[np.where(ids >= 0, ids, 0)]
        own = (blocks == planted.user_block[:, None]) & (ids >= 0)
        assert own.sum() / max(1, (ids >= 0).sum()) >= 0.9
        sim_ids, _ = fitted.similar_items(np.array([0, 12]), n=3)
        assert np.mean(planted.item_block[sim_ids[0][sim_ids[0] >= 0]] == 0) >= 0.66
        assert np.mean(planted.item_block[sim_ids[1][sim_ids[1] >= 0]] == 1) >= 0.66


def test_content_scores_cold_items(planted):
    model = SPECS["content"].fit(SPECS["content"].make(None), planted)
    ids, _ = model.similar_items(np.array([0]), n=N_ITEMS)
    assert COLD_ITEM in ids[0][:12]
    scores = model.score_items(ALL_USERS[:1], planted.user_items[:1], np.array([[COLD_ITEM, 20]]))
    assert scores[0, 0] > scores[0, 1]


class TestProposals:
    """``_propose`` (what the system's candidates use) gives what dense scoring + ``top_n`` gives, for every
    family, including the families with a shortcut (popularity reads one shared ranking)."""

    def _dense(self, fitted, rows, x, k, exclude, blocked):
        from personalization.recommenders.base import top_n

        dense = np.array(fitted._score_all(rows, x), dtype=np.float32)
        proposed = dense.copy()
        proposed[blocked] = -np.inf
        return top_n(proposed, k, seen=x, exclude=exclude)[0], dense

    @pytest.mark.parametrize("batch", ["training", "served"])
    def test_proposals_and_their_scores_match_dense_scoring(self, fitted, planted, batch):
        # a served request is a batch of at most PRUNED_MAX_ROWS users: some families then skip the dense block
        users = ALL_USERS if batch == "training" else np.array([3, 0, 7, 30, 11, 64, 99, 5])
        assert (len(users) > PRUNED_MAX_ROWS) == (batch == "training")
        x = planted.user_items[users]
        exclude = np.array([0, 13, 25])
        blocked = np.isin(users, [3, 30])
        ids, scores_at = fitted._propose(users, x, 6, x, exclude, blocked)
        expected, dense = self._dense(fitted, users, x, 6, exclude, blocked)
        for u in range(len(users)):  # the same items; the order may differ only among equal scores
            got, want = ids[u][ids[u] >= 0], expected[u][expected[u] >= 0]
            assert len(got) == len(want)
            assert np.allclose(np.sort(dense[u][got]), np.sort(dense[u][want]), rtol=1e-6, atol=0)
            assert not np.isin(got, exclude).any()
            assert not np.isin(got, x.indices[x.indptr[u]:x.indptr[u + 1]]).any()
        assert (ids[blocked] == -1).all()
        cols = np.tile(np.arange(N_ITEMS), (len(users), 1))
        # a product over the candidates only may round the last bit differently from the dense one
        assert np.allclose(scores_at(cols), dense, rtol=1e-6, atol=1e-7, equal_nan=True)
        assert np.array_equal(np.isneginf(scores_at(cols)), np.isneginf(dense))

    def test_ties_go_to_the_smaller_column(self, planted):
        from personalization.recommenders.base import ranked_top, ranking_of

        scores = np.array([1.0, 3.0, 3.0, np.nan, 3.0, 2.0, -np.inf, 2.0])
        order, ordered, _ = ranking_of(scores)
        seen = sparse.csr_matrix(([1.0], ([0], [2])), shape=(2, len(scores)))
        ids = ranked_top(order, ordered, 2, 7, seen, np.array([5]), None)
        assert ids[0].tolist() == [1, 4, 7, 0, -1, -1, -1]  # 2 seen, 5 excluded, NaN and -inf never proposed
        assert ids[1].tolist() == [1, 2, 4, 7, 0, -1, -1]


def test_item_knn_similarities_at_given_columns_match_the_dense_ones(planted):
    from personalization.recommenders.neighbors import ItemKNNRecommender

    model = ItemKNNRecommender().fit(planted.user_items)
    rows = np.array([5, 0, 17, 28, 3])
    cols = np.array([1, 0, 13, 28, 11, 2])
    dense = np.array(model._similar_all(rows), dtype=np.float32)[:, cols]
    assert np.array_equal(model._similar_at(rows, cols), dense)


def test_transitions_follow_the_click_order_not_co_occurrence():
    model = FAMILIES["transitions"](k=5).fit(sparse.csr_matrix((1, 6), dtype=np.float32),
                                             sessions=[[0, 1, 2], [0, 1, 3], [0, 1], [2, 2, 4], [5, 0]])
    sim = model.similarity_.toarray()
    assert sim[0].argmax() == 1 and sim[0, 1] == 1.0  # 0 is always followed by 1
    assert sim[1, 0] == 0.0  # directed: 1 never led back to 0
    assert sim[1, 2] == sim[1, 3] == 0.5
    assert sim[2, 2] == 0.0 and sim[2, 4] == 1.0  # a reload of the same item is no transition
    assert not sim[4].any()


def test_session_knn_scores_the_items_of_the_most_similar_recent_visits():
    sessions = [[0, 1], [0, 1, 2], [3, 4], [0, 5], [0, 1, 6]]
    model = FAMILIES["sknn"](k=2, sample_size=10, idf=False).fit(sparse.csr_matrix((1, 7), dtype=np.float32),
                                                                sessions=sessions)
    history = sparse.csr_matrix(([0.8, 1.0], ([0, 0], [0, 1])), shape=(1, 7), dtype=np.float32)
    scores = model._score_all(np.array([-1]), history)[0]
    # the two nearest visits share both items: [0, 1] (size 2) and then [0, 1, 2] / [0, 1, 6] (size 3, a tie)
    assert np.isfinite(scores[[0, 1]]).all() and scores[0] == scores[1]
    assert np.isfinite(scores[2]) != np.isfinite(scores[6])  # k = 2: only one of the tied visits votes
    assert not np.isfinite(scores[[3, 4, 5]]).any()  # [0, 5] is less similar, [3, 4] shares nothing
    # V-SKNN's recent sample: with one visit per item, item 0 is compared with its last visit only ([0, 1, 6])
    recent = FAMILIES["sknn"](k=5, sample_size=1, idf=False).fit(sparse.csr_matrix((1, 7), dtype=np.float32),
                                                                sessions=sessions)
    one = sparse.csr_matrix(([1.0], ([0], [0])), shape=(1, 7), dtype=np.float32)
    assert np.flatnonzero(np.isfinite(recent._score_all(np.array([-1]), one)[0])).tolist() == [0, 1, 6]


def test_embedding_similarities_at_given_columns_match_the_dense_ones(planted):
    """item2vec and content read a request's few similarities (the reasons, the last-item features) from the
    candidates' columns only: the same values as the whole catalogue's rows, items without a vector -inf."""
    from personalization.recommenders.content import ContentRecommender
    from personalization.recommenders.item2vec import Item2VecRecommender

    sessions = [s for s in planted.sessions if 27 not in s and 28 not in s]  # 27-29: no vector
    item2vec = Item2VecRecommender(vector_size=8, epochs=5, sample=0.0, random_state=1).fit(
        planted.user_items, sessions=sessions)
    text = [f"block{b} item{i}" if i < 27 else "" for i, b in enumerate(planted.item_block)]
    content = ContentRecommender().fit(planted.user_items, item_text=text)
    rows = np.array([5, 0, 17, 28, 3])
    cols = np.array([1, 0, 13, 28, 11, 2, 29])
    for model in (item2vec, content):
        dense = np.array(model._similar_all(rows), dtype=np.float32)[:, cols]
        assert np.isneginf(dense[3]).all() and np.isneginf(dense[:, [3, 6]]).all()
        np.testing.assert_allclose(model._similar_at(rows, cols), dense, rtol=1e-5, atol=1e-6)


def test_row_scaling_matches_sklearn_normalize():
    from sklearn.preprocessing import normalize

    from personalization.recommenders.base import l1_csr_rows, unit_csr_rows, unit_rows

    X = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    X[2] = 0.0
    np.testing.assert_allclose(unit_rows(X), normalize(X), rtol=1e-6)
    S = sparse.random(6, 40, density=0.2, format="csr", dtype=np.float32, random_state=1)
    np.testing.assert_allclose(unit_csr_rows(S).toarray(), normalize(S).toarray(), rtol=1e-6)
    np.testing.assert_allclose(l1_csr_rows(S).toarray(), normalize(S, norm="l1").toarray(), rtol=1e-6)
