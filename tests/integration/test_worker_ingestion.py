"""Production path: events buffered in Redis by the API are written to PostgreSQL by a real Celery worker."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from personalization.models import Event

pytestmark = pytest.mark.integration
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"


def test_api_events_reach_postgres_through_redis_and_the_worker(
    celery_worker_process, client, settings, redis_url, stream_key
):
    settings.PERSONALIZATION = {
        **settings.PERSONALIZATION,
        "COLLECTOR_BACKEND": "personalization.tracking.collectors.RedisCollector",
        "REDIS_URL": redis_url,
        "REDIS_STREAM_KEY": stream_key,
    }
    events = [
        {"event": "view", "item": f"product:{i % 7}", "event_id": str(uuid.uuid4())} for i in range(120)
    ]
    response = client.post("/api/personalization/events/", data=json.dumps({"events": events}),
                           content_type="application/json", HTTP_USER_AGENT=UA)
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 120

    # Buffered, not yet in the database.
    assert redis.Redis.from_url(redis_url).llen(stream_key) == 120
    assert Event.objects.count() == 0

    written = celery_worker_process.send_task("personalization.flush_events").get(timeout=60)
    assert written == 120
    assert Event.objects.count() == 120
    assert set(Event.objects.values_list("event_id", flat=True)) == {uuid.UUID(e["event_id"]) for e in events}
    assert redis.Redis.from_url(redis_url).llen(stream_key) == 0

    # A retried batch is recognised in Redis and never stored twice.
    again = client.post("/api/personalization/events/", data=json.dumps({"events": events[:10]}),
                        content_type="application/json", HTTP_USER_AGENT=UA)
    assert again.json() == {"accepted": 0, "duplicates": 10, "dropped": 0}
    assert celery_worker_process.send_task("personalization.flush_events").get(timeout=60) == 0
    assert Event.objects.count() == 120
