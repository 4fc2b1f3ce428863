"""Bias report of a recommender: quality per visitor segment, and how exposure spreads over the catalogue.

Pure functions on ranked lists (users x slots of item columns, ``-1`` padded) and CSR truth, like
:mod:`.metrics`:

- :func:`segment_quality`: NDCG@k and recall@k per value of each segment dimension (device, country, ...), next to
  the overall figures;
- :func:`exposure`: share of the catalogue ever recommended, Gini coefficient of the exposure counts, and the mean
  popularity percentile of recommended items vs of the items the users went on to consume (popularity bias);
- :func:`low_segments`: the segments whose quality falls below a share (half) of the overall quality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from scipy.stats import rankdata

from . import metrics as m

#: A segment whose NDCG@k is below this share of the overall NDCG@k is flagged.
LOW_QUALITY_RATIO = 0.5
#: Segments with fewer evaluated users than this are reported but never flagged (too noisy).
MIN_SEGMENT_USERS = 10


def gini(counts: Sequence[float] | np.ndarray) -> float:
    """Gini coefficient of non-negative ``counts`` (one per catalogue item, zeros included): 0 when every item is
    recommended equally often, ``(n - 1) / n`` when one item takes every slot. NaN for no exposure at all."""
    x = np.sort(np.asarray(counts, dtype=np.float64).ravel())
    if (x < 0).any():
        raise ValueError("exposure counts must be non-negative")
    if x.size == 0 or x.sum() <= 0:
        return float("nan")
    n = x.size
    i = np.arange(1, n + 1)
    return float(2.0 * np.sum(i * x) / (n * x.sum()) - (n + 1.0) / n)


def exposure_counts(ranked: np.ndarray, n_items: int, k: int | None = None) -> np.ndarray:
    """How many of the top-``k`` lists each of the ``n_items`` items appears in."""
    ranked = np.asarray(ranked)
    top = ranked if k is None else ranked[:, :k]
    return np.bincount(top[top >= 0].astype(np.int64), minlength=n_items).astype(np.float64)


def popularity_percentiles(item_counts: np.ndarray) -> np.ndarray:
    """Each item's popularity percentile (0 = least, 1 = most popular; ties share their mean rank)."""
    counts = np.asarray(item_counts, dtype=np.float64)
    return (rankdata(counts, method="average") - 1) / max(len(counts) - 1, 1)


def exposure(ranked: np.ndarray, truth: sparse.csr_matrix | None, item_counts: np.ndarray, k: int = 10) -> dict:
    """Exposure of the top-``k`` lists over a catalogue of ``len(item_counts)`` items.

    ``item_counts``: training users per item (popularity). ``truth`` (optional): the items each user consumed in
    the window, for the popularity percentile of consumed items (what the lists would show without bias).
    """
    n_items = len(item_counts)
    counts = exposure_counts(ranked, n_items, k)
    pct = popularity_percentiles(item_counts)
    top = np.asarray(ranked)[:, :k]
    rec = top[top >= 0].astype(np.int64)
    out: dict[str, Any] = {
        "k": int(k),
        "lists": int(len(top)),
        "catalog_items": int(n_items),
        "items_recommended": int((counts > 0).sum()),
        "coverage": float((counts > 0).sum() / n_items) if n_items else float("nan"),
        "gini": gini(counts),
        "recommended_popularity": float(pct[rec].mean()) if rec.size else float("nan"),
    }
    if truth is not None and truth.nnz:
        consumed = sparse.csr_matrix(truth).indices.astype(np.int64)
        out["consumed_popularity"] = float(pct[consumed].mean())
        out["popularity_lift"] = out["recommended_popularity"] - out["consumed_popularity"]
    return out


def segment_quality(ranked: np.ndarray, truth: sparse.csr_matrix, segments: Mapping[str, Sequence[str]],
                    k: int = 10) -> dict[str, Any]:
    """NDCG@k and recall@k overall and per segment: ``segments`` maps a dimension (``"device"``) to one label per
    row of ``ranked``. ``{"overall": {"users", "ndcg@k", "recall@k"}, "segments": {dim: {label: {...}}}}``."""
    ndcg = m.ndcg_at_k_per_user(ranked, truth, k)
    recall = m.recall_at_k_per_user(ranked, truth, k)
    scored = ~np.isnan(ndcg)

    def summary(mask: np.ndarray) -> dict[str, Any]:
        use = mask & scored
        return {"users": int(use.sum()),
                f"ndcg@{k}": float(ndcg[use].mean()) if use.any() else float("nan"),
                f"recall@{k}": float(recall[use].mean()) if use.any() else float("nan")}

    result: dict[str, Any] = {"k": int(k), "overall": summary(np.ones(len(ndcg), dtype=bool)), "segments": {}}
    for dimension, labels in segments.items():
        labels = np.asarray([str(v) for v in labels])
        if len(labels) != len(ndcg):
            raise ValueError(f"segment {dimension!r} has {len(labels)} labels for {len(ndcg)} ranked lists")
        per = {str(v): summary(labels == v) for v in sorted(set(labels.tolist()))}
        result["segments"][dimension] = dict(sorted(per.items(), key=lambda kv: -kv[1]["users"]))
    return result


def low_segments(report: Mapping[str, Any], ratio: float = LOW_QUALITY_RATIO,
                 min_users: int = MIN_SEGMENT_USERS) -> list[dict[str, Any]]:
    """Segments (with at least ``min_users`` users) whose NDCG@k is below ``ratio`` times the overall NDCG@k:
    ``[{"dimension", "segment", "users", "ndcg", "overall"}]``, worst first. Empty when the overall is 0/NaN."""
    k = report.get("k", 10)
    key = f"ndcg@{k}"
    overall = (report.get("overall") or {}).get(key)
    if overall is None or not np.isfinite(overall) or overall <= 0:
        return []
    flagged = []
    for dimension, per in (report.get("segments") or {}).items():
        for label, figures in per.items():
            value = figures.get(key)
            if figures.get("users", 0) >= min_users and value is not None and np.isfinite(value) \
                    and value < ratio * overall:
                flagged.append({"dimension": dimension, "segment": label, "users": figures["users"],
                                "ndcg": value, "overall": overall})
    return sorted(flagged, key=lambda f: f["ndcg"] / overall)
