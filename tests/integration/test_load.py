"""Proof under load, small: 20 concurrent visitors send 5,000 events through gunicorn, the Redis collector and a
real Celery worker into PostgreSQL while the app's Redis is stopped for 3 s; every accepted event is stored once.

The full size (200,000 events, 100 visitors, 10 s outage) is ``benchmarks/load.py``; this runs its
``run_scenario`` on the test database with the benchmark's own Redis servers (the shared one is never stopped).
"""

from __future__ import annotations

import shutil

import pytest
from django.db import connection

from benchmarks import load

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(transactional_db):
    if connection.vendor != "postgresql":
        pytest.fail("The load test needs PostgreSQL (DATABASE_URL); run it with `make test-prod`.")
    if shutil.which("redis-server") is None:
        pytest.fail("The load test starts its own redis-server (scripts/services.sh installs it).")
    s = connection.settings_dict
    url = f"postgres://{s.get('USER') or 'postgres'}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"
    running = load.Stack(url, web_workers=2)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_every_accepted_event_is_stored_exactly_once_through_a_redis_outage(stack, make_product):
    items = [f"product:{make_product().pk}" for _ in range(10)]

    result = load.run_scenario(stack, items, events=5000, visitors=20, batch=10, rate=40, outage=3.0,
                               label="ci", drain_timeout=40)

    check = result["check"]
    phases = {row["phase"]: row for row in result["rows"]}
    assert phases["during outage"]["requests"] > 0 and phases["after outage"]["requests"] > 0, phases
    assert load.failures(result) == [], check
    assert check["accepted"] == check["stored_rows"] == 5000, check
    assert check["refused"] == 0, check["errors"]  # while Redis is down, the events go to PostgreSQL directly
    assert check["visitors_stored"] == 20  # each visitor kept its cookie
