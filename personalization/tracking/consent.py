"""Consent and browser privacy signals: without consent nothing is stored and no cookie is set."""

from __future__ import annotations

from django.http import HttpRequest

from personalization.conf import settings

GRANTED = {"1", "true", "yes", "granted", "all", "personalization"}


def cookie_consent(request: HttpRequest) -> bool:
    """Default consent callback: the consent cookie (set by the site's banner) says yes."""
    value = request.COOKIES.get(settings.CONSENT_COOKIE_NAME, "")
    return value.strip().lower() in GRANTED


def has_consent(request: HttpRequest) -> bool:
    """Whether this request may be tracked, honouring GPC/DNT when configured and the consent callback."""
    meta = request.META
    if settings.HONOR_GPC and meta.get("HTTP_SEC_GPC", "").strip() == "1":
        return False
    if settings.HONOR_DNT and meta.get("HTTP_DNT", "").strip() == "1":
        return False
    if settings.CONSENT_REQUIRED:
        return bool(settings.CONSENT_CALLBACK(request))
    return True
