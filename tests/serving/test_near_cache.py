"""The near cache: serving's entries kept in-process, coherent with Redis through client tracking (RESP3 pushes).

These run on the production configuration (Django's RedisCache): they are ``integration`` tests, deselected from
the embedded run, and they fail (not skip) on any other cache backend.
"""

from __future__ import annotations

import os
import time

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from personalization import shared_cache
from personalization.near_cache import near_cache

# one xdist group: the flush test's FLUSHDB reaches every tracking client, so no other near-cache test may run
# beside it (the other tests empty the cache by deleting their worker's keys, see tests.caches)
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("near-cache")]


@pytest.fixture
def cache():
    backend = caches["default"]
    if type(backend) is not RedisCache:
        pytest.fail("The near cache needs Django's RedisCache: run with CACHE_URL=redis://... (make test-prod).")
    return backend


def _eventually(read, expected, seconds: float = 2.0):
    """``read()`` until it returns ``expected`` (an invalidation push arrives microseconds after the write)."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.001)


def _redis_client(cache):
    return cache._cache.get_client(write=True)


def test_a_hit_is_served_without_asking_redis(cache):
    cache.set("entry", {"items": [1, 2]}, 60)
    assert shared_cache.get_many(["entry", "absent"], near=True) == {"entry": {"items": [1, 2]}}
    copy = near_cache(cache)
    served_from = copy.conn
    copy.conn.send_packed_command = None  # any command sent now would fail: a hit must not send one
    try:
        assert shared_cache.get_many(["entry", "absent"], near=True) == {"entry": {"items": [1, 2]}}
    finally:
        del served_from.send_packed_command


def test_a_write_by_another_client_is_seen_once_its_invalidation_arrives(cache):
    cache.set("entry", "old", 60)
    assert shared_cache.get_many(["entry", "later"], near=True) == {"entry": "old"}
    other = _redis_client(cache)  # another connection, as another process would use
    other.set(cache.make_key("entry"), cache._cache._serializer.dumps("new"))
    other.set(cache.make_key("later"), cache._cache._serializer.dumps("created"))
    assert _eventually(lambda: shared_cache.get_many(["entry", "later"], near=True),
                       {"entry": "new", "later": "created"}) == {"entry": "new", "later": "created"}
    other.delete(cache.make_key("entry"))
    assert _eventually(lambda: shared_cache.get_many(["entry"], near=True), {}) == {}


def test_this_process_reads_its_own_writes_at_once(cache):
    shared_cache.set_many({"entry": 1}, timeout=60)
    assert shared_cache.get_many(["entry"], near=True) == {"entry": 1}
    shared_cache.set_many({"entry": 2}, timeout=60)
    assert shared_cache.get_many(["entry"], near=True) == {"entry": 2}  # no waiting for the push
    shared_cache.set_many({"entry": 3}, timeout=0)  # timeout 0 deletes
    assert shared_cache.get_many(["entry"], near=True) == {}


def test_entries_never_outlive_their_redis_ttl(cache):
    client = _redis_client(cache)
    client.set(cache.make_key("brief"), cache._cache._serializer.dumps("v"), px=2000)
    assert shared_cache.get_many(["brief"], near=True) == {"brief": "v"}
    time.sleep(2.05)
    assert shared_cache.get_many(["brief"], near=True) == {}


def test_a_flush_empties_the_copy(cache):
    cache.set("entry", "v", 60)
    assert shared_cache.get_many(["entry"], near=True) == {"entry": "v"}
    cache.clear()  # Django's RedisCache: FLUSHDB, which invalidates every key a tracking client holds
    assert _eventually(lambda: shared_cache.get_many(["entry"], near=True), {}) == {}


def test_a_lost_connection_is_replaced_and_nothing_stale_is_served(cache):
    cache.set("entry", "before", 60)
    assert shared_cache.get_many(["entry"], near=True) == {"entry": "before"}
    copy = near_cache(cache)
    client = _redis_client(cache)
    client.execute_command("CLIENT", "KILL", "ID", copy.client_id)
    client.set(cache.make_key("entry"), cache._cache._serializer.dumps("after"))  # its push cannot arrive
    # the read that finds the connection dead falls back to Redis (no stale "before"); a later one reconnects
    assert shared_cache.get_many(["entry"], near=True) == {"entry": "after"}
    copy.failed_at = -10.0  # the retry pause is over
    assert shared_cache.get_many(["entry"], near=True) == {"entry": "after"}
    assert copy.conn is not None


def test_a_forked_child_does_not_share_the_parents_connection(cache):
    cache.set("entry", "v", 60)
    assert shared_cache.get_many(["entry"], near=True) == {"entry": "v"}
    parent_conn = near_cache(cache).conn
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its reads must use a new tracking connection
        ok = False
        try:
            ok = shared_cache.get_many(["entry"], near=True) == {"entry": "v"} and near_cache(cache).conn is not \
                parent_conn
        finally:
            os.write(write, b"1" if ok else b"0")  # also when the child raised: the parent never waits forever
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
    assert near_cache(cache).conn is parent_conn


def test_values_are_only_kept_while_the_setting_is_on(cache, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "NEAR_CACHE": False}
    assert near_cache(cache) is None
    cache.set("entry", "v", 60)
    assert shared_cache.get_many(["entry"], near=True) == {"entry": "v"}  # read from Redis directly


def test_the_copy_stays_within_its_byte_budget_and_still_answers_everything(cache, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "NEAR_CACHE_MAX_BYTES": 8_000}
    copy = near_cache(cache)
    for i in range(40):
        cache.set(f"entry-{i}", "x" * 300, 60)
        assert shared_cache.get_many([f"entry-{i}"], near=True) == {f"entry-{i}": "x" * 300}
    assert 0 < copy.size <= 8_000 and len(copy.entries) < 40
    assert cache.make_key("entry-0") not in copy.entries and cache.make_key("entry-39") in copy.entries  # oldest go
    cache.set("huge", "y" * 5_000, 60)  # more than a quarter of the budget: answered, never kept
    assert shared_cache.get_many(["huge"], near=True) == {"huge": "y" * 5_000}
    assert cache.make_key("huge") not in copy.entries
    assert shared_cache.get_many(["entry-0", "entry-39"], near=True) == {"entry-0": "x" * 300, "entry-39": "x" * 300}


def test_a_write_between_a_misss_read_and_its_ttl_is_not_kept_stale(cache):
    """A miss reads with MGET then PTTL; another client's write landing between them (a pipeline split across TCP
    segments) invalidates the key before the miss stores it: the old value is answered once, never kept."""
    cache.set("raced", "old", 60)
    copy = near_cache(cache)
    assert copy.get_many(["warm"]) is not None  # connected
    conn, other, made = copy.conn, _redis_client(cache), cache.make_key("raced")
    real_send = conn.send_packed_command

    def split_send(chunks, check_health=True):
        data = b"".join(bytes(c) for c in chunks)
        first_end = data.index(b"*2\r\n$4\r\nPTTL")
        real_send([data[:first_end]])  # MGET reaches Redis and runs
        time.sleep(0.01)
        other.set(made, cache._cache._serializer.dumps("new"))  # another process writes: a push is queued to us
        real_send([data[first_end:]])  # the PTTLs arrive in a later segment

    conn.send_packed_command = split_send
    try:
        assert copy.get_many(["raced"]) == {"raced": "old"}  # what Redis held when it was read
    finally:
        del conn.send_packed_command
    assert made not in copy.entries
    assert copy.get_many(["raced"]) == {"raced": "new"}


def test_a_reconnection_turns_tracking_back_on(cache):
    cache.set("entry", "v", 60)
    copy = near_cache(cache)
    assert shared_cache.get_many(["entry"], near=True) == {"entry": "v"}
    copy.conn.disconnect()
    copy.conn.connect()  # what redis-py does on its own after a dropped socket
    assert not copy.entries  # emptied: nothing read before the reconnection can be trusted
    assert shared_cache.get_many(["entry"], near=True) == {"entry": "v"}
    _redis_client(cache).set(cache.make_key("entry"), cache._cache._serializer.dumps("w"))
    assert _eventually(lambda: shared_cache.get_many(["entry"], near=True), {"entry": "w"}) == {"entry": "w"}


def test_clear_drops_every_entry_held_as_absent_too(cache):
    cache.set("entry", "v", 60)
    assert shared_cache.get_many(["entry", "never-set"], near=True) == {"entry": "v"}
    copy = near_cache(cache)
    assert {cache.make_key("entry"), cache.make_key("never-set")} <= set(copy.entries)
    copy.clear()
    assert copy.entries == {} and copy.size == 0
    cache.set("never-set", "now set", 60)  # no stale "absent" can answer for it
    assert shared_cache.get_many(["never-set"], near=True) == {"never-set": "now set"}
