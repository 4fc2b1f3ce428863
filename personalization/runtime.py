"""Runtime controls staff change on the dashboard without a restart: exploration paused, training weights.

One ``RuntimeControl`` row holds them. Readers go through the app's cache (key :data:`RUNTIME_KEY`, a short TTL,
the database on a miss), so serving pays no query per request: a change is written to the database and published
to the cache at once, which every process sharing the cache sees on its next request (a per-process local-memory
cache sees it within :data:`CACHE_SECONDS`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from personalization import shared_cache
from personalization.conf import event_weight_errors, settings
from personalization.freshness import PREFIX

logger = logging.getLogger("personalization.runtime")

#: Cache key of the published controls (a dict; see :func:`controls`).
RUNTIME_KEY = f"{PREFIX}runtime:v1"
#: Longest time a process may act on controls changed in another process without a shared cache.
CACHE_SECONDS = 5
_MISSING = object()
DEFAULT_CONTROLS: dict[str, Any] = {"exploration_paused": False, "event_weights": {}}


def _load() -> dict[str, Any]:
    from personalization.models import RuntimeControl

    row = RuntimeControl.objects.filter(pk=RuntimeControl.SINGLETON).first()
    if row is None:
        return dict(DEFAULT_CONTROLS)
    return {"exploration_paused": row.exploration_paused, "event_weights": dict(row.event_weights or {})}


def _publish(values: dict[str, Any]) -> None:
    try:
        shared_cache.set_many({RUNTIME_KEY: values}, timeout=CACHE_SECONDS)
    except Exception:  # noqa: BLE001 - the cache is an accelerator; readers fall back to the database
        logger.warning("personalization: runtime controls not published to the cache", exc_info=True)


def controls(cached: Any = _MISSING) -> dict[str, Any]:
    """The current controls: ``cached`` (a value already read from :data:`RUNTIME_KEY` in a batch), else the cache,
    else the database (then published). On a database error the defaults answer: serving must never fail here."""
    if cached is _MISSING:
        try:
            cached = shared_cache.get(RUNTIME_KEY)
        except Exception:  # noqa: BLE001
            cached = None
    if isinstance(cached, dict):
        return cached
    try:
        values = _load()
    except Exception:  # noqa: BLE001
        logger.warning("personalization: runtime controls unreadable; using the defaults", exc_info=True)
        return dict(DEFAULT_CONTROLS)
    _publish(values)
    return values


def exploration_paused(cached: Any = _MISSING) -> bool:
    """Whether staff paused exploration (serving then explores no position)."""
    return bool(controls(cached).get("exploration_paused"))


def _update(by: str, **fields: Any) -> dict[str, Any]:
    from personalization.models import RuntimeControl

    row, _ = RuntimeControl.objects.get_or_create(pk=RuntimeControl.SINGLETON)
    for name, value in fields.items():
        setattr(row, name, value)
    row.updated_by = by
    row.save()
    values = {"exploration_paused": row.exploration_paused, "event_weights": dict(row.event_weights or {})}
    _publish(values)
    return values


def set_exploration_paused(paused: bool, *, by: str = "") -> None:
    """Pause (True) or resume (False) exploration in every slot, from the next request on."""
    _update(by, exploration_paused=bool(paused))
    logger.info("%s %s exploration", by or "someone", "paused" if paused else "resumed")


def set_event_weights(weights: Mapping[str, float], *, by: str = "") -> dict[str, float]:
    """Store training weights laid over the settings' (only those that differ are kept); ValueError when invalid."""
    defaults = settings.event_weights
    problems = event_weight_errors(dict(weights), defaults)
    if problems:
        raise ValueError("; ".join(f"{k}: {v}" for k, v in problems.items()))
    overrides = {name: float(value) for name, value in weights.items() if float(value) != defaults[name]}
    _update(by, event_weights=overrides)
    logger.info("%s set the training weights %s", by or "someone", overrides or "back to the settings")
    return overrides


def event_weight_overrides() -> dict[str, float]:
    """The dashboard's valid overrides of configured event types (stale ones, e.g. of a removed type, are dropped)."""
    stored = controls().get("event_weights") or {}
    known = settings.event_weights
    bad = event_weight_errors(stored, known) if isinstance(stored, dict) else {"": "not a dict"}
    if bad:
        logger.warning("personalization: ignoring invalid stored training weights: %s", bad)
    return {k: float(v) for k, v in (stored.items() if isinstance(stored, dict) else ()) if k not in bad}


def event_weights() -> dict[str, float]:
    """Training weight per event type: the settings' table with the dashboard's overrides laid over it."""
    return {**settings.event_weights, **event_weight_overrides()}
