"""Production-configuration fixtures: a real Celery worker process on PostgreSQL and Redis.

The integration run (``make test-prod``) sets DATABASE_URL to PostgreSQL and TEST_CELERY_BROKER_URL to Redis.
Without them these tests fail with a message saying so: a missing service must never pass silently.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def _require_production() -> str:
    broker = os.environ.get("TEST_CELERY_BROKER_URL")
    if connection.vendor != "postgresql" or not broker:
        pytest.fail(
            "Integration tests need PostgreSQL (DATABASE_URL) and a Redis broker (TEST_CELERY_BROKER_URL); "
            "run them with `make test-prod`, which sets both."
        )
    return broker


@pytest.fixture
def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3")


@pytest.fixture
def stream_key(redis_url: str):
    import redis

    key = f"personalization:test:{uuid.uuid4().hex}"
    yield key
    client = redis.Redis.from_url(redis_url)
    for name in client.scan_iter(f"{key}*"):
        client.delete(name)


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path, redis_url, stream_key, settings):
    """A real ``celery worker`` on the test database; yields a client app to send tasks with."""
    broker = _require_production()
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "PERSONALIZATION_COLLECTOR": "redis",
        "REDIS_URL": redis_url,
        "PERSONALIZATION_TEST_STREAM_KEY": stream_key,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "storefront_demo", "worker", "--pool=solo", "-Q", queue,
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "INFO"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    client = Celery("test-client", broker=broker, backend=broker)
    client.conf.task_default_queue = queue
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"celery worker exited early:\n{log.read_text()[-3000:]}")
            if "ready." in log.read_text():
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"celery worker did not start in 60 s:\n{log.read_text()[-3000:]}")
        client.worker_log = log
        yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        client.close()


def _database_url() -> str:
    s = connection.settings_dict
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    user = s.get("USER") or "postgres"
    return f"postgres://{user}@{host}:{port}/{s['NAME']}"
