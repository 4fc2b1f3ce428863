"""Channels: email parts and headers, signed webhooks to a real local server, failures recorded, open pixel."""

from __future__ import annotations

import json
import re
import socket
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured

from personalization.delivery.channels import (
    SIGNATURE_HEADER,
    InboxChannel,
    get_channel,
    inbox_channel_names,
    sign,
    verify_signature,
)
from personalization.models import Notification

from .conftest import NOW, run

SECRET = "s3cret-for-tests"


def test_email_has_a_text_and_an_html_part_with_the_opt_out_link_and_one_click_headers(engaged, make_rule):
    make_rule(subject="Ideas for {{ first_name }} & co")
    run()
    (message,) = mail.outbox
    assert message.to == ["engaged@example.com"]
    assert message.subject == "Ideas for Engaged & co"  # the subject is not HTML-escaped
    assert message.from_email
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert "<html" in html and "<html" not in message.body
    opt_out = re.search(r"https://shop\.example/\S+/unsubscribe/[^/\s]+/", message.body).group(0)
    assert f'href="{opt_out}"' in html
    assert message.extra_headers["List-Unsubscribe"] == f"<{opt_out}>"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    row = Notification.objects.get()
    assert row.body == message.body and "We picked these for you" in row.body
    assert "Product" in html and "https://shop.example/" in html  # items with absolute links


def test_the_open_pixel_sets_opened_at_once(engaged, make_rule, client):
    make_rule()
    run()
    html = mail.outbox[0].alternatives[0][0]
    pixel = re.search(r'<img src="(https://shop\.example/[^"]+\.gif)"', html).group(1)
    row = Notification.objects.get()
    assert row.opened_at is None
    response = client.get(urlsplit(pixel).path)
    assert response.status_code == 200 and response["Content-Type"] == "image/gif"
    row.refresh_from_db()
    first = row.opened_at
    assert first is not None
    client.get(urlsplit(pixel).path)
    row.refresh_from_db()
    assert row.opened_at == first
    bad = client.get("/api/personalization/notifications/open/forged.gif")
    assert bad.status_code == 200 and bad["Content-Type"] == "image/gif"  # a pixel either way


def test_webhook_posts_json_signed_with_hmac_sha256_of_the_body(engaged, make_rule, settings, webhook_receiver):
    receiver = webhook_receiver()
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET}
    rule = make_rule(channel="webhook")
    run()
    (request,) = receiver.requests
    body, header = request["body"], request["headers"][SIGNATURE_HEADER]
    assert header.startswith("sha256=") and header == sign(body, SECRET)
    assert verify_signature(body, header, SECRET)
    assert not verify_signature(body + b" ", header, SECRET)
    assert not verify_signature(body, header, "another secret")
    document = json.loads(body)
    row = Notification.objects.get()
    assert row.status == "sent" and row.channel == "webhook"
    assert document["id"] == row.pk and document["rule"] == rule.pk
    assert document["user"] == {"id": engaged.pk, "email": "engaged@example.com"}
    assert document["trigger"] == "recommended_items" and document["items"]
    assert "/unsubscribe/" in document["opt_out_url"]
    assert request["headers"]["X-Personalization-Delivery"] == row.idempotency_key
    assert request["headers"]["Content-Type"] == "application/json"


def test_a_failing_webhook_is_recorded_as_failed_without_raising(engaged, inactive, make_rule, settings,
                                                                  webhook_receiver):
    receiver = webhook_receiver(status=503)
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET}
    rule = make_rule(channel="webhook")
    report = run()
    assert report[f"{rule.pk}:{rule.name}"] == {"failed": 2}
    assert len(receiver.requests) == 2
    rows = Notification.objects.all()
    assert {r.status for r in rows} == {"failed"} and all("HTTP 503" in r.error for r in rows)
    run(now=NOW + timedelta(minutes=10))  # the recorded key keeps a retried run from posting again
    assert len(receiver.requests) == 2


def test_an_unreachable_or_unconfigured_webhook_is_recorded_as_failed(engaged, make_rule, settings):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "WEBHOOK_URL": f"http://127.0.0.1:{port}/x",
                                "WEBHOOK_SECRET": SECRET, "WEBHOOK_TIMEOUT": 2}
    make_rule(channel="webhook")
    run()
    row = Notification.objects.get()
    assert row.status == "failed" and "unreachable" in row.error
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "WEBHOOK_URL": None}
    run(now=NOW + timedelta(days=1))
    row = Notification.objects.order_by("-pk").first()
    assert row.status == "failed" and "WEBHOOK_URL" in row.error


def test_inbox_channel_stores_the_row_and_sends_nothing(engaged, make_rule):
    make_rule(channel="inbox")
    run()
    row = Notification.objects.get()
    assert row.status == "sent" and row.channel == "inbox" and row.read_at is None
    assert mail.outbox == []


def test_channels_are_dotted_paths(settings, engaged, make_rule):
    assert isinstance(get_channel("inbox"), InboxChannel)
    assert inbox_channel_names() == ["inbox"]
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "NOTIFICATION_CHANNELS": {
        "app": "personalization.delivery.channels.InboxChannel", "nope": "personalization.nothing.Here",
        "wrong": "personalization.models.Event"}}
    assert inbox_channel_names() == ["app"]
    with pytest.raises(ImproperlyConfigured, match="Unknown notification channel 'email'"):
        get_channel("email")
    with pytest.raises(ImproperlyConfigured, match="cannot be imported"):
        get_channel("nope")
    with pytest.raises(ImproperlyConfigured, match="is not a NotificationChannel"):
        get_channel("wrong")
    rule = make_rule(channel="email")  # a rule naming a channel that is not configured any more
    assert run()[f"{rule.pk}:{rule.name}"] == {"misconfigured": 1}
    assert not Notification.objects.exists()
