"""Production path: tracking's counters in Redis reach PostgreSQL and a real Celery worker's audit report."""

from __future__ import annotations

import json
import uuid

import pytest
from django.utils import timezone

from personalization.models import AuditReport, Event, IngestionCounter

pytestmark = pytest.mark.integration
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def post(client, events, ua=UA):
    return client.post("/api/personalization/events/", data=json.dumps({"events": events}),
                       content_type="application/json", HTTP_USER_AGENT=ua)


def test_the_worker_persists_the_counters_and_saves_an_audit_report(
    celery_worker_process, client, settings, redis_url, stream_key
):
    if not settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        pytest.fail("This test needs the shared Redis cache (CACHE_URL=redis://...): the worker reads tracking's "
                    "counters from it.")
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "REDIS_URL": redis_url, "REDIS_STREAM_KEY": stream_key,
                                "COLLECTOR_BACKEND": "personalization.tracking.collectors.RedisCollector"}
    events = [{"event": "view", "item": f"product:{i % 5}", "event_id": str(uuid.uuid4())} for i in range(40)]
    assert post(client, events).json()["accepted"] == 40
    assert post(client, events[:10]).json()["duplicates"] == 10
    assert post(client, events[:6], ua=BOT).json()["reason"] == "bot"
    assert celery_worker_process.send_task("personalization.flush_events").get(timeout=60) == 40

    result = celery_worker_process.send_task("personalization.audit_data").get(timeout=120)

    report = AuditReport.objects.get(pk=result["report"])
    assert report.trigger == "schedule" and report.status == result["status"]
    today = dict(IngestionCounter.objects.filter(day=timezone.now().date()).values_list("name", "count"))
    assert today == {"accepted_events": 40, "duplicate_events": 10, "bot_events": 6}
    assert Event.objects.count() == 40
    names = {c["name"] for c in report.checks}
    assert {"event_volume", "duplicates", "bots", "clock_skew", "attribution"} <= names
