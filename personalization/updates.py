"""Updates between retrains: fold the events that arrived since training into the live model, every minute.

:func:`run_update` (the task ``personalization.update_models``, on a short beat) reads the events after the live
version's watermark (event id), at most ``UPDATE_MAX_EVENTS`` per run, computes a delta with the pure core
(:mod:`personalization.recommenders.updates`: ALS factors of the users and items touched, item-kNN and transition
rows, popularity), merges it into the version's cumulative delta, stores it next to the artifact and bumps the
version's ``update_revision`` (only if no other run did meanwhile). ``signals.model_updated`` then makes serving
publish the revision, so every process applies the delta off the request path; the touched visitors' cached lists
are invalidated. A run holds a lock with a heartbeat (a dead run's lock expires after ``UPDATE_LOCK_SECONDS``);
on any failure nothing is published and serving stays on the last good state.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from django.db.models import Min
from django.utils import timezone

from personalization import shared_cache
from personalization.conf import settings
from personalization.freshness import PREFIX, invalidate_visitor
from personalization.models import Event, ModelVersion
from personalization.pipeline.columns import EVENT, ITEM, TIMESTAMP, USER
from personalization.run_locks import RunLock, lock_key
from personalization.signals import model_updated
from personalization.subjects import model_subject

logger = logging.getLogger("personalization.updates")
LOCK_NAME = "update"
LOCK_KEY = lock_key(LOCK_NAME)
LAST_RUN_KEY = f"{PREFIX}update-last-run"


@dataclass
class UpdateResult:
    """What one run did: ``status`` is "updated", "idle" (no new events), "skipped" (with ``reason``)."""

    status: str
    reason: str = ""
    version_id: int | None = None
    revision: int = 0
    events: int = 0
    users: int = 0
    items: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Memo:
    """The worker's last base system and updated system, so a run does not reload or re-apply them."""

    base: tuple[str, Any] | None = None  # (version token, trained system)
    updated: tuple[str, int, Any] | None = None  # (token, revision, system with that delta applied)
    delta: tuple[str, int, Any] | None = None  # (token, revision, cumulative Delta)


_memo = _Memo()


def _state(version: ModelVersion) -> tuple[Any, Any]:
    """(system as of the version's current revision, its cumulative delta or None)."""
    from personalization.recommenders.updates import apply_delta
    from personalization.registry import load_system, read_update

    token = version.token
    if _memo.base is None or _memo.base[0] != token:
        _memo.base, _memo.updated, _memo.delta = (token, load_system(version)), None, None
    revision = version.update_revision
    if _memo.updated is not None and _memo.updated[:2] == (token, revision):
        return _memo.updated[2], _memo.delta[2] if _memo.delta else None
    delta = read_update(version) if revision else None
    system = apply_delta(_memo.base[1], delta) if delta is not None else _memo.base[1]
    _memo.updated, _memo.delta = (token, revision, system), (token, revision, delta)
    return system, delta


def _initial_watermark(version: ModelVersion) -> int:
    """The id before the first event the version did not train on (its last training event's time)."""
    if version.data_end is not None:
        first = Event.objects.filter(occurred_at__gt=version.data_end).aggregate(m=Min("id"))["m"]
        if first is not None:
            return first - 1
    last = Event.objects.order_by("-id").values_list("id", flat=True).first()
    return last or 0


def _new_events(version: ModelVersion, system: Any, watermark: int, limit: int) -> tuple[pd.DataFrame, list[str],
                                                                                          int]:
    """(events after ``watermark`` as the pure core's frame, their subjects, the new watermark)."""
    rows = list(Event.objects.filter(id__gt=watermark).order_by("id")
                .values_list("id", "user_id", "visitor_id", "item_key", "event_type", "occurred_at")[:limit])
    if not rows:
        return pd.DataFrame(columns=[USER, ITEM, EVENT, TIMESTAMP]), [], watermark
    subjects, records = [], []
    for _, user_id, visitor_id, item, kind, when in rows:
        if not item or kind == "impression":
            continue
        subject = f"u:{user_id}" if user_id else f"v:{visitor_id}"
        subjects.append(subject)
        records.append((model_subject(system, subject), item, kind, when))
    frame = pd.DataFrame(records, columns=[USER, ITEM, EVENT, TIMESTAMP])
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    return frame, sorted(set(subjects)), rows[-1][0]


def _due() -> bool:
    """Whether UPDATE_INTERVAL_SECONDS have passed since the last run (the beat ticks more often)."""
    try:
        last = shared_cache.get(LAST_RUN_KEY)
    except Exception:  # noqa: BLE001
        return True
    return last is None or time.time() - float(last) >= settings.UPDATE_INTERVAL_SECONDS - 1


def run_update(*, force: bool = False) -> UpdateResult:
    """Fold the events since the live version's watermark into it (see the module docstring). ``force``: run even
    when updates are off or not due yet (tests, the benchmark)."""
    if not force and settings.UPDATE_INTERVAL_SECONDS <= 0:
        return UpdateResult("skipped", "UPDATE_INTERVAL_SECONDS is 0")
    if not force and not _due():
        return UpdateResult("skipped", "not due yet")
    lock = RunLock(LOCK_NAME, ttl=settings.UPDATE_LOCK_SECONDS)
    if not lock.acquire():
        return UpdateResult("skipped", "another update is running")
    started = time.monotonic()
    try:
        shared_cache.set_many({LAST_RUN_KEY: time.time()}, timeout=max(settings.UPDATE_INTERVAL_SECONDS, 60) * 10)
        return _run(started)
    finally:
        lock.release()


def _run(started: float) -> UpdateResult:
    from personalization.recommenders.updates import apply_delta, compute_delta, merge
    from personalization.registry import delete_update, live_version, save_update

    version = live_version()
    if version is None:
        return UpdateResult("skipped", "no live model")
    system, delta = _state(version)
    watermark = version.update_watermark
    if watermark is None:
        watermark = _initial_watermark(version)
    frame, subjects, new_watermark = _new_events(version, system, watermark, settings.UPDATE_MAX_EVENTS)
    result = UpdateResult("idle", version_id=version.pk, revision=version.update_revision)
    if new_watermark == watermark:
        return result
    changes = compute_delta(system, frame)
    revision = version.update_revision
    if not changes.users:  # only events that change nothing: move the watermark on
        ModelVersion.objects.filter(pk=version.pk, update_revision=revision).update(update_watermark=new_watermark)
        return result
    cumulative = merge(delta, changes.delta)
    name = save_update(version, revision + 1, cumulative.to_bytes())
    won = ModelVersion.objects.filter(pk=version.pk, update_revision=revision).update(
        update_revision=revision + 1, update_artifact=name, update_watermark=new_watermark,
        update_events=cumulative.events, updated_at=timezone.now())
    if not won:  # another run published this revision first: ours is discarded
        delete_update(name)
        return UpdateResult("skipped", "another update published first", version.pk, revision)
    delete_update(version.update_artifact)
    base = _memo.base[1]
    updated = apply_delta(base, cumulative)
    token = version.token
    _memo.updated, _memo.delta = (token, revision + 1, updated), (token, revision + 1, cumulative)
    model_updated.send(sender=ModelVersion, version_id=version.pk, revision=revision + 1, system=updated)
    invalidate_visitor(*subjects)
    result = UpdateResult("updated", version_id=version.pk, revision=revision + 1, events=len(frame),
                          users=len(changes.users), items=len(changes.items),
                          seconds=round(time.monotonic() - started, 3))
    logger.info("Update %s of model version %s: %s events, %s users, %s items in %.2f s", result.revision,
                version.pk, result.events, result.users, result.items, result.seconds)
    return result
