"""Fixtures of the notification tests: users with planted histories, rules, a real webhook receiver."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

#: A fixed "now" (a Monday, 12:00 UTC) passed into the service functions instead of freezing time.
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _notification_settings(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.TIME_ZONE = "UTC"
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SITE_URL": "https://shop.example"}


def add_event(user, kind, item="", at=NOW, value=None):
    from personalization.models import Event

    return Event.objects.create(event_type=kind, item_key=item, user=user, visitor_id=f"vis-{user.pk}",
                                occurred_at=at, received_at=at, value=value)


@pytest.fixture
def make_user(db, django_user_model):
    def make(name, email=None, zone=None):
        from personalization.models import NotificationPreference

        user = django_user_model.objects.create_user(name, f"{name}@example.com" if email is None else email, "pw",
                                                    first_name=name.capitalize())
        if zone:
            NotificationPreference.objects.create(user=user, timezone=zone)
        return user

    return make


@pytest.fixture
def catalog(make_product):
    """Six products; ``catalog[i].item_key`` is its item key."""
    return [make_product(price=f"{10 + i}.00") for i in range(6)]


@pytest.fixture
def engaged(make_user, catalog):
    """A user active yesterday and over the last week: views, carts, a purchase."""
    user = make_user("engaged")
    for day in range(5):
        for product in catalog[:3]:
            add_event(user, "view", product.item_key, NOW - timedelta(days=day + 1, hours=1))
    add_event(user, "add_to_cart", catalog[0].item_key, NOW - timedelta(days=3))
    add_event(user, "purchase", catalog[0].item_key, NOW - timedelta(days=3), value=30.0)
    return user


@pytest.fixture
def inactive(make_user, catalog):
    """A user seen once, two months ago."""
    user = make_user("inactive")
    add_event(user, "view", catalog[4].item_key, NOW - timedelta(days=60))
    return user


@pytest.fixture
def make_rule(db):
    def make(trigger="recommended_items", **fields):
        from personalization.models import NotificationRule

        fields.setdefault("name", f"{trigger} via {fields.get('channel', 'email')}")
        fields.setdefault("threshold", 0.0)
        fields.setdefault("max_per_week", 10)
        fields.setdefault("subject", "Picked for you, {{ first_name }}")
        return NotificationRule.objects.create(trigger=trigger, **fields)

    return make


def run(now=NOW, **kwargs):
    from personalization.delivery.notifications import send_notifications

    return send_notifications(now=now, **kwargs)


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 (ephemeral port) recording what it receives."""

    def __init__(self, status=200):
        self.status = status
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/personalization"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def json(self, index=0):
        return json.loads(self.requests[index]["body"])

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver():
    receivers = []

    def start(status=200):
        receiver = WebhookReceiver(status)
        receivers.append(receiver)
        return receiver

    yield start
    for receiver in receivers:
        receiver.close()
