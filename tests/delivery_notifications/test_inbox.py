"""The in-app inbox API (own notifications only, mark read), the badge tag, the admin pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.template import Context, Template
from django.test import RequestFactory

from personalization.models import Notification

from .conftest import NOW, add_event, run

INBOX = "/api/personalization/notifications/"


@pytest.fixture
def two_inboxes(engaged, inactive, make_rule, catalog):
    """Inbox messages for two users (two rules, so the engaged user has two) plus an email one."""
    make_rule(channel="inbox", name="ideas")
    add_event(engaged, "add_to_cart", catalog[3].item_key, NOW - timedelta(hours=10))
    make_rule("abandoned_cart", channel="inbox", name="cart", subject="Your cart")
    make_rule(channel="email", name="mail")
    run()
    assert Notification.objects.filter(user=engaged, channel="inbox").count() == 2
    return engaged, inactive


def test_inbox_lists_only_my_in_app_notifications(two_inboxes, client):
    me, other = two_inboxes
    client.force_login(me)
    body = client.get(INBOX).json()
    assert body["unread"] == 2
    assert len(body["results"]) == 2
    mine = set(Notification.objects.filter(user=me, channel="inbox").values_list("pk", flat=True))
    assert {r["id"] for r in body["results"]} == mine  # neither the other user's nor my email
    first = body["results"][0]
    assert set(first) == {"id", "subject", "body", "trigger", "items", "created_at", "read_at", "read"}
    assert first["read"] is False and first["items"] and first["items"][0]["key"].startswith("product:")
    assert {r["trigger"] for r in body["results"]} == {"recommended_items", "abandoned_cart"}
    assert len(client.get(INBOX, {"limit": 1}).json()["results"]) == 1
    assert client.get(INBOX, {"limit": "x"}).status_code == 400
    assert client.get(INBOX, {"limit": 1000}).status_code == 400


def test_marking_read(two_inboxes, client):
    me, other = two_inboxes
    client.force_login(me)
    target = Notification.objects.filter(user=me, channel="inbox").first()
    response = client.post(f"{INBOX}{target.pk}/read/")
    assert response.status_code == 200 and response.json()["read"] is True
    target.refresh_from_db()
    assert target.read_at is not None and target.opened_at is not None
    body = client.get(INBOX).json()
    assert body["unread"] == 1
    assert target.pk not in [r["id"] for r in client.get(INBOX, {"unread": "true"}).json()["results"]]
    theirs = Notification.objects.filter(user=other).first()
    assert client.post(f"{INBOX}{theirs.pk}/read/").status_code == 404  # not mine
    theirs.refresh_from_db()
    assert theirs.read_at is None
    assert client.post(f"{INBOX}read/").json() == {"marked": 1}
    assert client.get(INBOX).json()["unread"] == 0
    assert Notification.objects.filter(user=other, read_at__isnull=False).count() == 0


def test_the_inbox_needs_a_signed_in_user(client, db):
    assert client.get(INBOX).status_code in {401, 403}
    assert client.post(f"{INBOX}1/read/").status_code in {401, 403}


def render(source, **context):
    return Template("{% load personalization_inbox %}" + source).render(Context(context))


def test_notification_badge_counts_unread(two_inboxes, rf: RequestFactory):
    from django.contrib.auth.models import AnonymousUser

    me, other = two_inboxes
    assert render("{% notification_badge %}", user=me) == (
        '<span class="personalization-badge" data-unread="2">2</span>'
    )
    request = rf.get("/")
    request.user = other
    assert 'data-unread="1"' in render("{% notification_badge %}", request=request)
    Notification.objects.filter(user=me).update(read_at=NOW)
    assert render("{% notification_badge %}", user=me) == ""
    assert render("{% notification_badge always=True %}", user=me).endswith(">0</span>")
    assert render("{% notification_badge %}", user=AnonymousUser()) == ""
    assert render("{% notification_badge %}") == ""
    assert render("{% unread_notifications as n %}[{{ n }}]", user=other) == "[1]"


def test_admin_lists_rules_and_the_log_of_sent_and_opened(two_inboxes, admin_client):
    Notification.objects.filter(channel="email").update(opened_at=NOW)
    page = admin_client.get("/admin/personalization/notificationrule/")
    assert page.status_code == 200 and b"ideas" in page.content and b"21:00-08:00" in page.content
    log = admin_client.get("/admin/personalization/notification/")
    assert log.status_code == 200 and b"Picked for you" in log.content
    opened = admin_client.get("/admin/personalization/notification/", {"opened": "yes"})
    assert opened.content.count(b"<tr") < log.content.count(b"<tr")
    row = Notification.objects.first()
    detail = admin_client.get(f"/admin/personalization/notification/{row.pk}/change/")
    assert detail.status_code == 200 and row.idempotency_key.encode() in detail.content
    assert admin_client.get("/admin/personalization/notification/add/").status_code == 403


def test_admin_rule_form_checks_channel_threshold_hours_and_template(admin_client, db):
    url = "/admin/personalization/notificationrule/add/"
    data = {"name": "Cart", "trigger": "abandoned_cart", "channel": "sms", "threshold": "1.5",
            "subject": "{% if %}", "template": "personalization/notifications/nope", "max_per_week": "2",
            "quiet_start": "25", "quiet_end": "8", "active": "on"}
    response = admin_client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"channel", "threshold", "subject", "template", "quiet_start"}
    good = {**data, "channel": "inbox", "threshold": "0.3", "subject": "Still thinking about {{ item.title }}?",
            "template": "personalization/notifications/recommended", "quiet_start": "21"}
    assert admin_client.post(url, good).status_code == 302
    from personalization.delivery.notifications import template_prefix
    from personalization.models import NotificationRule

    rule = NotificationRule.objects.get(name="Cart")
    assert template_prefix(rule) == "personalization/notifications/abandoned_cart"  # the default follows the trigger


@pytest.mark.parametrize("subject", ["Hi {{ user.password }}", "For {{ user.email }}", "{{ user }}",
                                     "{% if user.is_staff %}VIP{% endif %}", "{{ rule.name }}",
                                     "{% with p=user.password %}{{ p }}{% endwith %}",
                                     "{{ first_name|default:user.get_username }}"])
def test_admin_rule_form_rejects_variables_outside_the_whitelist(admin_client, db, subject):
    data = {"name": "Leak", "trigger": "recommended_items", "channel": "inbox", "threshold": "0.3",
            "subject": subject, "template": "personalization/notifications/recommended", "max_per_week": "2",
            "quiet_start": "21", "quiet_end": "8", "active": "on"}
    response = admin_client.post("/admin/personalization/notificationrule/add/", data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"subject"} and "may use only" in errors["subject"][0]
    ok = {**data, "subject": "{{ first_name|default:'Hi' }}, {% for it in items %}{{ it.title }} {% endfor %}"
                             "{{ user.first_name }} {{ site_name }}"}
    assert admin_client.post("/admin/personalization/notificationrule/add/", ok).status_code == 302


def test_a_run_renders_with_the_whitelisted_values_only(engaged, make_rule):
    from django.contrib.auth.hashers import make_password

    from personalization.models import NotificationRule

    engaged.password = make_password("secret-pw")
    engaged.save()
    make_rule(channel="inbox")
    # a rule stored before the form checked it (or written outside the admin): it renders the whitelist only
    NotificationRule.objects.update(subject="Hi {{ first_name }} {{ user.password }}{{ user.email }}{{ rule.pk }}")
    run()
    row = Notification.objects.get()
    assert row.subject == "Hi Engaged"
    assert "md5$" not in row.body and "engaged@example.com" not in row.body and "Hi Engaged," in row.body
