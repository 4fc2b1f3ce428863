"""The bias report's figures on hand-made lists: Gini, coverage, popularity lift, segment quality, the warning rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from personalization.evaluation.bias import exposure, gini, low_segments, segment_quality


def test_gini_is_zero_for_even_exposure_and_maximal_when_one_item_takes_all():
    assert gini([3, 3, 3, 3]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 8]) == pytest.approx(3 / 4)  # (n - 1) / n
    # [1, 2, 3, 4]: mean absolute difference 1.25, over twice the mean 2.5
    assert gini([4, 1, 3, 2]) == pytest.approx(0.25)
    assert np.isnan(gini([0, 0]))
    with pytest.raises(ValueError):
        gini([1, -1])


def test_exposure_counts_coverage_gini_and_popularity_of_lists_vs_consumption():
    # 5 items, popularity 50, 40, 30, 20, 10 (percentiles 1, .75, .5, .25, 0)
    counts = np.array([50, 40, 30, 20, 10])
    ranked = np.array([[0, 1], [0, 1], [0, -1]])
    truth = sparse.csr_matrix(np.array([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 1, 0, 0]]))
    out = exposure(ranked, truth, counts, k=2)
    assert out["items_recommended"] == 2 and out["coverage"] == pytest.approx(2 / 5)
    assert out["gini"] == pytest.approx(gini([3, 2, 0, 0, 0]))
    assert out["recommended_popularity"] == pytest.approx((1 + 0.75 + 1 + 0.75 + 1) / 5)
    assert out["consumed_popularity"] == pytest.approx((0.25 + 0 + 0.5) / 3)
    assert out["popularity_lift"] == pytest.approx(out["recommended_popularity"] - out["consumed_popularity"])


def test_segment_quality_per_label_and_the_half_of_overall_warning():
    # 4 users: the two mobile ones hit at rank 1, the two desktop ones miss
    ranked = np.array([[0, 1], [1, 2], [3, 4], [3, 4]])
    truth = sparse.csr_matrix(np.array([[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0],
                                        [0, 0, 0, 0, 0, 1], [0, 0, 1, 0, 0, 0]]))
    report = segment_quality(ranked, truth, {"device": ["mobile", "mobile", "desktop", "desktop"]}, k=2)
    assert report["overall"] == {"users": 4, "ndcg@2": 0.5, "recall@2": 0.5}
    assert report["segments"]["device"]["mobile"]["ndcg@2"] == 1.0
    assert report["segments"]["device"]["desktop"]["ndcg@2"] == 0.0
    flagged = low_segments(report, ratio=0.5, min_users=2)
    assert [(f["dimension"], f["segment"]) for f in flagged] == [("device", "desktop")]
    assert low_segments(report, ratio=0.5, min_users=3) == []  # too few visitors to flag


def test_the_warning_rule_is_strictly_below_the_ratio():
    report = {"k": 10, "overall": {"users": 40, "ndcg@10": 0.4},
              "segments": {"country": {"FR": {"users": 20, "ndcg@10": 0.2},  # exactly half: not flagged
                                       "DE": {"users": 20, "ndcg@10": 0.19}}}}
    assert [f["segment"] for f in low_segments(report, ratio=0.5, min_users=10)] == ["DE"]
    assert low_segments({**report, "overall": {"users": 40, "ndcg@10": 0.0}}) == []
    with pytest.raises(ValueError):
        segment_quality(np.array([[0]]), sparse.csr_matrix(np.array([[1]])), {"device": ["a", "b"]}, k=1)
