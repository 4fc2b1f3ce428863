"""Ingestion counters: what tracking took in or left out, counted on the real path and kept per day."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.utils import timezone

from personalization.models import IngestionCounter
from personalization.monitoring.counters import persist_counters

pytestmark = pytest.mark.django_db
BOT_UA = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"


def stored(name: str) -> int:
    row = IngestionCounter.objects.filter(day=timezone.now().date(), name=name).first()
    return row.count if row else 0


def test_every_outcome_of_the_events_api_is_counted_and_persisted(make_browser, product, settings):
    item = f"product:{product.pk}"
    browser = make_browser()
    event = {"event": "view", "item": item, "event_id": str(uuid.uuid4())}
    assert browser.send({"events": [event, {"event": "view", "item": item}]}).json()["accepted"] == 2
    assert browser.send(event).json()["duplicates"] == 1  # a retried event
    assert browser.send({"events": [{"event": "view"}, {"event": "nope"}]}).status_code == 400
    assert make_browser(HTTP_USER_AGENT=BOT_UA).send({"event": "view", "item": item}).json()["reason"] == "bot"
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CONSENT_REQUIRED": True}
    assert make_browser().send({"event": "view", "item": item}).json()["reason"] == "no_consent"

    days = persist_counters()
    today = days[timezone.now().date().isoformat()]
    assert today == {"accepted_events": 2, "duplicate_events": 1, "invalid_events": 2, "bot_events": 1,
                     "no_consent_events": 1, "rate_limited_events": 0}
    assert {name: stored(name) for name in today if today[name]} == {k: v for k, v in today.items() if v}
    assert len(days) == 8


def test_rate_limited_events_are_counted(make_browser, product, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "RATE_LIMIT_EVENTS": 2}
    browser = make_browser()
    for _ in range(4):
        browser.send({"event": "view", "item": f"product:{product.pk}"})
    persist_counters()
    assert stored("rate_limited_events") == 2 and stored("accepted_events") == 2


def test_persisting_is_idempotent_and_never_loses_counts_when_the_cache_is_emptied(make_browser, product):
    make_browser(HTTP_USER_AGENT=BOT_UA).send({"events": [{"event": "view", "item": f"product:{product.pk}"}] * 3})
    persist_counters()
    persist_counters()
    assert stored("bot_events") == 3
    caches["default"].clear()  # e.g. Redis restarted
    persist_counters()
    assert stored("bot_events") == 3 and IngestionCounter.objects.filter(name="bot_events").count() == 1


def test_accepted_events_are_counted_on_the_day_they_arrived_and_imports_are_left_out(traffic):
    from personalization.models import Event

    yesterday = timezone.now().date() - timedelta(days=1)
    days = persist_counters()
    start = timezone.datetime.combine(yesterday, timezone.datetime.min.time(), tzinfo=timezone.get_fixed_timezone(0))
    expected = Event.objects.filter(received_at__gte=start, received_at__lt=start + timedelta(days=1)).count()
    assert days[yesterday.isoformat()]["accepted_events"] == expected > 0
    when = timezone.now() - timedelta(days=200)
    traffic.add([traffic.event(when, source="import", received_at=timezone.now()) for _ in range(5)])
    assert persist_counters()[timezone.now().date().isoformat()]["accepted_events"] == stored("accepted_events")
    assert stored("accepted_events") == Event.objects.filter(
        received_at__date=timezone.now().date()).exclude(source="import").count()


def test_the_hourly_task_copies_the_counters(make_browser, product):
    from personalization.schedules import BEAT_SCHEDULE
    from personalization.tasks import persist_ingestion_counters

    assert any(e["task"] == "personalization.persist_ingestion_counters" for e in BEAT_SCHEDULE.values())
    make_browser(HTTP_USER_AGENT=BOT_UA).send({"event": "view", "item": f"product:{product.pk}"})
    assert persist_ingestion_counters()[timezone.now().date().isoformat()]["bot_events"] == 1
    assert stored("bot_events") == 1
