"""Server-side event context: device, OS, browser, country, language, page, truncated IP, local time."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings as django_settings
from django.http import HttpRequest
from ua_parser import parse

from personalization.conf import settings
from personalization.tracking.minimise import minimise

_LANG_RE = re.compile(r"^\s*([A-Za-z]{2,3})(?:[-_]([A-Za-z]{2}))?")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_TABLETS = {"iPad", "Kindle", "Galaxy Tab"}
CLIENT_CONTEXT_KEYS = {"page", "referrer", "slot", "tz", "screen", "position", "query", "list", "variant", "block"}


@lru_cache(maxsize=4096)
def parse_user_agent(user_agent: str) -> dict[str, str]:
    """Device class, OS and browser family from a User-Agent (ua-parser, cached: agents repeat a lot)."""
    result = parse(user_agent)
    ua = result.user_agent
    os = result.os
    device = result.device
    text = user_agent.lower()
    if device and (device.family in _TABLETS or "tablet" in text or "ipad" in text):
        device_class = "tablet"
    elif "mobi" in text or (os and os.family in {"iOS", "Android"}):
        device_class = "mobile"
    elif os and os.family in {"Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora"}:
        device_class = "desktop"
    else:
        device_class = "other"
    return {
        "device": device_class,
        "os": os.family if os else "Other",
        "browser": ua.family if ua else "Other",
    }


@lru_cache(maxsize=4096)
def truncate_ip(ip: str) -> str:
    """Keep the network part only (IPv4 /24, IPv6 /48): enough for coarse geo, never the whole address."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ""
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def client_ip(request: HttpRequest) -> str:
    """The client's IP as the API throttles see it: ``REMOTE_ADDR``, or behind ``REST_FRAMEWORK["NUM_PROXIES"]``
    proxies the matching ``X-Forwarded-For`` entry."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = (getattr(django_settings, "REST_FRAMEWORK", None) or {}).get("NUM_PROXIES")
    if proxies is not None and forwarded:
        if proxies == 0:
            return remote
        addrs = [a.strip() for a in forwarded.split(",")]
        return addrs[-min(int(proxies), len(addrs))]
    return remote


def country_of(request: HttpRequest) -> str:
    """Country from the configured CDN header, else the region of the first Accept-Language tag."""
    header = request.META.get(settings.COUNTRY_HEADER, "").strip().upper() if settings.COUNTRY_HEADER else ""
    if _COUNTRY_RE.match(header) and header not in {"XX", "T1"}:
        return header
    m = _LANG_RE.match(request.META.get("HTTP_ACCEPT_LANGUAGE", ""))
    return m.group(2).upper() if m and m.group(2) else ""


def language_of(request: HttpRequest) -> str:
    m = _LANG_RE.match(request.META.get("HTTP_ACCEPT_LANGUAGE", ""))
    return m.group(1).lower() if m else ""


def request_context(request: HttpRequest) -> dict[str, Any]:
    """Context every event from this request carries; computed once per request."""
    cached = getattr(request, "_personalization_context", None)
    if cached is not None:
        return cached
    ctx: dict[str, Any] = dict(parse_user_agent(request.META.get("HTTP_USER_AGENT", "")[:512]))
    country = country_of(request)
    if country:
        ctx["country"] = country
    language = language_of(request)
    if language:
        ctx["language"] = language
    referrer = request.META.get("HTTP_REFERER", "")
    if referrer:
        ctx["referrer"] = referrer[:300]
    ctx["page"] = request.path[:300]
    if settings.IP_STORAGE == "truncate":
        ip = truncate_ip(request.META.get("REMOTE_ADDR", ""))
        if ip:
            ctx["ip"] = ip
    request._personalization_context = ctx
    return ctx


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    """ZoneInfo for an IANA name, or None when unknown (cached: a few zones cover almost every visitor)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: names like "../etc" hit the disk
        return None


def _local_time(when: datetime, tz_name: Any) -> datetime:
    zone = None
    if tz_name and isinstance(tz_name, str) and len(tz_name) < 64:
        zone = _zone(tz_name)
    if zone is None:
        site = getattr(django_settings, "TIME_ZONE", None) or "UTC"
        zone = _zone(site) or ZoneInfo(site)
    return when.astimezone(zone)


def merge_context(
    client: dict[str, Any], server: dict[str, Any], when: datetime, *, trusted: bool = False
) -> dict[str, Any]:
    """Keys the sender may set (all of them for trusted server code), overridden by what the server knows about
    the request; plus the local hour and weekday; minimised (``tracking/minimise.py``) for storage."""
    if trusted:
        merged = dict(client)
    else:
        merged = {k: v for k, v in client.items() if k in CLIENT_CONTEXT_KEYS or k.startswith("x_")}
    merged.update(server)
    page = client.get("page")
    if page is not None and isinstance(page, str):
        merged["page"] = page[:300]
    local = _local_time(when, client.get("tz"))
    merged["hour"] = local.hour
    merged["weekday"] = local.weekday()
    return minimise(merged)
