"""The live model: the live version's system, loaded once per process and swapped when another version goes live.

Every call compares the live version token with the loaded one. On a shared cache (Redis, Memcached, database) the
token is the one a promotion published there (:func:`publish_live_version`, a receiver of
``personalization.signals.model_promoted``), read in the request's one round trip. On a cache no other process
sees (local memory, dummy) a promotion in another process (``personalization_train``, a Celery worker) is never
published here: the token is read from the database, at most every :data:`LIVE_MEMO_SECONDS` per process.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from personalization import shared_cache
from personalization.conf import settings
from personalization.serving.keys import LIVE_KEY

logger = logging.getLogger("personalization.serving")
RETRY_FAILED_LOAD_SECONDS = 30.0
#: Without a shared cache: how long a process trusts the live token it read from the database. A model promoted
#: by another process is served within this delay; this process's own promotions are served at once.
LIVE_MEMO_SECONDS = 3.0


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


class _LiveMemo:
    """This process's last database read of the live token (used only without a shared cache)."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.read_at = float("-inf")


def _memo() -> _LiveMemo:
    return settings.derived("serving.live-memo", _LiveMemo)


def _memoized_live_token() -> str:
    """The live token from the database, re-read when older than LIVE_MEMO_SECONDS; the previous one while the
    database does not answer."""
    memo = _memo()
    now = time.monotonic()
    if memo.token is not None and now - memo.read_at < LIVE_MEMO_SECONDS:
        return memo.token
    try:
        token = _live_token_from_db()
    except Exception:
        if memo.token is None:
            raise
        logger.warning("Could not read the live model version; serving the previous one", exc_info=True)
        memo.read_at = now  # retry after LIVE_MEMO_SECONDS, not on every request
        return memo.token
    memo.token, memo.read_at = token, now
    return token


def publish_live_version(sender: Any = None, **kwargs: Any) -> None:
    """Publish the live version token, so every process swaps models on its next call (a signal receiver)."""
    _memo().read_at = float("-inf")  # this process reads the new version at once, whatever the cache
    try:
        shared_cache.set_many({LIVE_KEY: _live_token_from_db()}, timeout=None)
    except Exception:  # noqa: BLE001
        logger.warning("Could not publish the live model version", exc_info=True)


def live_token(cached: Any = None) -> str:
    """The live version token: ``cached`` (the value already read from the cache), else the cache, else the database.

    Without a shared cache the cached value is ignored: it holds only this process's own promotions."""
    if not shared_cache.is_shared():
        return _memoized_live_token()
    value = cached
    if value is None:
        value = shared_cache.get(LIVE_KEY)
    if value is None:
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
            except Exception as exc:
                _loaded.failed[token] = time.monotonic()
                logger.exception("personalization: could not load model version %s; serving the previous one", pk)
                _record_load(pk, f"{type(exc).__name__}: {exc}")
                return _loaded.version_id, _loaded.system
            # swap only once fully loaded: readers see the old or the new (version, system) pair, never a mix
            _loaded.system, _loaded.version_id, _loaded.token = system, pk, token
            _loaded.failed.pop(token, None)
            if version.load_error:
                _record_load(pk, "")
    return _loaded.version_id, _loaded.system


def _record_load(pk: int, error: str) -> None:
    """Note on the version row why it could not be loaded (``""``: it loads again), for the admin and ``bundle/``:
    a live version nobody can load must not look healthy."""
    from django.utils import timezone

    from personalization.models import ModelVersion

    try:
        ModelVersion.objects.filter(pk=pk).update(load_error=error[:2000],
                                                  load_failed_at=timezone.now() if error else None)
    except Exception:  # noqa: BLE001 - the database may be what failed; the log has the error
        logger.warning("Could not record the load failure of model version %s", pk, exc_info=True)


def load_problem() -> str | None:
    """Why the live version is not being served by this process (it could not be loaded), else None."""
    token = live_token()
    if token in ("0", "") or _loaded.token == token:
        return None
    from personalization.models import ModelVersion

    pk = int(token.split("@", 1)[0])
    if token not in _loaded.failed:
        return None
    error = ModelVersion.objects.filter(pk=pk).values_list("load_error", flat=True).first()
    return f"Model version {pk} is live, not loadable: {error or 'see the server log'}"


def live_system() -> tuple[int | None, Any]:
    """(version id, system) of the live model, loading or swapping it when the live version changed."""
    return system_for(live_token())


class _Extra:
    """Versions loaded beside the live one (A/B tests), most recently used last; at most EXTRA_VERSIONS kept."""

    def __init__(self) -> None:
        self.systems: dict[str, tuple[int, Any]] = {}
        self.failed: dict[str, float] = {}
        self.lock = threading.Lock()


#: Versions other than the live one a process keeps loaded at once (an A/B test needs one or two).
EXTRA_VERSIONS = 2
_extra = _Extra()


def version_system(token: str, live: str | None = None) -> tuple[int | None, Any]:
    """(version id, system) of the version ``token``, loaded once per process and kept; (None, None) while it
    cannot be loaded (retried after RETRY_FAILED_LOAD_SECONDS; the reason is recorded on the version row).

    The live version (``live``: its token when the caller has it) is the live slot's own system, never a copy."""
    if token in ("0", ""):
        return None, None
    if live is not None and token == live:
        return system_for(token)
    if token == _loaded.token:
        return _loaded.version_id, _loaded.system
    pair = _extra.systems.get(token)
    if pair is not None:
        return pair
    failed_at = _extra.failed.get(token)
    if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_LOAD_SECONDS:
        return None, None
    with _extra.lock:
        pair = _extra.systems.get(token)
        if pair is not None:
            return pair
        from personalization.models import ModelVersion
        from personalization.registry import load_system

        pk = int(token.split("@", 1)[0])
        try:
            version = ModelVersion.objects.get(pk=pk)
            if _token_of(version) != token:
                raise LookupError(f"model version {pk} was replaced by another row with the same id")
            system = load_system(version)
        except Exception as exc:
            _extra.failed[token] = time.monotonic()
            logger.exception("personalization: could not load model version %s for an experiment", pk)
            _record_load(pk, f"{type(exc).__name__}: {exc}")
            return None, None
        while len(_extra.systems) >= EXTRA_VERSIONS:
            _extra.systems.pop(next(iter(_extra.systems)))
        _extra.systems[token] = (pk, system)
        _extra.failed.pop(token, None)
        if version.load_error:
            _record_load(pk, "")
    return pk, system


def version_token(version: Any) -> str:
    """The token of a ModelVersion row (what :func:`version_system` takes)."""
    return _token_of(version)
