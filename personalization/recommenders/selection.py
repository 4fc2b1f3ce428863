"""Exact top-k selection for one served visitor without building a dense score row over the catalog.

:meth:`CandidateGenerator._propose` builds ``_score_all``'s dense (users x items) block and passes over it: right
for the batches of training and evaluation, but for one visitor on a 100k-item catalog the block and its passes cost
more than the items that can win. Two families can find their winners from far fewer numbers, exactly (same items,
same order: by descending score, ties to the smaller column, as :func:`~personalization.recommenders.base.top_n`):

* :func:`top_of_sparse`: item-kNN scores are a sparse product (the items the history's neighbours reach); the top
  is read from its stored entries, not from a pass over every item.
* :func:`top_by_norm_bound`: factor models score ``u . v``; by Cauchy-Schwarz no item scores above
  ``|u| |v|``, so items are visited by decreasing ``|v|`` until the k-th best score found exceeds that bound
  for every item not yet visited. Implicit-feedback factors are very unequal in length (popular items get long
  vectors, unseen ones none): on the serving benchmark's 100k-item catalog 1-3% of the items are scored.

numpy has no top-k or maximum-inner-product search; the libraries that do (faiss, hnswlib) are approximate indexes
with their own build step, hence these few lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

#: Batches up to this many rows select from few numbers: a served request, and the system's chunks on catalogs
#: so large that a chunk holds few users; larger batches build the dense block, one matrix product for every row.
PRUNED_MAX_ROWS = 64
#: Items scored first by :func:`top_by_norm_bound`; the visited prefix then grows 4x until the bound holds or the
#: contiguous head is used up.
FIRST_BLOCK = 2048
#: Rows of the norm ranking kept contiguous (at least; or 1/16 of the catalog), see :class:`NormRanking`.
HEAD_ROWS = 8192
#: Relative slack on the Cauchy-Schwarz bound for float32 rounding of the scores (|error| << 1e-5 |u| |v|).
_BOUND_SLACK = 1e-5


def best_of(cols: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` of ``cols`` by descending score, ties to the smaller column (``-inf`` and NaN never chosen)."""
    ok = scores > -np.inf  # also drops NaN
    cols, scores = cols[ok], scores[ok]
    if len(scores) > k > 0:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        above = scores > kth
        tied = cols[scores == kth]
        need = k - int(above.sum())
        if len(tied) > need:  # many equal scores (a zero vector...): the smallest columns, without sorting them all
            tied = np.partition(tied, need - 1)[:need]
        cols = np.concatenate([cols[above], tied])
        scores = np.concatenate([scores[above], np.full(len(tied), kth, dtype=scores.dtype)])
    return cols[np.lexsort((cols, -scores))[:k]]


def excluded_mask(n_items: int, exclude: np.ndarray | None) -> np.ndarray:
    """Boolean mask of the ``exclude`` columns inside the catalog (others ignored)."""
    mask = np.zeros(n_items, dtype=bool)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64).ravel()
        mask[exclude[(exclude >= 0) & (exclude < n_items)]] = True
    return mask


def row_mask(excluded: np.ndarray, seen: sparse.csr_matrix | None, r: int) -> tuple[np.ndarray, int]:
    """The columns row ``r`` must not get: ``excluded`` plus its ``seen`` columns inside the catalog (like
    ``top_n``, a wider history matrix is tolerated; a copy only when there are some), and how many seen there are."""
    if seen is None:
        return excluded, 0
    row = seen.indices[seen.indptr[r]:seen.indptr[r + 1]]
    row = row[row < len(excluded)]
    if not len(row):
        return excluded, 0
    mask = excluded.copy()
    mask[row] = True
    return mask, len(row)


def top_of_sparse(scores: sparse.csr_matrix, k: int, seen: sparse.csr_matrix | None, exclude: np.ndarray | None,
                  blocked: np.ndarray | None) -> np.ndarray:
    """Per row, the ``k`` best stored entries of a sparse score matrix (absent entries count as ``-inf``), never
    an item of the row of ``seen`` or of ``exclude``, nothing for ``blocked`` rows. int32 ``(rows, k)``, -1 pads."""
    n_rows, n_items = scores.shape
    ids = np.full((n_rows, k), -1, dtype=np.int32)
    if k == 0:
        return ids
    excluded = excluded_mask(n_items, exclude)
    for r in range(n_rows):
        if blocked is not None and blocked[r]:
            continue
        start, end = scores.indptr[r], scores.indptr[r + 1]
        cols = scores.indices[start:end].astype(np.int64)
        vals = np.asarray(scores.data[start:end], dtype=np.float32)
        skip, _ = row_mask(excluded, seen, r)
        ok = ~skip[cols]
        best = best_of(cols[ok], vals[ok], k)
        ids[r, :len(best)] = best
    return ids


@dataclass(frozen=True)
class NormRanking:
    """Item rows by decreasing vector length (ties: smaller row first), those lengths (float64, plus a final 0),
    and a contiguous copy of the first ``head`` rows' vectors in that order: scoring a prefix of the ranking is then
    a matrix-vector product over a slice, not a gather of scattered rows (3x slower). The head holds what almost
    every visitor needs (a few % of the items); a scan the bound has not stopped within it scores every item."""

    order: np.ndarray
    lengths: np.ndarray
    head: np.ndarray

    @classmethod
    def of(cls, factors: np.ndarray) -> NormRanking:
        lengths = np.linalg.norm(np.asarray(factors, dtype=np.float64), axis=1)
        order = np.argsort(-lengths, kind="stable")
        head = min(len(order), max(HEAD_ROWS, len(order) // 16))
        return cls(order, np.append(lengths[order], 0.0), np.ascontiguousarray(factors[order[:head]]))


def top_by_norm_bound(vectors: np.ndarray, factors: np.ndarray, ranking: NormRanking, k: int,
                      seen: sparse.csr_matrix | None, exclude: np.ndarray | None,
                      blocked: np.ndarray | None) -> np.ndarray:
    """Per row of ``vectors``, the ``k`` items with the largest ``vectors[r] @ factors[item]`` (exact), never an
    item of the row of ``seen`` or of ``exclude``, nothing for ``blocked`` rows; ``ranking`` is
    ``NormRanking.of(factors)``. int32 ``(rows, k)``, -1 pads.

    When the bound has not stopped the scan within the contiguous head (vectors of similar lengths, a k-th score at
    or below 0, a zero vector), the row is scored in one product over every item, as the dense path would: the
    bound never costs more than the head's share of the catalog on top of it."""
    n_rows, n_items = len(vectors), len(ranking.order)
    ids = np.full((n_rows, k), -1, dtype=np.int32)
    if k == 0 or n_items == 0:
        return ids
    excluded = excluded_mask(n_items, exclude)
    head = len(ranking.head)
    for r in range(n_rows):
        if blocked is not None and blocked[r]:
            continue
        u = np.asarray(vectors[r], dtype=np.float32)
        reach = float(np.linalg.norm(u.astype(np.float64))) * (1.0 + _BOUND_SLACK)
        skip, n_seen = row_mask(excluded, seen, r)
        visited, count, done = 0, 0, False
        size = min(head, max(FIRST_BLOCK, 4 * (k + n_seen)))
        found_cols: list[np.ndarray] = []
        found_scores: list[np.ndarray] = []
        while visited < head:
            cols = ranking.order[visited:size]
            scores = ranking.head[visited:size] @ u
            ok = ~skip[cols]
            found_cols.append(cols[ok])
            found_scores.append(scores[ok])
            count += int(ok.sum())
            visited = size
            if visited >= n_items:
                done = True
                break
            if count >= k:
                merged = np.concatenate(found_scores)
                kth = float(np.partition(merged, count - k)[count - k])
                if reach * ranking.lengths[visited] < kth:  # no unvisited item can reach the k-th score
                    done = True
                    break
            size = min(head, 4 * size)
        if done:
            best = best_of(np.concatenate(found_cols).astype(np.int64), np.concatenate(found_scores), k)
        else:  # the bound could not help: every item, in one product
            cols = np.flatnonzero(~skip)
            best = best_of(cols, (factors @ u)[cols], k)
        ids[r, :len(best)] = best
    return ids
