"""The popularity fallback (no live model) ranks items by distinct people, so one visitor's burst cannot poison it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from personalization.models import Event
from personalization.serving import popular


def _events(item: str, visitors: list[str], per_visitor: int = 1, user=None) -> list[Event]:
    now = timezone.now() - timedelta(hours=1)
    return [Event(event_type="view", item_key=item, visitor_id=v, user=user, occurred_at=now, received_at=now)
            for v in visitors for _ in range(per_visitor)]


@pytest.mark.django_db
def test_a_burst_from_one_visitor_does_not_make_an_item_number_one(django_user_model):
    user = django_user_model.objects.create_user("shopper")
    Event.objects.bulk_create(
        _events("product:1", ["a", "b", "c"]) + _events("product:2", ["a", "b"])
        + _events("product:9", ["attacker"], per_visitor=500)  # 500 views from one visitor
        + _events("product:3", ["d", "e"], user=user)  # one signed-in person on two devices: one person
    )
    ranked = [r.item for r in popular.popular(4, set())]
    assert ranked[:2] == ["product:1", "product:2"]
    assert set(ranked[2:]) == {"product:3", "product:9"}  # one person each (the signed-in user on two devices too)
