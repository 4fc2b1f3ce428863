"""Updates between retrains in the pure core: deltas grow the id maps, move factors and neighbours, compose."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization.recommenders.system import RecommenderSystem
from personalization.recommenders.updates import Delta, apply_delta, compute_delta, merge
from tests.recommenders.test_system import MODELS, make_shop


@pytest.fixture(scope="module")
def base():
    events, items, _ = make_shop(n_users=120, seed=3)
    models = {**MODELS, "transitions": {"k": 30}}
    return RecommenderSystem(models=models, ranker="gbdt", random_state=0).fit(events, items)


def _events(rows, start="2024-03-05"):
    t0 = pd.Timestamp(start, tz="UTC")
    return pd.DataFrame([(u, i, e, t0 + pd.Timedelta(minutes=k)) for k, (u, i, e) in enumerate(rows)],
                        columns=["user", "item", "event", "timestamp"])


def _co_views(new: str, neighbour: str, visitors: int = 5, prefix: str = "v:new"):
    rows = []
    for v in range(visitors):
        rows += [(f"{prefix}{v}", neighbour, "view"), (f"{prefix}{v}", new, "view"), (f"{prefix}{v}", neighbour,
                                                                                      "click")]
    return _events(rows)


def test_new_item_gets_neighbours_and_joins_theirs_and_ids_keep_their_numbers(base):
    changes = compute_delta(base, _co_views("product:new", "product:3"))
    system = apply_delta(base, changes.delta)

    assert system.matrix_.shape == (base.matrix_.shape[0] + 5, base.matrix_.shape[1] + 1)
    assert system.matrix_.item_index["product:3"] == base.matrix_.item_index["product:3"]
    assert "product:3" in [k for k, _ in system.similar_items(["product:new"], n=10)[0]]
    assert "product:new" in [k for k, _ in system.similar_items(["product:3"], n=50)[0]]
    assert "product:new" in changes.items and "product:3" in changes.items
    # every family and the ranker still serve a new visitor and a known user over the grown catalogue
    out = system.recommend(["v:new0", "u:1"], n=10)
    assert all(len(rows) == 10 for rows in out)
    assert base.similar_items(["product:new"])[0] == []  # the base system is left unchanged


def test_known_user_factors_move_towards_the_new_items(base):
    user = "u:4"
    row = base.matrix_.user_index[user]
    liked = {k for k, _ in base.training_items(user)}
    far = [k for k in base.matrix_.item_ids.tolist() if k not in liked][-5:]
    changes = compute_delta(base, _events([(user, k, e) for k in far for e in ("view", "add_to_cart", "purchase")]))
    system = apply_delta(base, changes.delta)

    assert changes.users == [user]
    assert not np.allclose(system.families_["als"].user_factors_[row], base.families_["als"].user_factors_[row])
    others = np.arange(base.matrix_.shape[0]) != row
    assert np.array_equal(system.families_["als"].user_factors_[others], base.families_["als"].user_factors_[others])
    before = base.recommend_for_model("als", [user], n=10)[0]
    after = system.recommend_for_model("als", [user], n=10)[0]
    assert before != after
    assert set(far) & {k for k, _ in system.training_items(user)} == set(far)


def test_merged_deltas_equal_applying_them_in_turn_and_survive_a_round_trip(base):
    first = compute_delta(base, _co_views("product:new", "product:3")).delta
    step = apply_delta(base, first)
    second = compute_delta(step, _events([("u:7", "product:new", "purchase"), ("v:later", "product:new", "view"),
                                          ("v:later", "product:8", "view")], start="2024-03-06")).delta
    in_turn = apply_delta(step, second)
    merged = Delta.from_bytes(merge(first, second).to_bytes())
    at_once = apply_delta(base, merged)

    assert at_once.matrix_.item_ids.tolist() == in_turn.matrix_.item_ids.tolist()
    assert (at_once.matrix_.csr != in_turn.matrix_.csr).nnz == 0
    for name in ("als",):
        assert np.allclose(at_once.families_[name].user_factors_, in_turn.families_[name].user_factors_)
        assert np.allclose(at_once.families_[name].item_factors_, in_turn.families_[name].item_factors_)
    for name in ("itemknn", "transitions"):
        assert abs(at_once.families_[name].similarity_ - in_turn.families_[name].similarity_).max() < 1e-6
    assert np.allclose(at_once.families_["popularity"].popularity_, in_turn.families_["popularity"].popularity_)
    assert at_once.recommend(["u:7", "v:later"], n=5) == in_turn.recommend(["u:7", "v:later"], n=5)


def test_events_without_weight_or_item_change_nothing(base):
    changes = compute_delta(base, _events([("u:1", "product:2", "impression"), ("u:1", "product:9", "search")]))
    assert changes.users == [] and changes.delta.user_ids.size == 0 and changes.delta.item_ids.size == 0


def test_a_delta_of_another_layout_is_refused():
    data = Delta().to_bytes()
    import io

    with np.load(io.BytesIO(data)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["format"] = np.array([99])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with pytest.raises(ValueError, match="format"):
        Delta.from_bytes(buffer.getvalue())


def test_the_session_rankers_tables_grow_with_the_catalogue(base):
    changes = compute_delta(base, _co_views("product:new", "product:3"))
    system = apply_delta(base, changes.delta)

    n_items = system.matrix_.shape[1]
    assert system.tables_.rules.shape == (n_items, n_items) and len(system.tables_.recent_pop) == n_items
    assert system.tables_.rules[:-1, :-1].nnz == base.tables_.rules.nnz  # the rules learned are kept
    # a visit that clicked the new item is served (by the session ranker when the base has one)
    lists = system.recommend(["v:visit"], n=5, histories={"v:visit": ["product:3", "product:new"]})
    assert len(lists[0]) == 5
