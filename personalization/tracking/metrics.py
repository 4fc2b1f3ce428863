"""Counters of what tracking chose not to store (bots, rate-limited, no consent, invalid, duplicates), kept per day
in the cache. ``monitoring/counters.py`` copies them into ``IngestionCounter`` rows (the cache keeps 8 days)."""

from __future__ import annotations

import logging

from django.utils import timezone

from personalization import shared_cache

logger = logging.getLogger("personalization.tracking")
TTL = 8 * 24 * 3600
#: Every counter incremented by tracking (``persist_counters`` copies these).
NAMES = ("bot_events", "rate_limited_events", "no_consent_events", "invalid_events", "duplicate_events")


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
