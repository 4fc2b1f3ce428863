"""The feedback benchmark runs as a user runs it and compares the four rankers on the same later traffic."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_small_run_scores_every_variant_on_the_same_visitors(tmp_path):
    out = tmp_path / "feedback.json"
    done = subprocess.run([sys.executable, "benchmarks/feedback.py", "--seeds", "1", "--visitors", "300",
                           "--products", "60", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| ranker trained" in done.stdout

    rows = {row["variant"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"without", "with feedback", "feedback, no position", "feedback, organic at top"}
    assert len({row["users"] for row in rows.values()}) == 1 and rows["without"]["users"] > 20
    assert rows["without"]["feedback_rows"] == 0 and rows["with feedback"]["feedback_rows"] > 100
    for row in rows.values():
        assert all(math.isfinite(row[k]) for k in ("clicks_per_list", "ndcg", "recall"))
