"""A Redis that accepts connections and never answers (a black-hole port) must not hold pages: every Redis client
of the app times out within a second, the circuit breaker then skips that server, and no event is lost.

The black hole is a real local socket (bound and listening, never accepting or reading): the kernel completes
each TCP handshake, so connections succeed and every command waits for a reply that never comes.
"""

from __future__ import annotations

import socket
import time

import pytest
import redis
from django.core.checks import run_checks
from django.test import override_settings

from personalization import circuit, shared_cache
from personalization.models import Event
from personalization.testutils import override_personalization
from tests.serving.shop import live_shop_fixture, shop_fixture  # noqa: F401

EVENTS = "/api/personalization/events/"
RECOMMENDATIONS = "/api/personalization/recommendations/"


@pytest.fixture
def black_hole():
    """``redis://`` URL of a port that accepts connections and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1024)
    circuit.reset()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        server.close()
        circuit.reset()


@pytest.fixture
def hung_redis(black_hole):
    """The site's cache (Django's RedisCache, no OPTIONS: the app's defaults apply) and the Redis collector both
    point at the black hole."""
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": black_hole}}
    with override_settings(CACHES=caches), override_personalization(
            REDIS_URL=black_hole, COLLECTOR_BACKEND="personalization.tracking.collectors.RedisCollector"):
        yield black_hole


def timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


# --- the breaker itself ---------------------------------------------------------------------------------------

def test_a_hung_redis_times_out_then_is_skipped_at_once(db, black_hole):
    client = redis.Redis.from_url(black_hole, **circuit.client_options(black_hole))
    started = time.perf_counter()
    with pytest.raises(redis.TimeoutError):
        client.get("k")
    elapsed = time.perf_counter() - started
    assert 0.4 < elapsed < 1.0  # REDIS_SOCKET_TIMEOUT (0.5 s), not forever
    assert circuit.is_open(circuit.key_for_url(black_hole))
    started = time.perf_counter()
    with pytest.raises(circuit.CircuitOpen):
        client.set("k", 1)
    assert time.perf_counter() - started < 0.05
    # another database number on the same server is the same server: skipped too
    other = black_hole.rsplit("/", 1)[0] + "/3"
    with pytest.raises(circuit.CircuitOpen):
        redis.Redis.from_url(other, **circuit.client_options(other)).get("k")


@override_personalization(REDIS_CIRCUIT_SECONDS=0.2)
def test_after_the_open_time_one_probe_goes_through(db, black_hole):
    client = redis.Redis.from_url(black_hole, **circuit.client_options(black_hole))
    with pytest.raises(redis.TimeoutError):
        client.get("k")
    time.sleep(0.25)
    with pytest.raises(redis.TimeoutError):  # the probe: it waits its timeout and opens the circuit again
        client.get("k")
    with pytest.raises(circuit.CircuitOpen):
        client.get("k")


@pytest.mark.integration  # the production configuration's real Redis (REDIS_URL): a missing one fails the test
def test_a_reply_closes_the_circuit(db):
    """A server that answers after its circuit opened is used again once its open time is up (a real Redis)."""
    import os

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    key = circuit.key_for_url(url)
    client = redis.Redis.from_url(url, **circuit.client_options(url))
    circuit.reset()
    try:
        with override_personalization(REDIS_CIRCUIT_SECONDS=0.1):
            circuit.trip(key)
            with pytest.raises(circuit.CircuitOpen):
                client.ping()
            time.sleep(0.15)
            assert client.ping() is True  # the probe
            assert key not in circuit._breaker.open_until
            assert client.ping() is True
    finally:
        circuit.reset()


def test_the_hosts_timeouts_win_over_the_apps(black_hole):
    options = circuit.client_options(black_hole, socket_timeout=0.05)
    assert options["socket_timeout"] == 0.05 and options["socket_connect_timeout"] == 0.3


# --- pages and APIs against a hung Redis ------------------------------------------------------------------------

def test_pages_and_apis_answer_within_a_second_and_keep_every_event(shop, make_browser, hung_redis):
    from storefront_demo.shop.models import Product

    product = Product.objects.order_by("pk").first()
    browser = make_browser()
    before = Event.objects.count()
    page, first = timed(lambda: browser.get(f"/p/{product.pk}/"))
    assert page.status_code == 200
    assert first < 2.0  # one socket timeout (0.5 s) at most, then the circuit skips Redis
    assert circuit.is_open(circuit.key_for_url(hung_redis))
    figures = {"first product page": first}
    event = {"event": "add_to_cart", "item": f"product:{product.pk}"}
    for name, call in (("product page", lambda: browser.get(f"/p/{product.pk}/")),
                       ("POST events/", lambda: browser.send(event)),
                       ("GET recommendations/", lambda: browser.get(RECOMMENDATIONS, data={"n": 4}))):
        response, elapsed = timed(call)
        figures[name] = elapsed
        assert response.status_code in (200, 202), response.content[:300]
        assert elapsed < 1.0, f"{name}: {elapsed:.2f} s"
    print("\nhung Redis (README \"Faults\"): " + ", ".join(f"{k} {v:.2f} s" for k, v in figures.items()))
    assert response.json()["items"]  # the recommendations still come (popular items or the live model)
    stored = Event.objects.filter(pk__gt=0).count() - before
    assert stored == 3  # two page views and the API's event: straight to the database
    assert Event.objects.filter(event_type="add_to_cart", item_key=f"product:{product.pk}").exists()


def test_the_apps_cache_gets_timeouts_and_the_guarded_connection(hung_redis):
    backend = shared_cache.cache()
    options = backend._cache._pool_options
    assert options["socket_timeout"] == 0.5 and options["socket_connect_timeout"] == 0.3
    assert options["connection_class"] is circuit.GuardedConnection
    assert shared_cache.get("anything") is None  # a miss, not a hang or an error


# --- the system check ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("backend", "options", "warned"), [
    ("django.core.cache.backends.redis.RedisCache", {}, True),
    ("django.core.cache.backends.redis.RedisCache", {"socket_timeout": 0.5}, True),
    ("django.core.cache.backends.redis.RedisCache", {"socket_timeout": 0.5, "socket_connect_timeout": 0.3}, False),
    ("django_redis.cache.RedisCache", {"SOCKET_TIMEOUT": 1}, True),
    ("django.core.cache.backends.locmem.LocMemCache", {}, False),
])
def test_w009_warns_about_a_redis_cache_without_timeouts(backend, options, warned):
    caches = {"default": {"BACKEND": backend, "LOCATION": "redis://127.0.0.1:6379/1", "OPTIONS": options}}
    with override_settings(CACHES=caches):
        from personalization.checks import check_redis_timeouts

        messages = [m for m in check_redis_timeouts() if m.id == "personalization.W009"]
    assert bool(messages) is warned
    if warned:
        assert "never answers" in messages[0].msg and "timeout" in messages[0].hint


@override_personalization(REDIS_SOCKET_TIMEOUT=0)
def test_e014_rejects_a_zero_timeout():
    assert "personalization.E014" in {m.id for m in run_checks()}


# --- the Celery broker -------------------------------------------------------------------------------------------

def test_after_a_silent_broker_the_next_hand_over_runs_here_at_once(db, black_hole):
    """The first task waits for the broker's timeout; the next ones skip it while its circuit is open."""
    from personalization import background_runs, tasks

    conf = tasks.train_models.app.conf
    saved = {"broker_url": conf.broker_url, "task_always_eager": conf.task_always_eager}
    conf.update(broker_url=black_hole, task_always_eager=False)
    ran = []
    try:
        _, first = timed(lambda: tasks._hand_over(tasks.train_models, lambda **kw: ran.append(kw), "circuit-a", x=1))
        assert circuit.is_open(circuit.key_for_url(black_hole))
        _, second = timed(lambda: tasks._hand_over(tasks.train_models, lambda **kw: ran.append(kw), "circuit-b",
                                                   x=2))
    finally:
        conf.update(saved)
    assert background_runs.wait(10)
    assert first < 3.0 and second < 0.05, (first, second)
    assert sorted(r["x"] for r in ran) == [1, 2]  # both ran in this process
    assert "failed moments ago" in background_runs.reason_for("circuit-b")
