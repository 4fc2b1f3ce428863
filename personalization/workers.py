"""Whether a Celery worker has been seen lately: the stamp a worker writes in the cache and the reading of it.

A worker stamps ``personalization:worker-seen`` when it starts, at its heartbeats and when it runs a task (at most
once a minute per process); the system check ``personalization.W004`` reads it, with a short timeout, instead of
pinging the broker (``manage.py check`` must stay fast and never hang).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from personalization import shared_cache

__all__ = ["WORKER_SEEN_KEY", "last_seen", "mark_seen"]

logger = logging.getLogger("personalization.workers")
WORKER_SEEN_KEY = "personalization:worker-seen"
MARK_EVERY_SECONDS = 60.0
_last_mark = 0.0


def mark_seen(*, force: bool = False) -> None:
    """Record that a worker of this process is alive (throttled to once a minute unless ``force``)."""
    global _last_mark
    now = time.time()
    if not force and now - _last_mark < MARK_EVERY_SECONDS:
        return
    _last_mark = now
    try:
        shared_cache.cache().set(WORKER_SEEN_KEY, now, timeout=None)
    except Exception:  # noqa: BLE001 - a cache outage must not break a worker's heartbeat or task
        logger.warning("Could not record that this Celery worker is alive", exc_info=True)


def last_seen(timeout: float = 1.0) -> float | None:
    """When a worker last stamped the cache (a Unix time), None when never.

    Raises TimeoutError after ``timeout`` seconds, or the cache's own error when it cannot be read.

    The read runs in a daemon thread so a hung cache server cannot hold the caller longer than ``timeout``.
    """
    found: dict[str, Any] = {}

    def read() -> None:
        try:
            found["value"] = shared_cache.cache().get(WORKER_SEEN_KEY)
        except Exception as exc:  # noqa: BLE001 - reported to the caller below
            found["error"] = exc

    reader = threading.Thread(target=read, name="personalization-worker-seen", daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise TimeoutError(f"the cache did not answer within {timeout:g} s")
    if "error" in found:
        raise found["error"]
    value = found.get("value")
    return float(value) if isinstance(value, (int, float)) else None
