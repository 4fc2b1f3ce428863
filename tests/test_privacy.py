"""Data rights against the real database: forgetting removes every row of the person (per table) and nobody else's,
through the command, the admin and the user's deletion alike; export returns it all; retention purges old rows."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Q
from django.utils import timezone

from personalization import privacy, serving
from personalization.models import (
    Event,
    ForgetRequest,
    Notification,
    NotificationPreference,
    RecommendationLog,
    VisitorLink,
)

pytestmark = pytest.mark.django_db


def event(kind="view", item="product:1", *, user=None, visitor="", days_ago=0.0):
    when = timezone.now() - timedelta(days=days_ago)
    return Event.objects.create(event_type=kind, item_key=item, user=user, visitor_id=visitor, occurred_at=when,
                                received_at=when)


def person_rows(user, visitors=("visitor-a", "visitor-b")):
    """A user with events on two browsers (one linked at sign-in, one anonymous before), logs, notifications."""
    for visitor in visitors:
        VisitorLink.objects.create(visitor_id=visitor, user=user)
        event("view", "product:1", user=user, visitor=visitor)
        event("view", "product:2", visitor=visitor)  # anonymous, before signing in on that browser
    event("purchase", "product:3", user=user)
    for subject in [f"u:{user.pk}", *(f"v:{v}" for v in visitors)]:
        RecommendationLog.objects.create(id=uuid.uuid4().hex, subject=subject, created_at=timezone.now())
    Notification.objects.create(user=user, channel="inbox", idempotency_key=uuid.uuid4().hex, subject="Hi")
    NotificationPreference.objects.create(user=user, timezone="Europe/Paris")


def rows_of(user, visitors):
    subjects = [f"u:{user.pk}", *(f"v:{v}" for v in visitors)]
    return {
        "events": Event.objects.filter(Q(user_id=user.pk) | Q(visitor_id__in=visitors)).count(),
        "visitor_links": VisitorLink.objects.filter(user_id=user.pk).count(),
        "recommendation_logs": RecommendationLog.objects.filter(subject__in=subjects).count(),
        "notifications": Notification.objects.filter(user_id=user.pk).count(),
        "notification_preferences": NotificationPreference.objects.filter(user_id=user.pk).count(),
    }


NONE = dict.fromkeys(privacy.TABLES, 0)


@pytest.fixture
def two_people(django_user_model):
    me = django_user_model.objects.create_user("me", "me@example.com", "pw")
    other = django_user_model.objects.create_user("other", "other@example.com", "pw")
    person_rows(me, ("me-1", "me-2"))
    person_rows(other, ("other-1",))
    return me, other


def test_forgetting_a_user_deletes_every_row_of_theirs_and_nobody_elses(two_people, django_capture_on_commit_callbacks):
    me, other = two_people
    others_before = rows_of(other, ["other-1"])
    with django_capture_on_commit_callbacks(execute=True):
        receipt = privacy.forget(user_id=me.pk, channel="command", requested_by="test")

    assert rows_of(me, ["me-1", "me-2"]) == NONE
    assert receipt.counts == {"events": 5, "visitor_links": 2, "recommendation_logs": 3, "notifications": 1,
                              "notification_preferences": 1}
    assert receipt.subjects == 3
    assert rows_of(other, ["other-1"]) == others_before  # another person's data is untouched
    audit = ForgetRequest.objects.get(pk=receipt.request_id)
    assert audit.counts == receipt.counts and audit.channel == "command"
    stored = json.dumps([audit.subject_hash, audit.subject_hashes, audit.counts, audit.requested_by])
    for personal in (f"u:{me.pk}", "me-1", "me-2", "me@example.com", "\"me\""):
        assert personal not in stored  # the audit record names nobody
    assert audit.subject_hash == serving.subject_hash(f"u:{me.pk}")


def test_a_visitor_linked_to_a_user_forgets_that_user(two_people, django_capture_on_commit_callbacks):
    me, other = two_people
    with django_capture_on_commit_callbacks(execute=True):
        privacy.forget(visitor_id="me-2")
    assert rows_of(me, ["me-1", "me-2"]) == NONE
    assert rows_of(other, ["other-1"])["events"] == 3


def test_an_anonymous_visitor_is_forgotten_without_touching_signed_in_events(db, django_user_model):
    user = django_user_model.objects.create_user("u", "u@example.com", "pw")
    event("view", visitor="anon")
    event("click", visitor="anon")
    event("view", visitor="anon", user=user)  # the same browser id, another person's signed-in event
    RecommendationLog.objects.create(id="r1", subject="v:anon", created_at=timezone.now())

    receipt = privacy.forget(visitor_id="anon")

    assert receipt.counts["events"] == 2 and receipt.counts["recommendation_logs"] == 1
    assert list(Event.objects.values_list("user_id", flat=True)) == [user.pk]


def test_forgetting_twice_is_harmless(two_people):
    me, _ = two_people
    privacy.forget(user_id=me.pk)
    assert privacy.forget(user_id=me.pk).counts == NONE
    assert ForgetRequest.objects.count() == 2


def test_deleting_a_user_forgets_them(two_people, django_capture_on_commit_callbacks):
    me, other = two_people
    pk = me.pk
    with django_capture_on_commit_callbacks(execute=True):
        me.delete()
    me.pk = pk
    assert rows_of(me, ["me-1", "me-2"]) == NONE  # before, their events stayed under their visitor ids
    assert rows_of(other, ["other-1"])["events"] == 3
    audit = ForgetRequest.objects.get()
    assert audit.channel == "user_deleted" and audit.counts["events"] == 5


def test_forget_command_prints_the_receipt(two_people):
    me, _ = two_people
    out = StringIO()
    call_command("personalization_forget", "--user", str(me.pk), stdout=out)
    assert "deleted 5 events, 2 visitor links, 3 recommendation logs, 1 notifications" in out.getvalue()
    out = StringIO()
    call_command("personalization_forget", "--visitor", "other-1", "--json", stdout=out)
    assert json.loads(out.getvalue())["deleted"]["events"] == 3


@pytest.mark.parametrize("args, hint", [
    ([], "one of the arguments --user --visitor is required"),
    (["--user", "1", "--visitor", "x"], "not allowed with argument"),
    (["--user", "0"], "A user id is a positive integer"),
    (["--visitor", " "], "A visitor id is 1 to 64 characters"),
    (["--visitor", "x" * 65], "E.g. --user 42"),
])
def test_forget_command_rejects_bad_input_with_a_hint(db, args, hint):
    with pytest.raises(CommandError, match=hint):
        call_command("personalization_forget", *args, stdout=StringIO())


@pytest.mark.parametrize("args", [[], ["--user", "-3"], ["--visitor", ""]])
def test_export_command_rejects_bad_input_with_a_hint(db, args):
    with pytest.raises(CommandError, match="--user|E.g."):
        call_command("personalization_export_person", *args, stdout=StringIO())


def test_export_returns_everything_stored_about_the_person_and_nothing_else(two_people, tmp_path):
    me, _ = two_people
    out = StringIO()
    call_command("personalization_export_person", "--user", str(me.pk), stdout=out)
    data = json.loads(out.getvalue())
    assert data["user_id"] == me.pk and data["visitor_ids"] == ["me-1", "me-2"]
    assert len(data["events"]) == 5 and {e["visitor_id"] for e in data["events"]} <= {"", "me-1", "me-2"}
    assert {e["event_type"] for e in data["events"]} == {"view", "purchase"}
    assert len(data["visitor_links"]) == 2 and len(data["recommendation_logs"]) == 3
    assert data["notifications"][0]["subject"] == "Hi"
    assert data["notification_preferences"] == [{"opted_out": False, "timezone": "Europe/Paris",
                                                 "updated_at": data["notification_preferences"][0]["updated_at"]}]
    assert data["live_model"] == {"model_version": None, "rows": {}}
    assert "other" not in out.getvalue()

    target = tmp_path / "me.json"
    call_command("personalization_export_person", "--visitor", "me-1", "--output", str(target), stdout=StringIO())
    assert json.loads(target.read_text())["events"] == data["events"]
    with pytest.raises(CommandError, match="Give a writable path"):
        call_command("personalization_export_person", "--user", str(me.pk), "--output", str(tmp_path / "no" / "x"))


@pytest.mark.integration
def test_events_still_in_the_redis_buffer_are_forgotten_too(two_people, settings, django_capture_on_commit_callbacks):
    """The collector's buffer is flushed once the erasure commits, and what it held of the person is deleted."""
    import os

    import redis

    from personalization.tracking.collectors import get_collector
    from personalization.tracking.schema import EventData

    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/9"  # as tests/tracking/test_redis_collector.py
    key = f"test:personalization:privacy:{uuid.uuid4().hex}"
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "REDIS_URL": url, "REDIS_STREAM_KEY": key,
                                "COLLECTOR_BACKEND": "personalization.tracking.collectors.RedisCollector"}
    me, other = two_people
    buffered = []
    for user, visitor in ((me, "me-1"), (other, "other-1")):
        data = EventData(event_type="add_to_cart", item_key="product:9", event_id=uuid.uuid4(),
                         occurred_at=timezone.now(), source="python")
        data.visitor_id, data.user_id = visitor, user.pk
        buffered.append(data)
    try:
        assert get_collector().collect(buffered).accepted == 2
        with django_capture_on_commit_callbacks(execute=True):
            receipt = privacy.forget(user_id=me.pk)
        assert receipt.counts["events"] == 6  # 5 in the table + 1 still in the buffer
        assert rows_of(me, ["me-1", "me-2"]) == NONE
        assert Event.objects.filter(user_id=other.pk, event_type="add_to_cart").count() == 1  # theirs is kept
        assert ForgetRequest.objects.get().counts["events"] == 6
    finally:
        connection = redis.Redis.from_url(url)
        stale = list(connection.scan_iter(f"{key}*"))
        if stale:
            connection.delete(*stale)
        connection.close()


# --- retention ------------------------------------------------------------------------------------------------

def old_and_new_rows(user):
    for days_ago in (400, 10):
        event(user=user, days_ago=days_ago)
        when = timezone.now() - timedelta(days=days_ago)
        RecommendationLog.objects.create(id=uuid.uuid4().hex, subject="v:x", created_at=when)
        note = Notification.objects.create(user=user, channel="inbox", idempotency_key=uuid.uuid4().hex, subject="s")
        Notification.objects.filter(pk=note.pk).update(created_at=when)


def test_purge_deletes_rows_older_than_the_limit_in_batches(db, django_user_model):
    user = django_user_model.objects.create_user("u", "u@example.com", "pw")
    old_and_new_rows(user)
    for _ in range(4):
        event(user=user, days_ago=500)
    out = StringIO()
    call_command("personalization_purge", "--days", "365", "--batch-size", "2", stdout=out)
    assert out.getvalue().strip() == "Purged 5 events, 1 recommendation logs, 1 notifications, 0 audit reports."
    assert Event.objects.count() == RecommendationLog.objects.count() == Notification.objects.count() == 1


def test_purge_needs_a_limit(db):
    with pytest.raises(CommandError, match=r"set PERSONALIZATION\['RETENTION_DAYS'\]"):
        call_command("personalization_purge", stdout=StringIO())
    with pytest.raises(CommandError, match="positive number of days"):
        call_command("personalization_purge", "--days", "0", stdout=StringIO())


def test_the_beat_task_purges_with_retention_days(db, django_user_model, settings):
    from personalization.schedules import BEAT_SCHEDULE
    from personalization.tasks import purge_expired_data

    user = django_user_model.objects.create_user("u", "u@example.com", "pw")
    old_and_new_rows(user)
    assert purge_expired_data() is None and Event.objects.count() == 2  # default: keep everything
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "RETENTION_DAYS": 30}
    assert purge_expired_data() == {"events": 1, "recommendation_logs": 1, "notifications": 1, "audit_reports": 0}
    assert any(e["task"] == "personalization.purge_expired_data" for e in BEAT_SCHEDULE.values())


def test_an_invalid_retention_limit_fails_the_checks(settings):
    from personalization.checks import check_settings

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "RETENTION_DAYS": "a year"}
    assert "personalization.E030" in [e.id for e in check_settings()]


# --- admin ----------------------------------------------------------------------------------------------------

def test_admin_forgets_a_person_by_user_id_and_keeps_the_audit_log(admin_client, two_people,
                                                                   django_capture_on_commit_callbacks):
    me, other = two_people
    url = "/admin/personalization/forgetrequest/forget/"
    assert "Forget a person" in admin_client.get("/admin/personalization/forgetrequest/").content.decode()
    assert admin_client.post(url, {"user_id": "", "visitor_id": ""}).status_code == 400

    download = admin_client.post(url, {"user_id": me.pk, "export": "1"})
    assert download["Content-Disposition"].startswith("attachment") and len(download.json()["events"]) == 5

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"user_id": me.pk, "forget": "1"}, follow=True)
    assert "deleted 5 events" in response.content.decode()
    assert rows_of(me, ["me-1", "me-2"]) == NONE and rows_of(other, ["other-1"])["events"] == 3
    audit = ForgetRequest.objects.get()
    assert audit.channel == "admin" and audit.requested_by == "admin"
    assert admin_client.post(f"/admin/personalization/forgetrequest/{audit.pk}/delete/").status_code == 403


def test_admin_action_forgets_the_people_behind_selected_events(admin_client, two_people):
    me, other = two_people
    mine = Event.objects.filter(user_id=me.pk).first()
    admin_client.post("/admin/personalization/event/", {"action": "forget_event_people",
                                                        "_selected_action": [mine.pk]})
    assert rows_of(me, ["me-1", "me-2"]) == NONE and rows_of(other, ["other-1"])["events"] == 3


def test_staff_without_the_permission_cannot_forget(client, two_people, django_user_model):
    staff = django_user_model.objects.create_user("staff", "s@example.com", "pw", is_staff=True)
    client.force_login(staff)
    assert client.post("/admin/personalization/forgetrequest/forget/", {"user_id": two_people[0].pk}).status_code == 403
    assert Event.objects.filter(user_id=two_people[0].pk).exists()
