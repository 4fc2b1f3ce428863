"""A small train/test split with three user groups, each liking its own 20 items."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def random_split(seed=0, n_users=150, n_items=60, per_user=14, test_per_user=5):
    rng = np.random.default_rng(seed)
    train, test = [], []
    for u in range(n_users):
        group = u % 3
        pool = np.arange(group * 20, group * 20 + 20)
        items = rng.choice(pool, size=per_user, replace=False)  # random order
        test.append(items[:test_per_user])
        train.append(items[test_per_user:])

    def csr(lists):
        rows = np.concatenate([np.full(len(x), u) for u, x in enumerate(lists)])
        cols = np.concatenate(lists)
        return sparse.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(n_users, n_items))

    return csr(train), csr(test)
