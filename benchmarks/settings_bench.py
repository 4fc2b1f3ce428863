"""Settings of the benchmark servers: the demo's env-driven settings plus what a load test needs.

* ``RATE_LIMIT_EVENTS`` and ``RATE_LIMIT_EVENTS_PER_IP`` raised: a benchmark client is one visitor (and one IP)
  flooding the API on purpose (the limiters still run, so their cache round trips are measured).
* The stream key and cache key prefix come from the benchmark, so its Redis keys can be found and deleted.
* ``STATIC_ROOT`` points at the benchmark's temporary ``collectstatic`` output (DEBUG off needs the manifest).
"""

import os

from storefront_demo.settings import *  # noqa: F403
from storefront_demo.settings import CACHES, PERSONALIZATION, STATIC_ROOT

PERSONALIZATION = {
    **PERSONALIZATION,
    "RATE_LIMIT_EVENTS": 10**9,
    "RATE_LIMIT_EVENTS_PER_IP": 10**9,
    "REDIS_STREAM_KEY": os.environ.get("BENCH_STREAM_KEY", "bench:personalization:events"),
}
CACHES = {**CACHES, "default": {**CACHES["default"], "KEY_PREFIX": os.environ.get("BENCH_CACHE_PREFIX", "bench")}}
STATIC_ROOT = os.environ.get("BENCH_STATIC_ROOT", str(STATIC_ROOT))
