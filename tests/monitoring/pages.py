"""Helpers of the dashboard tests: the page's address, one panel's HTML, a served list with its outcomes."""

from __future__ import annotations

import re

from django.contrib.auth.models import Permission
from django.utils import timezone

from personalization.models import Event, RecommendationLog

URL = "/admin/personalization/dashboard/"


def panel_html(page: str, key: str) -> str:
    """The HTML of one panel's section."""
    match = re.search(rf'<section class="pers-panel" id="panel-{key}".*?</section>', page, re.S)
    assert match, f"panel {key} missing"
    return match.group(0)


def login_staff(client, django_user_model, *codenames: str, name: str = "staffer"):
    user = django_user_model.objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


def served(version_id: int | None, slot: str, impressions: int, clicks: int, purchases: int,
            when=None) -> RecommendationLog:
    """A served list and the outcomes that carry its recommendation_id."""
    now = when or timezone.now()
    log = RecommendationLog.objects.create(id=f"r{RecommendationLog.objects.count()}x{slot}{version_id}",
                                           subject="v:x", slot=slot, model_version_id=version_id, items=[],
                                           created_at=now)
    rows = [("impression", impressions), ("click", clicks), ("purchase", purchases)]
    Event.objects.bulk_create([
        Event(event_type=kind, item_key="product:1", visitor_id="x", occurred_at=now, received_at=now,
              recommendation_id=log.id)
        for kind, count in rows for _ in range(count)
    ])
    return log
