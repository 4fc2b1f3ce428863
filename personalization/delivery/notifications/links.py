"""The links in a notification: the signed one-click opt-out, the signed open-tracking pixel, absolute item URLs,
and what following the first two does (opt the user out, record the open).

An opt-out token is opaque: it signs (with the time) a random nonce stored on the user's
``NotificationPreference``, so it names nobody, and it expires after ``OPT_OUT_TOKEN_MAX_AGE`` seconds.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from django.core import signing
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from personalization.conf import settings
from personalization.models import Notification, NotificationPreference

OPT_OUT_SALT = "personalization.notifications.opt-out-nonce"  # links of before the nonce are refused
OPEN_SALT = "personalization.notifications.open"


def _opt_out_nonce(user_id: int) -> str:
    """The user's random opt-out nonce, created on first use (stable afterwards: every link of the user uses it)."""
    preference, _ = NotificationPreference.objects.get_or_create(user_id=int(user_id))
    if not preference.opt_out_nonce:
        nonce = secrets.token_urlsafe(16)
        NotificationPreference.objects.filter(pk=preference.pk, opt_out_nonce__isnull=True).update(
            opt_out_nonce=nonce)
        preference.refresh_from_db(fields=["opt_out_nonce"])  # a concurrent run may have set it first
    return str(preference.opt_out_nonce)


def opt_out_token(user_id: int) -> str:
    """An opaque token for the user's opt-out link: the signed, timestamped nonce (no user id inside)."""
    return signing.TimestampSigner(salt=OPT_OUT_SALT).sign(_opt_out_nonce(user_id))


def user_for_opt_out_token(token: str) -> int | None:
    """The user whose nonce a valid, unexpired opt-out token signs; None for a forged, expired or unknown one."""
    max_age = settings.OPT_OUT_TOKEN_MAX_AGE
    try:
        nonce = signing.TimestampSigner(salt=OPT_OUT_SALT).unsign(token, max_age=max_age)
    except signing.BadSignature:  # SignatureExpired included
        return None
    return NotificationPreference.objects.filter(opt_out_nonce=nonce).values_list("user_id", flat=True).first()


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
