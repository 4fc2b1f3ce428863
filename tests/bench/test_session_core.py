"""The ML-core session diagnostic (``benchmarks/session_core.py``): the quality benchmark's protocol on the
system and its baselines, with a window of training days that every method keeps to."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import session_core  # noqa: E402

CUTOFF = pd.Timestamp("2014-04-07", tz="UTC")


def _events() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Old visits (three days back) click only x-items, recent ones and the test visits only a-items."""
    rng = np.random.default_rng(0)
    rows = []
    for s in range(400):
        old = s < 150
        start = CUTOFF - pd.Timedelta(days=3 if old else 1) + pd.Timedelta(minutes=3 * (s % 150))
        if s >= 350:
            start = CUTOFF + pd.Timedelta(minutes=2 * s)  # test visits, after the cutoff
        pool = [f"x{i}" for i in range(8)] if old else [f"a{i}" for i in range(12)]
        for m, item in enumerate(rng.choice(pool, size=4)):
            rows.append({"user": f"s{s}", "item": str(item), "event": "view", "timestamp": start + pd.Timedelta(
                seconds=20 * m), "value": np.nan, "session": f"s{s}"})
    events = pd.DataFrame(rows).sort_values("timestamp", kind="stable").reset_index(drop=True)
    keys = sorted(events["item"].unique())
    items = pd.DataFrame({"item": keys, "available": True, "text": ""})
    return events, items


def test_a_training_window_keeps_every_method_to_its_days():
    events, items = _events()
    index = pd.Index(sorted(events["item"].unique()))
    scores = session_core.run_cutoff(events, items, index, CUTOFF, {"random_state": 1}, train_days=2)
    assert set(scores) == {"recommend()", "item-kNN", "SKNN"}
    for method in scores.values():
        assert 0 < method["hr@20"] <= 1 and 0 < method["mrr@20"] <= method["hr@20"]


def test_params_that_are_not_json_get_a_hint():
    with pytest.raises(SystemExit, match="--params is not JSON"):
        session_core.main(["--params", "{factors: 8}"])
