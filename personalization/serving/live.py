"""The live model: the live version's system, loaded once per process and swapped when another version goes live.

Every call compares the live version token published in the cache with the loaded one; a promotion publishes the
new token (:func:`publish_live_version`, a receiver of ``personalization.signals.model_promoted``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from personalization import shared_cache
from personalization.serving.keys import LIVE_KEY

logger = logging.getLogger("personalization.serving")
RETRY_FAILED_LOAD_SECONDS = 30.0


class _Loaded:
    def __init__(self) -> None:
        self.token: str | None = None
        self.version_id: int | None = None
        self.system: Any = None
        self.failed: dict[str, float] = {}  # token -> time of the last failed load
        self.lock = threading.Lock()


_loaded = _Loaded()


def _token_of(version: Any) -> str:
    """Identifies one version row for good (ids can be reused after a database is flushed)."""
    return f"{version.pk}@{version.created_at.timestamp():.6f}" if version is not None else "0"


def _live_token_from_db() -> str:
    from personalization.registry import live_version

    return _token_of(live_version())


def publish_live_version(sender: Any = None, **kwargs: Any) -> None:
    """Publish the live version token, so every process swaps models on its next call (a signal receiver)."""
    try:
        shared_cache.set_many({LIVE_KEY: _live_token_from_db()}, timeout=None)
    except Exception:  # noqa: BLE001
        logger.warning("Could not publish the live model version", exc_info=True)


def live_token(cached: Any = None) -> str:
    """The live version token: ``cached`` (the value already read from the cache), else the cache, else the database."""
    value = cached
    if value is None:
        try:
            value = shared_cache.cache().get(LIVE_KEY)
        except Exception:  # noqa: BLE001
            value = None
    if value is None or isinstance(value, int):  # int: published by an older release
        value = _live_token_from_db()
        try:
            shared_cache.set_many({LIVE_KEY: value}, timeout=300)
        except Exception:  # noqa: BLE001
            pass
    return str(value)


def system_for(token: str) -> tuple[int | None, Any]:
    """(version id, system) of the version ``token``, loading it once; the previous pair while it cannot load."""
    if token in ("0", ""):
        return None, None
    if _loaded.token == token:
        return _loaded.version_id, _loaded.system
    failed_at = _loaded.failed.get(token)
    if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_LOAD_SECONDS:
        return _loaded.version_id, _loaded.system  # keep serving the previous model meanwhile
    with _loaded.lock:
        if _loaded.token != token:
            from personalization.models import ModelVersion
            from personalization.registry import load_system

            pk = int(token.split("@", 1)[0])
            try:
                version = ModelVersion.objects.get(pk=pk)
                system = load_system(version)
            except Exception:
                _loaded.failed[token] = time.monotonic()
                logger.exception("personalization: could not load model version %s; serving the previous one", pk)
                return _loaded.version_id, _loaded.system
            # swap only once fully loaded: readers see the old or the new (version, system) pair, never a mix
            _loaded.system, _loaded.version_id, _loaded.token = system, pk, token
            _loaded.failed.pop(token, None)
    return _loaded.version_id, _loaded.system


def live_system() -> tuple[int | None, Any]:
    """(version id, system) of the live model, loading or swapping it when the live version changed."""
    return system_for(live_token())
