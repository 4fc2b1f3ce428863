"""Counters of what tracking chose not to store (bots, rate-limited), kept per day in the cache."""

from __future__ import annotations

import logging

from django.utils import timezone

from personalization import shared_cache

logger = logging.getLogger("personalization.tracking")
TTL = 8 * 24 * 3600


def _key(name: str, day: str | None = None) -> str:
    return f"personalization:metric:{name}:{day or timezone.now().date().isoformat()}"


def incr(name: str, amount: int = 1) -> None:
    """Add to today's counter; never raises."""
    cache = shared_cache.cache()
    key = _key(name)
    try:
        if not cache.add(key, amount, timeout=TTL):
            cache.incr(key, amount)
    except Exception:  # noqa: BLE001 - metrics must never break tracking
        logger.debug("metric %s not counted", name, exc_info=True)


def get(name: str, day: str | None = None) -> int:
    """Today's (or the given ISO day's) value of a counter."""
    try:
        return int(shared_cache.cache().get(_key(name, day)) or 0)
    except Exception:  # noqa: BLE001
        return 0
