"""Settings of the serving benchmark's servers: ``settings_bench`` plus what ``benchmarks/serving.py`` measures.

* ``ROOT_URLCONF`` adds the baseline view ``/bench/bare/`` (``benchmarks/urls_serving.py``).
* ``BENCH_REC_CACHE_SECONDS=0`` turns the recommendation and visitor-state cache off: every request is a miss
  (visitor state from PostgreSQL, candidates, ranker, rules), as after a visitor's action or a new model.
* The API throttles stay on (their cache round trip is part of a request) with rates a load test cannot reach.
* Training: popularity + item-kNN + ALS candidates, gradient-boosted ranker, 70 candidates per family (about 200
  after the union), no refit on the test window (it would double the training time and not change serving).
* Artifacts go to ``BENCH_MEDIA_ROOT`` (a temporary folder the benchmark deletes).
"""

import os

from benchmarks.settings_bench import *  # noqa: F403
from benchmarks.settings_bench import PERSONALIZATION

ROOT_URLCONF = "benchmarks.urls_serving"
# artifacts go beside MEDIA_ROOT (<folder>/personalization-artifacts): inside the folder the benchmark deletes
MEDIA_ROOT = os.path.join(os.environ.get("BENCH_MEDIA_ROOT", "/tmp/bench-serving-media"), "media")
TRAINING = {
    "models": {"popularity": {}, "itemknn": {"k": 100}, "als": {"factors": 64, "iterations": 15}},
    "ranker": "gbdt",
    "candidates_per_model": 70,
    "refit_full": False,
}
PERSONALIZATION = {
    **PERSONALIZATION,
    "TRAINING": TRAINING,
    "RECOMMENDATION_CACHE_SECONDS": int(os.environ.get("BENCH_REC_CACHE_SECONDS", "300")),
    "PRECOMPUTE_ON_PROMOTION": False,
    "API_RATE_VISITOR": "1000000000/min",
    "API_RATE_IP": "1000000000/min",
}
