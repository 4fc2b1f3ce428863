"""The precompute runs one at a time per live version, under a lock with a heartbeat: a second trigger returns at
once, a dead run is reported by the next one, and a run whose version stops being live stops early."""

from __future__ import annotations

import time

import pytest
from django.core.cache import caches

from personalization import registry
from personalization.run_locks import RunLock
from personalization.serving import precomputation
from personalization.serving.live import live_token
from personalization.serving.precomputation import precompute
from tests.caches import clear_cache
from tests.serving.shop import copy_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_precompute_on_promotion(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "PRECOMPUTE_ON_PROMOTION": False}


def test_a_second_run_for_the_live_version_returns_at_once(shop):
    clear_cache(caches["default"])
    with RunLock(f"precompute:{live_token()}") as running:
        assert running.held
        stats = precompute(days=30)
    assert stats["entries"] == 0 and "another run" in stats["skipped"]
    stats = precompute(days=30)  # the first run is over: the next one fills the cache
    assert "skipped" not in stats and stats["visitors"] > 10 and stats["entries"] >= stats["visitors"]


def test_the_run_after_a_dead_one_reports_it_and_does_the_work(shop):
    clear_cache(caches["default"])
    dead = RunLock(f"precompute:{live_token()}", ttl=1)
    assert dead.acquire()
    dead._stop.set()  # the process died: no more heartbeats, and nobody releases the lock
    dead._thread.join(5)
    stats = precompute(days=30)
    assert "another run" in stats.get("skipped", "")  # its lock still lives out its TTL
    time.sleep(1.5)
    stats = precompute(days=30)
    assert stats["previous_run_died"]["owner"] == dead.owner and stats["previous_run_died"]["finished"] is None
    assert stats["visitors"] > 10 and stats["entries"] >= stats["visitors"]


def test_a_run_stops_when_another_version_goes_live(shop, monkeypatch, django_capture_on_commit_callbacks):
    clear_cache(caches["default"])
    second = copy_of(shop)
    read_states = precomputation.states_from_db
    batches = []

    def states_then_promote(subjects):
        batches.append(list(subjects))
        if len(batches) == 1:  # a promotion while the first batch is being computed
            with django_capture_on_commit_callbacks(execute=True):
                registry.promote(second, force=True)
        return read_states(subjects)

    monkeypatch.setattr(precomputation, "states_from_db", states_then_promote)
    stats = precompute(days=30, batch_size=5)
    assert stats["superseded"] is True
    assert len(batches) == 1 and stats["visitors"] == 5  # it stopped before its second batch
    monkeypatch.setattr(precomputation, "states_from_db", read_states)
    stats = precompute(days=30, batch_size=5)  # the new version's own run goes through
    assert "superseded" not in stats and stats["visitors"] > 10
