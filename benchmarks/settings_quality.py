"""Settings of the quality benchmark: a bare site with the app's DEFAULT training settings, one database per run.

The benchmark (``benchmarks/quality.py``) sets ``BENCH_QUALITY_DATABASE_URL`` for each dataset (a PostgreSQL
database ``bench_quality_<dataset>``, or an SQLite file when ``BENCH_DATABASE_URL`` is unset). Items are keys
``product:<id>`` of the benchmark's item table (``benchmarks.quality_catalog.Item``: the dataset's items with the
title, category and price its reader gives), the CATALOG entry a site needs (serving returns only items its catalog
knows). Besides the CATALOG, only serving knobs that would distort the measurement differ from the defaults:

* ``RECOMMENDATION_CACHE_SECONDS = 0``: every ``recommend()`` call computes its list (``freshness.key_version``
  gives a TTL of 0, and serving stores nothing with a TTL of 0), so the latencies are uncached;
* ``PRECOMPUTE_ON_PROMOTION = False``: precomputed lists would only fill a cache that is off;
* ``RECOMMENDATION_LOG_WRITE = "off"``: no log rows for the benchmark's thousands of calls.
"""

import os

import environ

SECRET_KEY = "bench-quality-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "personalization",
    "benchmarks.quality_catalog",
]
DATABASES = {"default": environ.Env.db_url_config(os.environ.get("BENCH_QUALITY_DATABASE_URL", "sqlite://:memory:"))}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# artifacts go beside MEDIA_ROOT (<folder>/personalization-artifacts): inside the folder the benchmark deletes
MEDIA_ROOT = os.path.join(os.environ.get("BENCH_QUALITY_MEDIA_ROOT", "/tmp/bench-quality-media"), "media")
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
PERSONALIZATION = {
    "CATALOG": {"product": {"model": "quality_catalog.Item", "id_field": "key",
                            "fields": {"title": "title", "category": "category", "price": "price", "text": ["title"]}}},
    "RECOMMENDATION_CACHE_SECONDS": 0,
    "PRECOMPUTE_ON_PROMOTION": False,
    "RECOMMENDATION_LOG_WRITE": "off",
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"personalization": {"handlers": ["console"], "level": "WARNING", "propagate": False}},
}
