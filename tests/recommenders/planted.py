"""Synthetic data with planted structure, and how to build and fit each candidate-generator family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from personalization.recommenders import FAMILIES

N_USERS = 120
N_ITEMS = 30
BLOCK_A = np.arange(0, 12)
BLOCK_B = np.arange(12, 24)
COLD_ITEM = 29  # no interactions at all


@dataclass
class Planted:
    user_items: sparse.csr_matrix
    user_block: np.ndarray  # 0 = likes block A, 1 = likes block B
    item_block: np.ndarray  # 0 = A, 1 = B, -1 = noise
    item_text: list[str]
    item_attributes: pd.DataFrame
    sessions: list[list[int]]


def make_planted(seed: int = 0) -> Planted:
    """Users 0-19 like items 0-11, users 20-39 like items 12-23; items 24-28 are noise, 29 is cold."""
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    user_block = np.repeat([0, 1], N_USERS // 2)
    sessions = []
    for u in range(N_USERS):
        block = BLOCK_A if user_block[u] == 0 else BLOCK_B
        liked = rng.choice(block, size=6, replace=False)
        if rng.random() < 0.1:
            liked = np.append(liked, rng.integers(24, 29))
        rows += [u] * len(liked)
        cols += list(liked)
        vals += list(rng.integers(1, 5, size=len(liked)).astype(np.float32))
        sessions.append([int(c) for c in rng.permutation(liked)])
    user_items = sparse.csr_matrix(
        (np.array(vals, dtype=np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS), dtype=np.float32
    )
    item_block = np.full(N_ITEMS, -1)
    item_block[BLOCK_A] = 0
    item_block[BLOCK_B] = 1
    words = {0: "alpha garden outdoor", 1: "beta kitchen indoor", -1: "misc thing"}
    item_text = [f"{words[b]} item{i}" for i, b in enumerate(item_block)]
    item_attributes = pd.DataFrame(
        {"category": ["garden" if b == 0 else "kitchen" if b == 1 else None for b in item_block]}
    )
    # the cold item is a garden item by content
    item_text[COLD_ITEM] = "alpha garden outdoor new"
    item_attributes.loc[COLD_ITEM, "category"] = "garden"
    return Planted(user_items, user_block, item_block, item_text, item_attributes, sessions)


@dataclass
class Spec:
    name: str
    make: Callable[[int | None], object]  # random_state -> unfitted model
    fit: Callable[[object, Planted], object]  # (model, data) -> fitted model
    learns_structure: bool = True


def _plain(model, data):
    return model.fit(data.user_items)


SPECS = {
    "popularity": Spec("popularity", lambda rs: FAMILIES["popularity"](), _plain, learns_structure=False),
    "itemknn": Spec("itemknn", lambda rs: FAMILIES["itemknn"](k=20, num_threads=1), _plain),
    "content": Spec(
        "content",
        lambda rs: FAMILIES["content"](),
        lambda m, d: m.fit(d.user_items, item_text=d.item_text, item_attributes=d.item_attributes),
    ),
    "als": Spec(
        "als", lambda rs: FAMILIES["als"](factors=4, iterations=10, regularization=5.0, random_state=rs), _plain
    ),
    "bpr": Spec(
        "bpr",
        lambda rs: FAMILIES["bpr"](factors=4, iterations=100, learning_rate=0.01, random_state=rs),
        _plain,
    ),
    "item2vec": Spec(
        "item2vec",
        lambda rs: FAMILIES["item2vec"](vector_size=8, window=5, epochs=10, sample=0.0, random_state=rs),
        lambda m, d: m.fit(d.user_items, sessions=d.sessions),
    ),
    "ease": Spec("ease", lambda rs: FAMILIES["ease"](l2=50.0), _plain),
    "transitions": Spec(
        "transitions", lambda rs: FAMILIES["transitions"](k=20), lambda m, d: m.fit(d.user_items, sessions=d.sessions)
    ),
    "sknn": Spec(
        "sknn", lambda rs: FAMILIES["sknn"](k=20), lambda m, d: m.fit(d.user_items, sessions=d.sessions)
    ),
}
