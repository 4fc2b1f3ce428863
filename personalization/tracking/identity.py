"""Who is acting: a signed first-party visitor cookie for everyone, the Django user when signed in.

The cookie holds a random visitor id signed with a timestamp. It is re-signed (rotated) when its signature is
older than VISITOR_COOKIE_REFRESH and rejected after VISITOR_COOKIE_AGE, so a leaked value does not live forever.
On login the visitor's anonymous history is linked to the user (see ``signals.py``); on logout the visitor id
is replaced, so a shared computer's later browsing is not added to the previous user's history.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.core import signing
from django.http import HttpRequest, HttpResponseBase

from personalization.conf import settings
from personalization.tracking.bots import is_bot
from personalization.tracking.consent import has_consent

ATTR = "personalization"


@dataclass
class Visitor:
    """The tracking identity of one request."""

    visitor_id: str
    user_id: int | None
    consent: bool
    is_bot: bool
    set_cookie: bool = False  # a new or rotated cookie must be sent
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trackable(self) -> bool:
        return self.consent and not self.is_bot

    @property
    def subject(self) -> str:
        """The id the models know this person by: the user when known, else the visitor."""
        return f"u:{self.user_id}" if self.user_id else f"v:{self.visitor_id}"


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=settings.VISITOR_COOKIE_SALT)


def new_visitor_id() -> str:
    return uuid.uuid4().hex


#: Verified cookie values: raw cookie -> (visitor id, signing time). A returning visitor sends the same value on
#: every request, and checking its HMAC (a derived key and two hashes) costs more than the rest of reading it.
_verified: dict[str, tuple[str, int]] = {}
_VERIFIED_MAX = 50_000


def forget_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: other keys or salts make every verified cookie unverified."""
    if setting in {"PERSONALIZATION", "SECRET_KEY", "SECRET_KEY_FALLBACKS"}:
        _verified.clear()


def read_cookie(request: HttpRequest) -> tuple[str | None, bool]:
    """Return (visitor id or None, needs re-signing) from the request's visitor cookie."""
    raw = request.COOKIES.get(settings.VISITOR_COOKIE_NAME)
    if not raw or len(raw) > 200:
        return None, False
    known = _verified.get(raw)
    if known is None:
        signer = _signer()
        try:
            value = signer.unsign(raw)
            signed_at = signing.b62_decode(raw.rsplit(signer.sep, 2)[1])
        except (signing.BadSignature, ValueError, IndexError):
            return None, False
        if len(value) != 32 or not value.isalnum():
            return None, False
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        known = _verified[raw] = (value, signed_at)
    value, signed_at = known
    age = time.time() - signed_at
    max_age = settings.VISITOR_COOKIE_AGE
    if max_age is not None and age > max_age:  # what unsign(max_age=...) checks (None: no limit), on every request
        return None, False
    return value, age > settings.VISITOR_COOKIE_REFRESH


def _user_id(request: HttpRequest) -> int | None:
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return user.pk
    return None


def get_visitor(request: HttpRequest, *, resolve_user: bool = True) -> Visitor:
    """The request's Visitor, computed once and cached on the request.

    With ``resolve_user=False`` it makes no database query: the middleware uses that before the view, and the
    user is resolved after the response has been sent (``request.user`` may need the session and user tables).
    """
    visitor = getattr(request, ATTR, None)
    if isinstance(visitor, Visitor):
        if visitor.user_id is None and resolve_user:
            visitor.user_id = _user_id(request)
        return visitor
    consent = has_consent(request)
    bot = settings.BOT_FILTER and is_bot(request.META.get("HTTP_USER_AGENT", ""))
    visitor_id, stale = read_cookie(request)
    set_cookie = False
    if visitor_id is None:
        visitor_id = new_visitor_id()
        set_cookie = True
    elif stale:
        set_cookie = True
    visitor = Visitor(
        visitor_id=visitor_id,
        user_id=_user_id(request) if resolve_user else None,
        consent=consent,
        is_bot=bot,
        set_cookie=set_cookie and consent and not bot,
    )
    setattr(request, ATTR, visitor)
    return visitor


def rotate_visitor(request: HttpRequest) -> None:
    """Give the request a fresh visitor id (after logout)."""
    visitor = get_visitor(request)
    visitor.visitor_id = new_visitor_id()
    visitor.user_id = None
    visitor.set_cookie = visitor.trackable


def apply_cookie(request: HttpRequest, response: HttpResponseBase) -> None:
    """Send the visitor cookie when it is new or rotated, and only with consent; delete it without consent."""
    visitor = getattr(request, ATTR, None)
    if not isinstance(visitor, Visitor):
        return
    name = settings.VISITOR_COOKIE_NAME
    if not visitor.consent:
        if name in request.COOKIES:
            response.delete_cookie(name, samesite="Lax")
        return
    if not visitor.set_cookie:
        return
    secure = settings.VISITOR_COOKIE_SECURE
    if secure is None:
        secure = not django_settings.DEBUG
    response.set_cookie(
        name,
        _signer().sign(visitor.visitor_id),
        max_age=settings.VISITOR_COOKIE_AGE,
        httponly=True,
        samesite="Lax",
        secure=secure,
    )
    visitor.set_cookie = False
