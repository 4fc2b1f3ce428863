"""The Redis collector: events are buffered in Redis and written by flush(); none is lost when Redis or the
database fails."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.db import DatabaseError

from personalization.models import Event
from personalization.tracking import collectors
from personalization.tracking.collectors import RedisCollector, get_collector

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest.fixture
def stream_key(settings):
    key = f"test:personalization:{uuid.uuid4().hex}"
    settings.PERSONALIZATION = {
        **settings.PERSONALIZATION,
        "COLLECTOR_BACKEND": "personalization.tracking.collectors.RedisCollector",
        "REDIS_URL": REDIS_URL,
        "REDIS_STREAM_KEY": key,
    }
    yield key
    connection = redis.Redis.from_url(REDIS_URL)
    stale = list(connection.scan_iter(f"{key}*"))
    if stale:
        connection.delete(*stale)
    connection.close()


@pytest.fixture
def buffer(stream_key):
    return redis.Redis.from_url(REDIS_URL)


def views(n: int) -> list[dict]:
    return [{"event": "view", "item": f"product:{i}", "event_id": str(uuid.uuid4())} for i in range(n)]


def test_events_are_buffered_in_redis_until_flush(browser, buffer, stream_key):
    batch = views(3)

    response = browser.send({"events": batch})

    assert response.json() == {"accepted": 3, "duplicates": 0, "dropped": 0}
    assert isinstance(get_collector(), RedisCollector)
    assert buffer.llen(stream_key) == 3
    assert Event.objects.count() == 0

    written = get_collector().flush()

    assert written == 3
    assert buffer.llen(stream_key) == 0
    rows = Event.objects.all()
    assert {str(e.event_id) for e in rows} == {e["event_id"] for e in batch}
    assert {e.visitor_id for e in rows} == {browser.visitor_id}
    assert all(e.context["device"] == "desktop" for e in rows)


def test_flush_writes_in_batches_until_the_buffer_is_empty(browser, buffer, stream_key, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "FLUSH_BATCH_SIZE": 2}
    browser.send({"events": views(5)})

    assert get_collector().flush() == 5
    assert buffer.llen(stream_key) == 0
    assert Event.objects.count() == 5


def test_flush_honours_max_events(browser, buffer, stream_key, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "FLUSH_BATCH_SIZE": 2}
    browser.send({"events": views(5)})

    written = get_collector().flush(max_events=2)

    assert written == 2
    assert buffer.llen(stream_key) == 3
    assert Event.objects.count() == 2


def test_duplicates_are_detected_in_redis(browser, buffer, stream_key):
    batch = views(2)
    browser.send({"events": batch})

    again = browser.send({"events": [*batch, *views(1)]})

    assert again.json() == {"accepted": 1, "duplicates": 2, "dropped": 0}
    assert buffer.llen(stream_key) == 3
    get_collector().flush()
    assert Event.objects.count() == 3


def test_middleware_views_are_buffered_too(browser, buffer, stream_key, product):
    browser.get(f"/p/{product.pk}/")

    assert buffer.llen(stream_key) == 1
    get_collector().flush()
    assert Event.objects.get().item_key == f"product:{product.pk}"


def test_events_go_to_the_database_when_redis_is_unreachable(browser, settings):
    settings.PERSONALIZATION = {
        **settings.PERSONALIZATION,
        "COLLECTOR_BACKEND": "personalization.tracking.collectors.RedisCollector",
        "REDIS_URL": "redis://127.0.0.1:6390/0",
        "REDIS_STREAM_KEY": f"test:personalization:{uuid.uuid4().hex}",
    }
    batch = views(4)

    response = browser.send({"events": batch})
    retry = browser.send({"events": batch[:1]})

    assert response.status_code == 202
    assert response.json()["accepted"] == 4
    assert retry.json() == {"accepted": 0, "duplicates": 1, "dropped": 0}
    assert {str(e) for e in Event.objects.values_list("event_id", flat=True)} == {e["event_id"] for e in batch}


def test_a_failed_database_write_leaves_the_events_in_redis(browser, buffer, stream_key, monkeypatch):
    batch = views(3)
    browser.send({"events": batch})
    real_write = collectors.write_events
    calls = {"n": 0}

    def write_once_failing(events, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise DatabaseError("database went away")
        return real_write(events, **kwargs)

    monkeypatch.setattr(collectors, "write_events", write_once_failing)

    with pytest.raises(DatabaseError):
        get_collector().flush()
    assert buffer.llen(stream_key) == 3
    assert Event.objects.count() == 0

    assert get_collector().flush() == 3
    assert buffer.llen(stream_key) == 0
    assert {str(e) for e in Event.objects.values_list("event_id", flat=True)} == {e["event_id"] for e in batch}


def test_flush_after_a_crash_between_write_and_trim_stores_each_event_once(browser, buffer, stream_key):
    """If a flush wrote to the database but died before trimming Redis, the next flush must not duplicate."""
    browser.send({"events": views(2)})
    raw = buffer.lrange(stream_key, 0, -1)
    get_collector().flush()
    buffer.rpush(stream_key, *raw)  # the same rows again, as if the trim never happened

    assert get_collector().flush() == 0
    assert buffer.llen(stream_key) == 0
    assert Event.objects.count() == 2


def test_unreadable_buffered_rows_do_not_block_the_flush(browser, buffer, stream_key):
    browser.send({"events": views(1)})
    buffer.rpush(stream_key, b"{not json", b'{"event_type": "view"}')
    browser.send({"events": views(1)})

    assert get_collector().flush() == 2
    assert buffer.llen(stream_key) == 0
    assert Event.objects.count() == 2


def test_buffered_events_of_a_visitor_who_signs_in_before_the_flush_get_the_user(browser, stream_key, shopper):
    browser.send({"events": views(2)})
    response = browser.post("/accounts/login/", {"username": "shopper", "password": "correct-horse-battery"})
    assert response.status_code == 302

    get_collector().flush()

    assert set(Event.objects.values_list("user_id", flat=True)) == {shopper.pk}


def test_the_lock_of_a_flush_cut_off_by_a_redis_restart_expires_soon(browser, buffer, stream_key, monkeypatch):
    """A Redis restarted mid-flush keeps the flush's lock in its snapshot, and the cut-off flush never releases
    it: flushing must resume within FLUSH_LOCK_SECONDS (it used to wait 300 s, under load the whole buffer)."""
    batch = views(3)
    browser.send({"events": batch})
    lock_key = f"{stream_key}:flush-lock"
    left = {}
    real_write = collectors.write_events

    def write_then_lose_redis(events, **kwargs):
        left["token"], left["pttl"] = buffer.get(lock_key), buffer.pttl(lock_key)
        raise redis.ConnectionError("Redis went away")  # the finally's release fails too: the lock stays

    monkeypatch.setattr(collectors, "write_events", write_then_lose_redis)
    with pytest.raises(redis.ConnectionError):
        get_collector().flush()
    buffer.set(lock_key, left["token"], px=left["pttl"])  # what the restarted Redis holds
    monkeypatch.setattr(collectors, "write_events", real_write)

    assert 0 < left["pttl"] <= 15_000, f"the lock outlives its flush by {left['pttl'] / 1000:.0f} s"
    assert get_collector().flush() == 0  # another flush holds the lock, as far as anyone can tell
    buffer.pexpire(lock_key, 50)  # time passes (FLUSH_LOCK_SECONDS at most)
    import time

    time.sleep(0.1)
    assert get_collector().flush() == 3
    assert buffer.llen(stream_key) == 0


def test_a_flush_whose_lock_expired_mid_write_never_trims_events_it_did_not_write(
    browser, buffer, stream_key, settings, monkeypatch
):
    """Flush A writes slowly, its lock expires, flush B takes over and empties the buffer, new events arrive:
    A must not trim them (it used to trim its batch's length from the head: new events were lost)."""
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "FLUSH_BATCH_SIZE": 2}
    browser.send({"events": views(5)})
    real_write = collectors.write_events
    calls = {"n": 0}

    def slow_write(events, **kwargs):
        calls["n"] += 1
        written = real_write(events, **kwargs)
        if calls["n"] == 1:
            buffer.delete(f"{stream_key}:flush-lock")  # A's lock expires
            assert get_collector().flush() == 3  # B: the 3 rows A has not written (A's 2 are stored)
            browser.send({"events": views(3)})  # new events, buffered
        return written

    monkeypatch.setattr(collectors, "write_events", slow_write)
    get_collector().flush()  # A

    monkeypatch.setattr(collectors, "write_events", real_write)
    get_collector().flush()
    assert buffer.llen(stream_key) == 0
    assert Event.objects.count() == 8
