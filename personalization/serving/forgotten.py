"""Forgotten subjects: people erased on request are hidden from every model version trained before their erasure.

A model version keeps the training rows of everyone it learned from. When a person is forgotten
(``personalization.privacy.forget``) their rows must stop counting at once, in every process, without retraining:
serving asks :func:`is_forgotten` before it looks up a subject's matrix row, and a forgotten subject is scored like a
stranger (their own new history only, else popular items of their context).

The set lives in the database (``ForgetRequest.subject_hashes``, keyed hashes of the subject ids), so every process
sees it. Each process keeps a memo of the hashes that apply to the live version (requests made after the version
was queued: a version queued later was trained on data the erasure had already deleted). The memo is re-read when
the live version changes, when the *forgotten generation* in the shared cache changes (:func:`announce`, read in the
request's one cache round trip, so other processes follow at once) and at least every :data:`MEMO_SECONDS`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.utils.crypto import salted_hmac

from personalization import shared_cache
from personalization.conf import settings
from personalization.freshness import PREFIX, invalidate_visitor, view_version_key
from personalization.serving.keys import state_key

logger = logging.getLogger("personalization.serving")

#: Cache key of the forgotten generation: a new value after every erasure makes every process re-read the set.
FORGOTTEN_GEN_KEY = f"{PREFIX}forgotten-gen"
#: A process re-reads the set at least this often (seconds), in case an announcement was lost.
MEMO_SECONDS = 3.0
_SALT = "personalization.privacy.subject"


def subject_hash(subject: str) -> str:
    """The keyed hash (HMAC-SHA256 with the secret key) of a subject id such as ``u:42`` or ``v:<visitor id>``."""
    return salted_hmac(_SALT, subject, algorithm="sha256").hexdigest()


class _Memo:
    def __init__(self) -> None:
        self.token: str | None = None
        self.generation: Any = None
        self.read_at = float("-inf")
        self.hashes: frozenset[str] = frozenset()
        self.lock = threading.Lock()


def _memo() -> _Memo:
    return settings.derived("serving.forgotten", _Memo)


def _queued_at(token: str) -> datetime | None:
    """When the version of a live token (``<pk>@<created_at timestamp>``) was queued; None without a live version."""
    if not token or token == "0" or "@" not in token:
        return None
    try:
        return datetime.fromtimestamp(float(token.split("@", 1)[1]), tz=dt_timezone.utc)
    except (TypeError, ValueError, OverflowError):
        return datetime.fromtimestamp(0, tz=dt_timezone.utc)  # unreadable: every request applies


def _read(token: str) -> frozenset[str]:
    from personalization.models import ForgetRequest

    since = _queued_at(token)
    if since is None:
        return frozenset()
    rows = ForgetRequest.objects.filter(created_at__gte=since).values_list("subject_hashes", flat=True)
    return frozenset(h for hashes in rows for h in hashes or ())


_UNREAD: Any = object()  # the caller did not read the generation


def forgotten_hashes(token: str, generation: Any = _UNREAD) -> frozenset[str]:
    """Hashes of the subjects hidden from the version of live ``token``. ``generation``: the value of
    :data:`FORGOTTEN_GEN_KEY` when the caller already read it (else it is read here)."""
    if _queued_at(token) is None:
        return frozenset()
    if generation is _UNREAD:
        generation = shared_cache.get(FORGOTTEN_GEN_KEY)
    memo = _memo()
    now = time.monotonic()
    if memo.token == token and memo.generation == generation and now - memo.read_at < MEMO_SECONDS:
        return memo.hashes
    with memo.lock:
        if memo.token == token and memo.generation == generation and now - memo.read_at < MEMO_SECONDS:
            return memo.hashes
        try:
            hashes = _read(token)
        except Exception:
            if memo.token != token:
                raise
            logger.warning("Could not read the forgotten subjects; using the previous set", exc_info=True)
            memo.read_at = now  # retry after MEMO_SECONDS, not on every request
            return memo.hashes
        memo.token, memo.generation, memo.read_at, memo.hashes = token, generation, now, hashes
        return hashes


def is_forgotten(subject: str, token: str, generation: Any = _UNREAD) -> bool:
    """Whether ``subject`` was forgotten after the version of live ``token`` was queued (its row must not count)."""
    hashes = forgotten_hashes(token, generation)
    return bool(hashes) and subject_hash(subject) in hashes


def forgotten_among(subjects: Iterable[str], token: str) -> set[str]:
    """The subjects among ``subjects`` that the version of live ``token`` must treat as strangers."""
    hashes = forgotten_hashes(token)
    return {s for s in subjects if subject_hash(s) in hashes} if hashes else set()


def announce() -> None:
    """An erasure was committed: this process re-reads the set now, every other one on its next request."""
    memo = _memo()
    memo.read_at = float("-inf")
    try:
        shared_cache.set_many({FORGOTTEN_GEN_KEY: time.time_ns()}, timeout=None)
    except Exception:  # noqa: BLE001 - the others re-read within MEMO_SECONDS anyway
        logger.warning("Could not announce a forgotten subject to the other processes", exc_info=True)


def forget_cached(subjects: Sequence[str]) -> None:
    """After an erasure has committed: the subjects' cached states are deleted, their cached lists stop counting
    (a new visitor version: those entries are never read again and expire), and every process re-reads the
    forgotten set (:func:`announce`)."""
    subjects = [s for s in subjects if s not in {"u:", "v:"}]
    if subjects:
        invalidate_visitor(*subjects)
        keys = [state_key(s) for s in subjects] + [view_version_key(s) for s in subjects]
        try:
            shared_cache.cache().delete_many(keys)
            shared_cache.forget(keys)
        except Exception:  # noqa: BLE001 - the entries no longer count anyway and expire with their TTL
            logger.warning("Could not delete the cached state of forgotten subjects", exc_info=True)
    announce()
