"""The ranker's feature sums: computed without scipy's sparse products, equal to them bit for bit."""

from __future__ import annotations

import numpy as np
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
