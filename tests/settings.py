"""Test settings: the demo project's, with fast password hashing.

The environment chooses the services exactly as for the demo: with no variables the suite runs on the embedded
defaults (SQLite, local-memory cache, eager tasks); CI's production run sets DATABASE_URL (PostgreSQL),
CACHE_URL (Redis), CELERY_BROKER_URL (Redis) and PERSONALIZATION_COLLECTOR=redis.
"""

from storefront_demo.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"personalization": {"handlers": ["console"], "level": "WARNING"}},
}

import os  # noqa: E402

# Artifacts written by a Celery worker process must be readable by the test process: one shared folder.
# Artifacts go to the private folder beside MEDIA_ROOT (.test-data/personalization-artifacts), never the demo's.
MEDIA_ROOT = os.environ.get("MEDIA_ROOT") or str(BASE_DIR / ".test-data" / "media")  # noqa: F405
if os.environ.get("PERSONALIZATION_TEST_STREAM_KEY"):  # set for worker processes started by integration tests
    PERSONALIZATION = {**PERSONALIZATION, "REDIS_STREAM_KEY": os.environ["PERSONALIZATION_TEST_STREAM_KEY"]}  # noqa: F405
# The embedded run's test database is a file, not Django's in-memory default. In memory, the live server's request
# threads and the test share one connection, and a page view written after its response (a response closer) then
# races the next request on it. On a file each thread has its own connection, as under runserver with the demo.
# One folder per process: pytest-xdist adds each worker's suffix to the name, and a crashed run leaves nothing behind
# for the next one (WAL files included).
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    import atexit  # noqa: E402
    import shutil  # noqa: E402
    import tempfile  # noqa: E402

    _test_db_folder = tempfile.mkdtemp(prefix="personalization-test-db-")
    atexit.register(shutil.rmtree, _test_db_folder, ignore_errors=True)
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(_test_db_folder, "test.sqlite3")}  # noqa: F405
# Page views are written inline in tests so a request's events are in the database when the client returns;
# tests/tracking/test_background_writer.py covers the default background writer.
PERSONALIZATION = {**PERSONALIZATION, "MIDDLEWARE_WRITE": "inline"}  # noqa: F405
# Recommendation log rows are written after commit in tests (the default background thread is tested apart).
PERSONALIZATION = {**PERSONALIZATION, "RECOMMENDATION_LOG_WRITE": "inline"}  # noqa: F405
# The demo's slots without its ranking rules (diversity, exploration, caps), so rendering tests are deterministic;
# each keeps its length and categories, which its template relies on. tests/serving configures the rules it tests.
PERSONALIZATION = {**PERSONALIZATION, "SLOTS": {  # noqa: F405
    name: {k: v for k, v in rules.items() if k in ("n", "categories")}
    for name, rules in PERSONALIZATION["SLOTS"].items()  # noqa: F405
}}

# Parallel runs (pytest-xdist): each worker gets its own Redis cache database, because clearing the cache between
# tests flushes the whole database. Subprocesses started by a worker inherit PYTEST_XDIST_WORKER and agree.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw") and CACHES["default"]["BACKEND"].endswith("RedisCache"):  # noqa: F405
    _index = int(_worker[2:])
    CACHES["default"]["LOCATION"] = f"redis://127.0.0.1:6379/{10 + _index}"  # noqa: F405
    # Redis tracks the keys a near cache holds by name, whatever the database: a worker's own prefix keeps its
    # writes and deletions from invalidating the other worker's near cache (see tests.conftest.clear_cache).
    CACHES["default"]["KEY_PREFIX"] = _worker  # noqa: F405
