"""Periodic runs (drift checks, notifications, list statistics, model updates) run one at a time, and a run that
died stops blocking the next within its lock's short life: its heartbeat, not a fixed hour-long timeout, keeps the
lock. Against the suite's cache: Redis in the production run, local memory in the embedded one."""

from __future__ import annotations

import logging
import time

import pytest

from personalization import shared_cache
from personalization.run_locks import RunLock, lock_key


@pytest.fixture(autouse=True)
def _clean():
    yield
    for name in ("t-one", "t-beat", "t-dead", "drift", "list-stats"):
        shared_cache.cache().delete_many([lock_key(name), f"{lock_key(name)}:record"])


def test_a_second_run_steps_aside_until_the_first_finishes():
    first = RunLock("t-one")
    assert first.acquire()
    second = RunLock("t-one")
    assert not second.acquire() and not second.held
    first.release()
    assert second.acquire() and second.previous is None  # the first finished: nothing to report
    second.release()


def test_the_heartbeat_keeps_a_long_run_s_lock_beyond_its_life():
    running = RunLock("t-beat", ttl=1.2)
    assert running.acquire()
    try:
        time.sleep(3.0)  # more than twice the lock's life: only the heartbeat can have kept it
        assert not RunLock("t-beat", ttl=1.2).acquire()
    finally:
        running.release()
    record = shared_cache.cache().get(f"{lock_key('t-beat')}:record")
    assert record["finished"] and record["beat"] > record["started"]


def test_a_dead_run_is_noticed_and_the_next_one_goes_ahead(caplog):
    dead = RunLock("t-dead", ttl=1.0)
    assert dead.acquire()
    dead._stop.set()  # the process died: no more heartbeats, and no release
    dead._thread.join()
    assert not RunLock("t-dead", ttl=1.0).acquire()  # still within its life
    time.sleep(1.5)
    nxt = RunLock("t-dead", ttl=1.0)
    with caplog.at_level(logging.WARNING, logger="personalization.run_locks"):
        assert nxt.acquire()
    try:
        assert nxt.previous["owner"] == dead.owner and not nxt.previous["finished"]
        assert "taken for dead" in caplog.text
    finally:
        nxt.release()


@pytest.mark.django_db
def test_periodic_tasks_skip_while_a_live_run_holds_their_lock_and_report_a_dead_one():
    from personalization.tasks import aggregate_list_stats, detect_drift

    for name, task in (("drift", detect_drift), ("list-stats", aggregate_list_stats)):
        holder = RunLock(name)
        assert holder.acquire()
        assert task() == {"skipped": "another run is in progress"}
        holder._stop.set()  # it dies holding the lock: expire the lock as its life would
        holder._thread.join()
        shared_cache.cache().delete(lock_key(name))
        result = task()
        assert result["previous_run_died"]["owner"] == holder.owner
        assert "previous_run_died" not in task()  # that run finished
