"""The API's DRF throttle: per-visitor and per-IP rate limits of the recommendation endpoints (``API_RATE_VISITOR``,
``API_RATE_IP``), counted by :mod:`personalization.ratelimit`."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from personalization import ratelimit
from personalization.conf import settings
from personalization.ratelimit import Limit
from personalization.tracking.identity import get_visitor


@lru_cache(maxsize=64)
def _parse(rate: str | None) -> tuple[int, int] | None:
    if not rate:
        return None
    num, duration = SimpleRateThrottle.parse_rate(None, rate)
    return num, duration


class VisitorAndIPRateThrottle(BaseThrottle):
    """``API_RATE_VISITOR`` per visitor (the user when signed in, else the visitor cookie) and ``API_RATE_IP`` per
    client IP (behind proxies set DRF's ``NUM_PROXIES``). A refused request is counted by neither limit."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def limits(self, request: Request) -> list[Limit]:
        """The limits that apply to this request (a rate of None disables its limit)."""
        limits = []
        visitor = _parse(settings.API_RATE_VISITOR)
        if visitor is not None:
            limits.append(Limit("visitor", get_visitor(request._request).subject, *visitor))
        ip = _parse(settings.API_RATE_IP)
        if ip is not None:
            limits.append(Limit("ip", str(self.get_ident(request)), *ip))
        return limits

    def allow_request(self, request: Request, view: Any) -> bool:
        limits = self.limits(request)
        if not limits:
            return True
        waits = ratelimit.check(limits, time.time())
        if waits:
            self._wait = max(waits)
            return False
        return True

    def wait(self) -> float | None:
        return self._wait


THROTTLES = [VisitorAndIPRateThrottle]
