"""``GET`` / ``DELETE me/data/``: the signed-in person exports or erases their own data, and only theirs."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.utils import timezone

from personalization.models import Event, ForgetRequest, Notification, RecommendationLog, VisitorLink

pytestmark = pytest.mark.django_db
URL = "/api/personalization/me/data/"


@pytest.fixture
def people(django_user_model):
    made = []
    for name in ("me", "other"):
        user = django_user_model.objects.create_user(name, f"{name}@example.com", "pw")
        now = timezone.now()
        VisitorLink.objects.create(visitor_id=f"{name}-browser", user=user)
        Event.objects.create(event_type="view", item_key="product:1", visitor_id=f"{name}-browser", user=user,
                             occurred_at=now, received_at=now)
        Event.objects.create(event_type="click", item_key="product:2", visitor_id=f"{name}-browser",
                             occurred_at=now, received_at=now)
        RecommendationLog.objects.create(id=uuid.uuid4().hex, subject=f"u:{user.pk}", created_at=now)
        Notification.objects.create(user=user, channel="inbox", idempotency_key=uuid.uuid4().hex, subject="Hi")
        made.append(user)
    return made


def test_both_need_a_signed_in_person(client, people):
    assert client.get(URL).status_code in (401, 403)
    assert client.delete(URL).status_code in (401, 403)
    assert Event.objects.count() == 4 and not ForgetRequest.objects.exists()


def test_get_exports_only_the_callers_data(client, people):
    me, other = people
    client.force_login(me)
    data = client.get(URL).json()
    assert data["user_id"] == me.pk
    assert "me-browser" in data["visitor_ids"] and len(data["visitor_ids"]) == 2  # + this session's, linked at login
    assert {(e["event_type"], e["visitor_id"]) for e in data["events"]} == {("view", "me-browser"),
                                                                           ("click", "me-browser")}
    assert [r["subject"] for r in data["recommendation_logs"]] == [f"u:{me.pk}"]
    assert len(data["notifications"]) == 1
    assert "other" not in str(data) and str(other.pk) not in {str(e["user_id"]) for e in data["events"]}


def test_delete_forgets_only_the_caller(client, people, django_capture_on_commit_callbacks):
    me, other = people
    client.force_login(me)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(URL)
    assert response.status_code == 200
    receipt = response.json()
    assert receipt["deleted"] == {"events": 2, "visitor_links": 2, "recommendation_logs": 1, "notifications": 1,
                                  "notification_preferences": 0}
    assert ForgetRequest.objects.get(pk=receipt["forget_request"]).channel == "api"
    assert not Event.objects.filter(visitor_id="me-browser").exists()
    assert not Notification.objects.filter(user=me).exists() and not VisitorLink.objects.filter(user=me).exists()
    assert Event.objects.filter(visitor_id="other-browser").count() == 2  # nobody else's data is touched
    assert Notification.objects.filter(user=other).count() == 1
    assert RecommendationLog.objects.filter(subject=f"u:{other.pk}").count() == 1


def test_delete_needs_the_csrf_token_of_a_session(people):
    client = Client(enforce_csrf_checks=True)
    client.force_login(people[0])
    assert client.delete(URL).status_code == 403
    assert Event.objects.count() == 4


def test_database_trouble_answers_503_with_retry_after(client, people, monkeypatch):
    from django.db import OperationalError

    from personalization import privacy

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(privacy, "forget", down)
    client.force_login(people[0])
    response = client.delete(URL)
    assert response.status_code == 503 and response["Retry-After"] == "30"
