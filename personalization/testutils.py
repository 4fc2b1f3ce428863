"""Helpers for host projects' tests: reset the app's process-wide state, capture events, override settings.

Use them from a site's own test suite (pytest or Django's ``TestCase``)::

    from personalization.testutils import capture_events, override_personalization, reset_state

    def test_checkout_records_a_purchase(client):
        with capture_events() as events:
            client.post("/checkout/", {...})
        assert [e.event_type for e in events] == ["purchase"]

    @override_personalization(CONSENT_REQUIRED=True)
    def test_no_consent_no_events(client): ...

The app keeps some state per process for speed (settings and the objects built from them, serving's item table,
the rate-limit book, the near cache of Redis entries); :func:`reset_state` empties all of it, for a test that
must not see what an earlier one left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings as django_settings
from django.test.utils import override_settings

from personalization import background_runs, circuit, shared_cache
from personalization.conf import settings
from personalization.near_cache import near_cache
from personalization.ratelimit import book
from personalization.tracking.collectors import MemoryCollector
from personalization.tracking.schema import EventData

__all__ = ["capture_events", "override_personalization", "reset_state"]


def reset_state(wait_seconds: float = 60.0) -> None:
    """Forget the app's process-wide state: settings and what is built from them (collector, catalog adapter,
    serving's item table), this process's rate-limit counts, its Redis circuit breakers and the near-cache copy of
    the shared cache.

    First it waits (up to ``wait_seconds``) for the training or precompute runs this process started in a thread
    (eager tasks, no broker), so one test's run cannot write into the next test's database.
    It does not empty the cache itself, the database or the events a :func:`capture_events` block holds.
    """
    background_runs.wait(timeout=wait_seconds)
    settings.reload()
    book.clear()
    circuit.reset()
    near = near_cache(shared_cache.cache())
    if near is not None:
        near.clear()


class override_personalization(override_settings):  # noqa: N801 - used like Django's override_settings
    """``override_settings`` for some keys of ``PERSONALIZATION``: the others keep the site's values.

    A decorator (of test functions and classes) or a context manager. The app reloads its settings on enter and
    on exit, as for any ``override_settings`` of ``PERSONALIZATION``.
    """

    def __init__(self, **keys: Any) -> None:
        self.keys = keys
        super().__init__()

    def enable(self) -> None:
        current = getattr(django_settings, "PERSONALIZATION", {}) or {}
        self.options = {"PERSONALIZATION": {**current, **self.keys}}
        super().enable()


@contextmanager
def capture_events() -> Iterator[list[EventData]]:
    """Record the events tracked inside the block in a list instead of storing them (``MemoryCollector``).

    The list fills as events are tracked (page views are collected within their request meanwhile, not by the
    background writer) and holds validated :class:`~personalization.tracking.schema.EventData`: type, item key,
    visitor, user, value and context, as the collector would have stored them.
    """
    captured: list[EventData] = []
    before = MemoryCollector.events
    MemoryCollector.events = captured
    try:
        with override_personalization(COLLECTOR_BACKEND="personalization.tracking.collectors.MemoryCollector",
                                      MIDDLEWARE_WRITE="inline"):
            yield captured
    finally:
        MemoryCollector.events = before
