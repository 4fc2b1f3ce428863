"""The quality benchmark's smoke mode: import, train and ``recommend()`` on a slice of Online Retail, with every
baseline scored on the same users (``benchmarks/quality.py --quick``, SQLite, in a subprocess like a user runs it)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATASETS = Path(os.environ.get("PERSONALIZATION_DATASETS", str(REPO.parent / "shared" / "datasets")))
BASELINES = {"baseline: popularity", "baseline: item-kNN (cosine)", "baseline: ALS", "baseline: EASE"}


@pytest.mark.slow
def test_quick_run_scores_the_system_and_every_baseline(tmp_path):
    if not (DATASETS / "online-retail" / "by-day").is_dir():
        pytest.skip(f"Online Retail not found under {DATASETS} (set PERSONALIZATION_DATASETS)")
    out = tmp_path / "quality.json"
    env = {k: v for k, v in os.environ.items() if k not in {"BENCH_DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    env["PERSONALIZATION_DATASETS"] = str(DATASETS)
    done = subprocess.run([sys.executable, "benchmarks/quality.py", "--quick", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads(out.read_text())["datasets"]["online-retail"]
    (cutoff,) = report["cutoffs"].values()
    rows = cutoff["rows"]
    assert set(rows) == {"system: recommend()"} | BASELINES
    for model, metrics in rows.items():
        for metric in ("ndcg@10", "recall@20"):
            assert math.isfinite(metrics[metric]) and 0.0 <= metrics[metric] <= 1.0, (model, metric, metrics)
    assert any(rows[b]["ndcg@10"] > 0 for b in BASELINES)
    assert cutoff["serving"]["served_by"] == {"model": cutoff["users"]}  # the trained version, not a fallback
    assert cutoff["users"] > 0 and cutoff["tuning"]["als"] and cutoff["tuning"]["ease_lambda"]
    assert math.isfinite(report["ratios"]["of_means"]["ndcg@10"]["ratio"])
    assert "| system: recommend()" in done.stdout and "system / best baseline" in done.stdout
