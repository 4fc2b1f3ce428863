"""Notification channels: where a rendered message goes (email, the in-app inbox, a webhook).

A channel is chosen by name on each ``NotificationRule``; ``PERSONALIZATION["NOTIFICATION_CHANNELS"]`` maps names
to dotted paths of :class:`NotificationChannel` subclasses. ``send()`` raises on failure; the notification service
records the error on the ``Notification`` row (status ``failed``) and never lets it escape the task.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.module_loading import import_string

from personalization.conf import settings

SIGNATURE_HEADER = "X-Personalization-Signature"


class ChannelError(Exception):
    """The channel could not deliver the message (recorded as ``failed``)."""


class SkipMessage(Exception):
    """The message cannot go to this user through this channel (e.g. no email address): recorded as ``skipped``."""


@dataclass
class Message:
    """A rendered notification, ready for a channel."""

    notification: Any  # the Notification row (already saved: its id is final)
    user: Any
    subject: str
    text: str
    html: str
    payload: dict[str, Any] = field(default_factory=dict)
    opt_out_url: str = ""
    open_url: str = ""


class NotificationChannel(ABC):
    """Delivers one message. Subclasses must be cheap to construct (one instance per send run)."""

    #: True when the Notification row itself is what the user sees (listed by the inbox API and the badge tag).
    in_app = False

    @abstractmethod
    def send(self, message: Message) -> None:
        """Deliver the message; raise ChannelError (or any exception) on failure, SkipMessage when not applicable."""


class InboxChannel(NotificationChannel):
    """In-app inbox: the stored Notification row is the message (``GET notifications/``, the badge tag)."""

    in_app = True

    def send(self, message: Message) -> None:
        return None


class EmailChannel(NotificationChannel):
    """Email through Django's email backend: a text part plus an HTML alternative, with one-click unsubscribe."""

    def send(self, message: Message) -> None:
        address = getattr(message.user, "email", "") or ""
        if not address:
            raise SkipMessage("the user has no email address")
        headers = {}
        if message.opt_out_url:
            headers["List-Unsubscribe"] = f"<{message.opt_out_url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=settings.NOTIFICATION_FROM_EMAIL or django_settings.DEFAULT_FROM_EMAIL,
            to=[address],
            headers=headers,
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        email.send(fail_silently=False)


def sign(body: bytes, secret: str) -> str:
    """The signature header value of a webhook body: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """For receivers: whether ``header`` is the signature of ``body`` under ``secret`` (constant-time compare)."""
    return bool(header) and hmac.compare_digest(sign(body, secret), header)


class WebhookChannel(NotificationChannel):
    """POST the message as JSON to ``WEBHOOK_URL``, signed in ``X-Personalization-Signature: sha256=<hex>``.

    Any HTTP status outside 2xx, a timeout (``WEBHOOK_TIMEOUT``) or a connection error fails the send.
    """

    def send(self, message: Message) -> None:
        url, secret = settings.WEBHOOK_URL, settings.WEBHOOK_SECRET
        if not url or not secret:
            raise ChannelError('Set PERSONALIZATION["WEBHOOK_URL"] and ["WEBHOOK_SECRET"] to use the webhook channel.')
        if not url.startswith(("https://", "http://")):
            raise ChannelError(f"WEBHOOK_URL must be an http(s) URL, not {url!r}.")
        body = json.dumps(self.document(message), cls=DjangoJSONEncoder, sort_keys=True).encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json",
            "User-Agent": "django-personalization",
            SIGNATURE_HEADER: sign(body, secret),
            "X-Personalization-Delivery": message.notification.idempotency_key,
        })
        try:
            with urllib.request.urlopen(request, timeout=float(settings.WEBHOOK_TIMEOUT)) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            raise ChannelError(f"webhook answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ChannelError(f"webhook unreachable: {getattr(exc, 'reason', exc)}") from exc
        if not 200 <= status < 300:
            raise ChannelError(f"webhook answered HTTP {status}")

    @staticmethod
    def document(message: Message) -> dict[str, Any]:
        n = message.notification
        return {
            "id": n.pk,
            "idempotency_key": n.idempotency_key,
            "user": {"id": message.user.pk, "email": getattr(message.user, "email", "")},
            "rule": n.rule_id,
            "subject": message.subject,
            "text": message.text,
            "opt_out_url": message.opt_out_url,
            **message.payload,
        }


def channel_paths() -> dict[str, str]:
    value = settings.NOTIFICATION_CHANNELS
    if not isinstance(value, dict):
        raise ImproperlyConfigured('PERSONALIZATION["NOTIFICATION_CHANNELS"] must be a dict of name -> dotted path.')
    return value


def get_channel(name: str) -> NotificationChannel:
    """A new instance of the channel configured under ``name``."""
    paths = channel_paths()
    if name not in paths:
        raise ImproperlyConfigured(
            f"Unknown notification channel {name!r}; configured: {', '.join(sorted(paths))} "
            '(PERSONALIZATION["NOTIFICATION_CHANNELS"]).'
        )
    try:
        cls = import_string(paths[name])
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"Notification channel {name!r} = {paths[name]!r} cannot be imported: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, NotificationChannel)):
        raise ImproperlyConfigured(f"Notification channel {name!r} = {paths[name]!r} is not a NotificationChannel.")
    return cls()


def inbox_channel_names() -> list[str]:
    """Names of the configured in-app channels (their rows are the inbox)."""
    names = []
    for name in channel_paths():
        try:
            if get_channel(name).in_app:
                names.append(name)
        except ImproperlyConfigured:
            continue
    return names
