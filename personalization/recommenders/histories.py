"""Ordered visitor histories (item columns, most recent last) as decay-weighted interaction rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

#: Weight of the item ``d`` steps before the end of an anonymous history (the last item weighs 1).
HISTORY_DECAY = 0.8


def decay_weights(length: int) -> np.ndarray:
    """Weights of an ordered history of ``length`` items, most recent last: ``HISTORY_DECAY ** distance``."""
    return HISTORY_DECAY ** np.arange(length - 1, -1, -1, dtype=np.float64)


def history_rows(sequences: Sequence[np.ndarray], n_items: int) -> sparse.csr_matrix:
    """One row per ordered history (item columns, most recent last), weighted ``HISTORY_DECAY ** distance``."""
    rows, cols, vals = [], [], []
    for r, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64)
        if not len(seq):
            continue
        rows.append(np.full(len(seq), r))
        cols.append(seq)
        vals.append(decay_weights(len(seq)))
    if not rows:
        return sparse.csr_matrix((len(sequences), n_items), dtype=np.float32)
    m = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(len(sequences), n_items))
    m = m.tocsr()  # repeated items add up
    m.sort_indices()
    return sparse.csr_matrix(m, dtype=np.float32)
