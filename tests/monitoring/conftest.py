"""Monitoring tests: a shop's steady traffic over the audit window (the baseline every audit check must pass on);
every test starts and ends with no running experiment (nor experiment version) remembered by this process; the
serving ones share a trained shop with a second, not live, version per module."""


from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from personalization.models import Event, RecommendationLog
from personalization.serving import arms, live
from tests.monitoring.shop import challenger_shop_fixture, versions_fixture  # noqa: F401
from tests.serving.shop import live_shop_fixture, shop_fixture  # noqa: F401

CONTEXT = {"device": "desktop", "os": "Windows", "browser": "Chrome", "country": "DE"}


@dataclass
class Traffic:
    now: datetime
    end: datetime  # the audit window's end (complete hours)
    products: list
    keys: list[str]

    def event(self, when: datetime, event_type: str = "view", item: str | None = None, visitor: str = "v-1",
              **fields) -> Event:
        """An unsaved event as tracking stores it (received two seconds after it happened)."""
        context = fields.pop("context", None)
        if context is None:
            context = {**CONTEXT, "hour": when.hour, "weekday": when.weekday()}
        values = {"event_type": event_type, "item_key": self.keys[0] if item is None else item,
                  "visitor_id": visitor, "occurred_at": when, "received_at": when + timedelta(seconds=2),
                  "source": Event.Source.TRACKER, "context": context, **fields}
        return Event(**values)

    def add(self, events: list[Event]) -> None:
        Event.objects.bulk_create(events, batch_size=2000)


@pytest.fixture
def traffic(make_product) -> Traffic:
    """29 days of hourly traffic up to the last complete hour: 5-7 views, 2 attributed impressions and one
    attributed click an hour, from ten visitors on five products that exist and are in stock."""
    now = timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0)
    products = [make_product() for _ in range(5)]
    keys = [f"product:{p.pk}" for p in products]
    data = Traffic(now, end, products, keys)
    events, logs = [], []
    start = end - timedelta(days=29)
    for index in range(29 * 24):
        hour = start + timedelta(hours=index)
        for n in range(5 + index % 3):
            events.append(data.event(hour + timedelta(minutes=n * 7), item=keys[n % 5], visitor=f"v-{n + index % 5}"))
        rec_id = f"rec{index}"
        logs.append(RecommendationLog(id=rec_id, subject="v:v-1", items=[{"item": keys[1]}], created_at=hour))
        for n in range(2):
            events.append(data.event(hour + timedelta(minutes=40 + n), "impression", keys[1 + n],
                                     recommendation_id=rec_id))
        events.append(data.event(hour + timedelta(minutes=45), "click", keys[1], recommendation_id=rec_id))
    RecommendationLog.objects.bulk_create(logs)
    data.add(events)
    return data


@pytest.fixture(autouse=True)
def _fresh_experiments():
    arms.forget_running()
    live._extra.systems.clear()
    live._extra.failed.clear()
    yield
    arms.forget_running()
    live._extra.systems.clear()
    live._extra.failed.clear()
