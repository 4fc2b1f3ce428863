"""Frequency caps, quiet hours in the user's zone, the one-click opt-out, idempotent runs."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail

from personalization.delivery.notifications.links import opt_out_url, user_for_opt_out_token
from personalization.delivery.notifications.run import idempotency_key, in_quiet_hours
from personalization.models import Notification, NotificationPreference

from .conftest import NOW, add_event, run


def sent_to(user, rule=None):
    rows = Notification.objects.filter(user=user, status=Notification.Status.SENT)
    return rows.filter(rule=rule) if rule is not None else rows


def test_max_per_week_caps_each_rule_over_a_rolling_week_across_channels(engaged, make_rule):
    by_email = make_rule(channel="email", max_per_week=2)
    by_inbox = make_rule(channel="inbox", max_per_week=1)
    counts = []
    for day in range(4):  # one message per rule and local day at most; the cap stops it after two
        report = run(now=NOW + timedelta(days=day))
        counts.append(report[f"{by_email.pk}:{by_email.name}"])
    assert sent_to(engaged, by_email).count() == 2
    assert sent_to(engaged, by_inbox).count() == 1  # each rule has its own cap
    assert counts[2] == {"capped": 1} and counts[3] == {"capped": 1}
    run(now=NOW + timedelta(days=7, hours=1))  # the first message left the 7-day window
    assert sent_to(engaged, by_email).count() == 3


def test_failed_and_skipped_messages_do_not_use_up_the_cap(make_user, catalog, make_rule):
    no_address = make_user("noaddress", email="")
    add_event(no_address, "view", catalog[0].item_key, NOW - timedelta(hours=3))
    rule = make_rule(channel="email", max_per_week=1)
    run()
    row = Notification.objects.get(user=no_address)
    assert row.status == "skipped" and "no email address" in row.error
    run(now=NOW + timedelta(days=1))
    assert Notification.objects.filter(user=no_address, rule=rule).count() == 2


def test_quiet_hours_wrap_past_midnight():
    assert in_quiet_hours(21, 8, 22) and in_quiet_hours(21, 8, 3) and not in_quiet_hours(21, 8, 8)
    assert in_quiet_hours(1, 5, 1) and not in_quiet_hours(1, 5, 5)
    assert not any(in_quiet_hours(9, 9, h) for h in range(24))


def test_quiet_hours_are_in_the_users_zone_and_defer_the_message(make_user, catalog, make_rule):
    tokyo = make_user("tokyo", zone="Asia/Tokyo")  # 12:00 UTC = 21:00 in Tokyo: quiet
    london = make_user("london", zone="Europe/London")  # 12:00 UTC = 12:00 in London
    utc = make_user("utc")  # no zone: settings.TIME_ZONE (UTC)
    broken = make_user("broken", zone="Mars/Olympus")  # an unknown zone falls back to TIME_ZONE
    for user in (tokyo, london, utc, broken):
        add_event(user, "view", catalog[0].item_key, NOW - timedelta(hours=2))
    rule = make_rule(quiet_start=21, quiet_end=8)
    report = run()
    assert report[f"{rule.pk}:{rule.name}"] == {"sent": 3, "deferred_quiet_hours": 1}
    assert not sent_to(tokyo).exists()
    assert {m.to[0] for m in mail.outbox} == {"london@example.com", "utc@example.com", "broken@example.com"}
    run(now=NOW + timedelta(hours=11))  # 23:00 UTC = 08:00 in Tokyo
    assert sent_to(tokyo).count() == 1
    assert sent_to(london).count() == 1  # 23:00 in London: quiet, and already sent today anyway


def test_the_opt_out_link_opts_out_in_one_click_and_stops_every_message(engaged, client, make_rule):
    rule = make_rule()
    run()
    message = mail.outbox[0]
    link = re.search(r"https://shop\.example(/\S+/unsubscribe/\S+/)", message.body).group(0)
    # the link names this user (its token is signed with the time: a second later it is another valid string)
    assert link.rsplit("/", 2)[0] == opt_out_url(engaged.pk).rsplit("/", 2)[0]
    assert user_for_opt_out_token(link.rsplit("/", 2)[1]) == engaged.pk
    assert link in message.alternatives[0][0]
    response = client.get(urlsplit(link).path)  # a mail scanner following the link opts nobody out
    assert response.status_code == 200 and b"<form method=\"post\"" in response.content
    assert not NotificationPreference.objects.get(user=engaged).opted_out
    response = client.post(urlsplit(link).path)  # the confirmation page's button
    assert response.status_code == 200 and b"You are unsubscribed" in response.content
    assert NotificationPreference.objects.get(user=engaged).opted_out
    inbox_rule = make_rule(channel="inbox", name="inbox")
    report = run(now=NOW + timedelta(days=1))
    assert report[f"{rule.pk}:{rule.name}"] == {"opted_out": 1}
    assert report[f"{inbox_rule.pk}:inbox"] == {"opted_out": 1}
    assert sent_to(engaged).count() == 1 and len(mail.outbox) == 1


def test_one_click_post_and_bad_tokens(engaged, client):
    path = urlsplit(opt_out_url(engaged.pk)).path
    assert client.post(path, {"List-Unsubscribe": "One-Click"}).status_code == 200  # RFC 8058, no CSRF token
    assert NotificationPreference.objects.get(user=engaged).opted_out
    tampered = path.rstrip("/")[:-3] + "abc/"
    assert client.get(tampered).status_code == 400
    assert client.get(path.replace("/unsubscribe/", "/unsubscribe/x")).status_code == 400


def test_running_the_task_twice_sends_once(engaged, inactive, make_rule):
    from personalization.tasks import send_notifications

    rule = make_rule()
    first = send_notifications(now=NOW.isoformat())
    second = send_notifications(now=(NOW + timedelta(minutes=30)).isoformat())
    assert first[f"{rule.pk}:{rule.name}"] == {"sent": 2}
    assert second[f"{rule.pk}:{rule.name}"] == {"already_sent": 2}
    assert len(mail.outbox) == 2 and Notification.objects.count() == 2


def test_the_idempotency_key_is_taken_before_sending(engaged, make_rule):
    """A row inserted first (by a crashed or concurrent run) keeps the message from going out again."""
    rule = make_rule()
    key = idempotency_key(rule.pk, engaged.pk, "recommended", NOW.date().isoformat())
    Notification.objects.create(user=engaged, rule=rule, channel="email", idempotency_key=key, subject="x",
                                status=Notification.Status.FAILED, error="pending")
    report = run()
    assert report[f"{rule.pk}:{rule.name}"] == {"already_sent": 1}
    assert mail.outbox == []


def test_a_second_concurrent_task_run_steps_aside(engaged, make_rule):
    from personalization.run_locks import RunLock
    from personalization.tasks import send_notifications

    make_rule()
    running = RunLock("notifications")
    assert running.acquire()
    assert send_notifications(now=NOW.isoformat()) == {"skipped": "another run is in progress"}
    assert mail.outbox == []
    running.release()
    send_notifications(now=NOW.isoformat())
    assert len(mail.outbox) == 1


def test_inactive_accounts_and_inactive_rules_get_nothing(engaged, make_rule):
    make_rule(active=False)
    assert run() == {}
    make_rule()
    engaged.is_active = False
    engaged.save()
    run()
    assert mail.outbox == []


def test_opt_out_tokens_are_opaque_and_expire(engaged, client, settings):
    from django.core import signing

    token = urlsplit(opt_out_url(engaged.pk)).path.rstrip("/").rsplit("/", 1)[1]
    nonce = NotificationPreference.objects.get(user=engaged).opt_out_nonce
    assert token.split(":")[0] == nonce and len(nonce) >= 20  # a random nonce, signed with the time
    for salt in ("personalization.notifications.opt-out", "personalization.notifications.opt-out-nonce"):
        with pytest.raises((signing.BadSignature, ValueError)):
            signing.loads(token, salt=salt)  # no decodable payload
    legacy = signing.dumps(engaged.pk, salt="personalization.notifications.opt-out")  # an old link named the user
    assert client.post(f"/api/personalization/notifications/unsubscribe/{legacy}/").status_code == 400
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "OPT_OUT_TOKEN_MAX_AGE": 0}
    time.sleep(1.1)
    response = client.post(f"/api/personalization/notifications/unsubscribe/{token}/")
    assert response.status_code == 400 and b"expired" in response.content
    assert not NotificationPreference.objects.get(user=engaged).opted_out
