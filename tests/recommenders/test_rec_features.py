"""The ranker's feature sums: computed without scipy's sparse products, equal to them bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
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
