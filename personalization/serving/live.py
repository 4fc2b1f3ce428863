"""The live model: the live version's system, loaded once per process and swapped when another version goes live.

Every call compares the live version token with the loaded one. On a shared cache (Redis, Memcached, database) the
token is the one a promotion published there (:func:`publish_live_version`, a receiver of
``personalization.signals.model_promoted``), read in the request's one round trip. On a cache no other process
sees (local memory, dummy) a promotion in another process (``personalization_train``, a Celery worker) is never
published here: the token is read from the database, at most every :data:`LIVE_MEMO_SECONDS` per process.

Between retrains the live version gets update revisions (``personalization.updates``): the revision is published
the same way (``REVISION_KEY``, or the database), and each process applies the version's delta to its loaded
system in a background thread, serving the previous state until it is ready (:func:`system_for`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from personalization import shared_cache
from personalization.conf import settings
from personalization.serving.keys import LIVE_KEY, REVISION_KEY

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
        # the live version with its latest update delta applied: (token, revision, system), built off the request
        self.updated: tuple[str, int, Any] | None = None
        self.loading: set[str] = set()  # tokens whose update is being applied in a background thread
        self.update_failed: dict[tuple[str, int], float] = {}


_loaded = _Loaded()


def _token_of(version: Any) -> str:
    """Identifies one version row for good (ids can be reused after a database is flushed)."""
    return version.token if version is not None else "0"


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
        token = _live_token_from_db()
        shared_cache.set_many({LIVE_KEY: token, REVISION_KEY: f"{token}#{_revision_from_db(token)}"}, timeout=None)
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


def _base_for(token: str) -> tuple[int | None, Any]:
    """(version id, system as trained) of the version ``token``, loading it once; the previous pair while it
    cannot load."""
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
            _loaded.updated = None  # the previous version's update: its memory goes with it
            _loaded.failed.pop(token, None)
            if version.load_error:
                _record_load(pk, "")
    return _loaded.version_id, _loaded.system


def loaded_system(token: str) -> Any:
    """The system of version ``token`` when this process has it loaded already (live or beside it), else None:
    never loads anything (a cache hit stays free of the database)."""
    if _loaded.token == token:
        return _loaded.system
    pair = _extra.systems.get(token)
    return pair[1] if pair is not None else None


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
    """(version id, system) of the live model, loading or swapping it when the live version or its update
    revision changed."""
    token = live_token()
    return system_for(token, live_revision(token))


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


# -- updates between retrains (personalization.updates) ---------------------------------------------------------
class _RevisionMemo:
    """Without a shared cache: this process's last database read of the live version's update revision."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.revision = 0
        self.read_at = float("-inf")


def _revision_from_db(token: str) -> int:
    from personalization.models import ModelVersion

    if token in ("0", ""):
        return 0
    pk = int(token.split("@", 1)[0])
    return int(ModelVersion.objects.filter(pk=pk).values_list("update_revision", flat=True).first() or 0)


def revision_of(value: Any, token: str) -> int | None:
    """The update revision published for ``token`` in the value of REVISION_KEY; None when it names another
    version (or nothing)."""
    if not isinstance(value, str) or "#" not in value:
        return None
    published, _, revision = value.rpartition("#")
    return int(revision) if published == token and revision.isdigit() else None


def live_revision(token: str, cached: Any = None) -> int:
    """The update revision of the live version ``token``: ``cached`` (REVISION_KEY's value already read), else the
    cache, else the database (without a shared cache: the database, at most every LIVE_MEMO_SECONDS)."""
    if token in ("0", ""):
        return 0
    if not shared_cache.is_shared():
        memo = settings.derived("serving.revision-memo", _RevisionMemo)
        now = time.monotonic()
        if memo.token != token or now - memo.read_at >= LIVE_MEMO_SECONDS:
            try:
                memo.revision, memo.token = _revision_from_db(token), token
            except Exception:  # noqa: BLE001 - serve the revision already loaded
                logger.warning("Could not read the live model's update revision", exc_info=True)
            memo.read_at = now
        return memo.revision if memo.token == token else 0
    revision = revision_of(cached if cached is not None else shared_cache.get(REVISION_KEY), token)
    if revision is None:
        try:
            revision = _revision_from_db(token)
            shared_cache.set_many({REVISION_KEY: f"{token}#{revision}"}, timeout=300)
        except Exception:  # noqa: BLE001
            return _loaded.updated[1] if _loaded.updated and _loaded.updated[0] == token else 0
    return revision


def publish_revision(sender: Any = None, *, version_id: int, revision: int, system: Any = None,
                     **kwargs: Any) -> None:
    """Publish a new update revision of the live version so every process applies it (a receiver of
    ``personalization.signals.model_updated``); ``system``: the updated system, served by this process at once."""
    from personalization.models import ModelVersion

    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        return
    token = _token_of(version)
    if system is not None and _loaded.token == token:
        with _loaded.lock:
            if _loaded.updated is None or _loaded.updated[0] != token or _loaded.updated[1] <= revision:
                _loaded.updated = (token, revision, system)
    memo = settings.derived("serving.revision-memo", _RevisionMemo)
    memo.read_at = float("-inf")
    try:
        shared_cache.set_many({REVISION_KEY: f"{token}#{revision}"}, timeout=None)
    except Exception:  # noqa: BLE001
        logger.warning("Could not publish the live model's update revision", exc_info=True)


def _apply_update(token: str, base: Any, revision: int, artifact: str) -> None:
    """Read the update delta ``artifact`` and apply it to ``base`` (in a background thread: a page never waits on
    it); on failure serving stays on the last good state and tries again after RETRY_FAILED_LOAD_SECONDS."""
    from personalization.models import ModelVersion
    from personalization.recommenders.updates import apply_delta
    from personalization.registry import read_update

    try:
        delta = read_update(ModelVersion(update_artifact=artifact))
        system = apply_delta(base, delta) if delta is not None else base
        with _loaded.lock:
            current = _loaded.updated
            if _loaded.token == token and (current is None or current[0] != token or current[1] != revision):
                _loaded.updated = (token, revision, system)
    except Exception:  # noqa: BLE001
        _loaded.update_failed[(token, revision)] = time.monotonic()
        logger.exception("personalization: could not apply update %s of %s; serving the previous state",
                         revision, token)
    finally:
        _loaded.loading.discard(token)


def system_for(token: str, revision: int = 0) -> tuple[int | None, Any]:
    """(version id, system) of the version ``token`` with its update ``revision`` applied once it is loaded.

    A newer revision is applied in a background thread: until it is ready the previous state is served."""
    version_id, base = _base_for(token)
    if base is None or _loaded.token != token:
        return version_id, base
    current = _loaded.updated
    if revision <= 0:
        return version_id, base
    served = current[2] if current is not None and current[0] == token else base
    have = current[1] if current is not None and current[0] == token else 0
    if revision == have:
        return version_id, served
    failed_at = _loaded.update_failed.get((token, revision))
    if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_LOAD_SECONDS:
        return version_id, served
    with _loaded.lock:
        if token in _loaded.loading:
            return version_id, served
        _loaded.loading.add(token)
    try:  # one primary-key read when a revision is first seen; reading and applying the delta happen off the request
        from personalization.models import ModelVersion

        row = ModelVersion.objects.filter(pk=version_id).values_list("update_revision", "update_artifact").first()
    except Exception:  # noqa: BLE001
        row = None
        logger.warning("Could not read the update revision of model version %s", version_id, exc_info=True)
    if not row or not row[0]:
        _loaded.loading.discard(token)
        _loaded.update_failed[(token, revision)] = time.monotonic()
        return version_id, served
    if row[0] < revision:  # the cache names a revision the database does not have: do not ask again at once
        _loaded.update_failed[(token, revision)] = time.monotonic()
    from personalization import background_runs

    background_runs.start(f"apply-update-{token}-r{row[0]}", _apply_update, reason="a new update revision",
                          token=token, base=base, revision=row[0], artifact=row[1])
    return version_id, served
