"""Training chooses its configuration on a validation window carved from the training events."""

from __future__ import annotations

import pandas as pd

from personalization.evaluation.configurations import choose_configuration
from personalization.recommenders.system import RecommenderSystem
from tests.recommenders.test_system import make_shop

MODELS = {"popularity": {}, "itemknn": {"k": 30}, "ease": {}}


def _make(params):
    return RecommenderSystem(**params)


def test_the_best_configuration_on_the_validation_window_is_chosen_and_recorded():
    events, items, _ = make_shop()
    params = {"models": MODELS, "candidates_per_model": 20, "random_state": 0}
    record = choose_configuration(_make, events, items, params, "ndcg@10", validation_days=10, min_users=10,
                                  min_gain=0.0)
    names = [r["name"] for r in record["configurations"]]
    assert names[0] == "ranker" and "rank fusion, no ranker" in names and "ranker, wider candidates" in names
    assert any(name.endswith(" order") for name in names)  # the strongest family alone
    best = max(record["configurations"], key=lambda r: r["ndcg@10"])
    assert record["chosen"] == best["name"] and record["overrides"] == best["overrides"]
    assert record["users"] > 0 and pd.Timestamp(record["window"]["start"]) > events["timestamp"].min()
    assert events["timestamp"].max() - pd.Timestamp(record["window"]["start"]) <= pd.Timedelta(days=10)
    assert set(record["families"]) == set(MODELS)


def test_too_few_users_or_a_win_within_the_noise_keep_the_ranker():
    events, items, _ = make_shop()
    params = {"models": MODELS, "candidates_per_model": 20, "random_state": 0}
    few = choose_configuration(_make, events, items, params, "ndcg@10", validation_days=10, min_users=10_000)
    assert "at least 10000 are needed" in few["skipped"] and few["users"] > 0
    strict = choose_configuration(_make, events, items, params, "ndcg@10", validation_days=10, min_users=10,
                                  min_gain=10.0)  # nothing beats the ranker by 1000%
    assert strict["chosen"] == "ranker" and strict["overrides"] == {"blend": 1.0, "anchor": None}


def test_nothing_to_validate_on_is_said_not_guessed():
    events, items, _ = make_shop()
    head = events.iloc[:30]
    record = choose_configuration(_make, head, items, {"models": MODELS}, "ndcg@10", validation_days=10,
                                  min_train=1000)
    assert record == {"skipped": "too little history before the test window to carve a validation window"}
