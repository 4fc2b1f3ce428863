"""Where a cookie-bearing write comes from: the ``events/`` endpoint refuses cross-site requests that carry the
visitor's cookies, so another site cannot write events into a visitor's history (``sendBeacon`` and ``text/plain``
bodies need no CORS preflight, so the browser would send them).

Allowed: requests without cookies (servers, apps), ``Sec-Fetch-Site: same-origin / same-site / none``, an
``Origin`` equal to the request's own or listed in ``EVENTS_ALLOWED_ORIGINS``, and requests carrying neither header
(old browsers, non-browser clients, which no other site can make a browser send).
"""

from __future__ import annotations

from django.http import HttpRequest

from personalization.conf import settings

SAME_SITE = {"same-origin", "same-site", "none"}


def cross_site_refusal(request: HttpRequest) -> str | None:
    """Why this cookie-bearing request must be refused as cross-site; None when it may write."""
    if not request.COOKIES:
        return None
    origin = request.META.get("HTTP_ORIGIN", "").strip().rstrip("/").lower()
    fetch_site = request.META.get("HTTP_SEC_FETCH_SITE", "").strip().lower()
    allowed = {str(o).rstrip("/").lower() for o in settings.EVENTS_ALLOWED_ORIGINS or ()}
    if origin and origin != "null" and (origin == _own_origin(request) or origin in allowed):
        return None
    if fetch_site in SAME_SITE and (not origin or origin == _own_origin(request)):
        return None
    if origin:
        return (f"Origin {origin} is not allowed to send events with this site's cookies; list it in "
                'PERSONALIZATION["EVENTS_ALLOWED_ORIGINS"] if it is yours.')
    if fetch_site == "cross-site":
        return "Cross-site requests may not send events with this site's cookies (Sec-Fetch-Site: cross-site)."
    return None


def _own_origin(request: HttpRequest) -> str:
    try:
        return f"{request.scheme}://{request.get_host()}".lower()
    except Exception:  # noqa: BLE001 - a host outside ALLOWED_HOSTS: no origin is ours
        return ""
