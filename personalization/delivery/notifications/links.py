"""The links in a notification: the signed one-click opt-out, the signed open-tracking pixel, absolute item URLs,
and what following the first two does (opt the user out, record the open)."""

from __future__ import annotations

from datetime import datetime

from django.core import signing
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from personalization.conf import settings
from personalization.models import Notification, NotificationPreference

OPT_OUT_SALT = "personalization.notifications.opt-out"
OPEN_SALT = "personalization.notifications.open"


def opt_out_token(user_id: int) -> str:
    """A signed, non-expiring token naming the user (links in old emails keep working)."""
    return signing.dumps(int(user_id), salt=OPT_OUT_SALT)


def user_for_opt_out_token(token: str) -> int | None:
    """The user id named by a valid opt-out token; None for a forged one."""
    try:
        value = signing.loads(token, salt=OPT_OUT_SALT)
    except signing.BadSignature:
        return None
    return value if isinstance(value, int) else None


def open_token(key: str) -> str:
    """A signed token naming the notification (by its idempotency key) for the open pixel."""
    return signing.dumps(key, salt=OPEN_SALT)


def key_for_open_token(token: str) -> str | None:
    """The idempotency key named by a valid open token; None for a forged one."""
    try:
        value = signing.loads(token, salt=OPEN_SALT)
    except signing.BadSignature:
        return None
    return value if isinstance(value, str) else None


def absolute(path: str) -> str:
    """``path`` made absolute under ``SITE_URL`` (messages are read outside the site); URLs pass through."""
    if not path or path.startswith(("http://", "https://")):
        return path or ""
    return (settings.SITE_URL or "").rstrip("/") + "/" + path.lstrip("/")


def _url(name: str, token: str) -> str:
    try:
        return absolute(reverse(f"personalization:{name}", args=[token]))
    except NoReverseMatch:
        return ""


def opt_out_url(user_id: int) -> str:
    """The absolute one-click opt-out link of the user ('' when the API's URLs are not installed)."""
    return _url("notifications-unsubscribe", opt_out_token(user_id))


def open_url(key: str) -> str:
    """The absolute open-tracking pixel of the notification with idempotency key ``key``."""
    return _url("notifications-open", open_token(key))


def opt_out(user_id: int) -> None:
    """Stop every notification to the user (the one-click link calls this)."""
    NotificationPreference.objects.update_or_create(user_id=user_id, defaults={"opted_out": True})


def mark_opened(key: str, now: datetime | None = None) -> bool:
    """Record the first open of the notification; whether this call recorded it."""
    return bool(Notification.objects.filter(idempotency_key=key, opened_at__isnull=True)
                .update(opened_at=now or timezone.now()))
