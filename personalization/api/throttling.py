"""Per-visitor and per-IP rate limits of the recommendation API (``API_RATE_VISITOR``, ``API_RATE_IP``).

DRF's ``SimpleRateThrottle`` keeps a list of every request time per key and rewrites it on every request: at the
default 1,200/min a busy visitor's list is kilobytes, read and written twice per request. This throttle counts
requests in fixed windows and weighs the previous window by how much of it still overlaps the sliding window
(the "sliding window counter" approximation), with one atomic increment per limit; both limits and the previous
windows take one cache round trip (:func:`personalization.shared_cache.incr_and_get`), which also fetches the
entries the view reads next when it names them (``view.prefetch_keys(request)``). No library implements this on
top of Django's cache API, hence the hand-written class.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from personalization import shared_cache
from personalization.conf import settings
from personalization.tracking.identity import get_visitor

logger = logging.getLogger("personalization.api")
CACHE_FORMAT = "personalization:throttle:%(scope)s:%(ident)s"


@dataclass
class Limit:
    """One rate limit applied to one request: ``num`` requests per ``duration`` seconds for ``ident``."""

    scope: str
    ident: str
    num: int
    duration: int

    def keys(self, now: float) -> tuple[str, str]:
        """(current window's counter, previous window's counter)."""
        window = int(now // self.duration)
        base = CACHE_FORMAT % {"scope": self.scope, "ident": self.ident}
        return f"{base}:{window}", f"{base}:{window - 1}"

    def estimate(self, now: float, current: int, previous: int) -> float:
        """Requests in the sliding window ending now: this window's count + the overlapping share of the last."""
        elapsed = now % self.duration
        return previous * (1.0 - elapsed / self.duration) + current

    def wait(self, now: float, current: int, previous: int) -> float:
        """Seconds until one more request fits (``current`` and ``previous`` without the refused request)."""
        elapsed = now % self.duration
        if current + 1 > self.num or previous <= 0:
            return self.duration - elapsed  # this window alone is full: the next one starts afresh
        # previous * (1 - t / duration) + current + 1 <= num  <=>  t >= duration * (1 - (num - current - 1) / prev)
        needed = self.duration * (1.0 - (self.num - current - 1) / previous)
        return max(0.0, needed - elapsed)


def _prefetch_keys(request: Request, view: Any) -> list[str]:
    prefetch = getattr(view, "prefetch_keys", None)
    if prefetch is None:
        return []
    try:
        return list(prefetch(request))
    except Exception:  # noqa: BLE001 - prefetching only saves a round trip; the view validates its input itself
        logger.debug("personalization: no prefetch for this request", exc_info=True)
        return []


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
        now = time.time()
        keys = [limit.keys(now) for limit in limits]
        counts, previous = shared_cache.incr_and_get(
            {cur: 2 * limit.duration for limit, (cur, _) in zip(limits, keys, strict=True)},
            [prev for _, prev in keys] + _prefetch_keys(request, view))
        waits = []
        for limit, (cur, prev) in zip(limits, keys, strict=True):
            current, before = counts[cur], int(previous.get(prev) or 0)
            if limit.estimate(now, current, before) > limit.num:
                waits.append(limit.wait(now, current - 1, before))
        if not waits:
            return True
        shared_cache.decr(cur for cur, _ in keys)
        self._wait = max(waits)
        return False

    def wait(self) -> float | None:
        return self._wait


THROTTLES = [VisitorAndIPRateThrottle]
