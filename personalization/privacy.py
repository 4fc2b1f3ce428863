"""Data rights: forget a person, export everything stored about them, purge what is older than the retention limit.

One service behind every face: ``personalization_forget``, ``personalization_export_person`` and
``personalization_purge``; the admin's *Forget a person* form and *Forget* actions; ``GET`` / ``DELETE me/data/``;
the user model's deletion (:func:`forget_deleted_user`, a ``pre_delete`` receiver connected in
``AppConfig.ready()``); the ``personalization.purge_expired_data`` beat task.

**Forget** (:func:`forget`) deletes the person's events (the user's and those of every visitor id linked to them),
visitor links, recommendation logs, notifications and notification preferences; once committed, it flushes this
process's write buffers and the collector's buffer and deletes what they held of the person, drops their cached
state and lists, and hides their rows from every model version trained before (serving's ``forgotten`` set), so
they get cold-start lists at once, in every process. It returns a :class:`Receipt` and keeps a ``ForgetRequest``
audit row that names nobody (keyed hashes of the subject ids, counts, time, channel, the staff member who asked).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from personalization import serving
from personalization.conf import settings
from personalization.models import (
    AuditReport,
    Event,
    ForgetRequest,
    Notification,
    NotificationPreference,
    RecommendationLog,
    VisitorLink,
)
from personalization.tracking.background import writer as page_view_writer
from personalization.tracking.collectors import get_collector

logger = logging.getLogger("personalization.privacy")

#: The tables a forget request deletes from, in the receipt's order.
TABLES = ("events", "visitor_links", "recommendation_logs", "notifications", "notification_preferences")
CHANNELS = ("command", "admin", "api", "user_deleted", "python")
FLUSH_TIMEOUT = 2.0  # seconds to wait for this process's write buffers before the late-event sweep
MAX_VISITOR_ID = 64  # Event.visitor_id's length


@dataclass(frozen=True)
class Person:
    """Everything that identifies one person in the app's tables: a user id and/or visitor ids."""

    user_id: int | None
    visitor_ids: tuple[str, ...]
    asked: str  # the subject asked for: u:<user id> or v:<visitor id>

    @property
    def subjects(self) -> list[str]:
        """Their subject ids as serving and the models know them (``u:<id>``, ``v:<visitor id>``)."""
        return ([f"u:{self.user_id}"] if self.user_id is not None else []) + [f"v:{v}" for v in self.visitor_ids]

    def events(self) -> Q:
        """Their events: the user's, and the anonymous ones of their visitor ids (never another user's)."""
        q = Q(visitor_id__in=self.visitor_ids, user__isnull=True) if self.visitor_ids else Q(pk__in=[])
        return q | Q(user_id=self.user_id) if self.user_id is not None else q


@dataclass
class Receipt:
    """What one forget request deleted: rows per table, the subjects hidden from the live model, the audit row."""

    counts: dict[str, int]
    subjects: int
    request_id: int
    created_at: datetime
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The receipt as JSON-ready data."""
        return {"forget_request": self.request_id, "created_at": self.created_at.isoformat(),
                "deleted": dict(self.counts), "subjects_hidden_from_models": self.subjects, "notes": self.notes}


def find_person(*, user_id: int | None = None, visitor_id: str | None = None) -> Person:
    """The person behind a user id or a visitor id (a visitor linked to a user at sign-in is that user).

    Raises ValueError, saying what was wrong, unless exactly one valid identifier is given."""
    if (user_id is None) == (visitor_id is None):
        raise ValueError("Give exactly one of a user id and a visitor id.")
    if visitor_id is not None:
        visitor_id = str(visitor_id).strip()
        if not visitor_id or len(visitor_id) > MAX_VISITOR_ID:
            raise ValueError(f"A visitor id is 1 to {MAX_VISITOR_ID} characters (the value of the visitor cookie "
                             "without its signature, or Event.visitor_id in the admin).")
        link = VisitorLink.objects.filter(visitor_id=visitor_id).values_list("user_id", flat=True).first()
        if link is None:
            return Person(None, (visitor_id,), f"v:{visitor_id}")
        user_id, asked = link, f"v:{visitor_id}"
    else:
        if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 1:
            raise ValueError(f"A user id is a positive integer, not {user_id!r}.")
        asked = f"u:{user_id}"
    visitors = set(VisitorLink.objects.filter(user_id=user_id).values_list("visitor_id", flat=True))
    visitors.update(Event.objects.filter(user_id=user_id).exclude(visitor_id="").order_by()
                    .values_list("visitor_id", flat=True).distinct())
    return Person(user_id, tuple(sorted(visitors)), asked)


def _delete(person: Person) -> dict[str, int]:
    subjects = person.subjects
    links = Q(visitor_id__in=person.visitor_ids)
    if person.user_id is not None:
        links |= Q(user_id=person.user_id)
    counts = {
        "events": Event.objects.filter(person.events()).delete()[0],
        "visitor_links": VisitorLink.objects.filter(links).delete()[0],
        "recommendation_logs": RecommendationLog.objects.filter(subject__in=subjects).delete()[0],
        "notifications": 0,
        "notification_preferences": 0,
    }
    if person.user_id is not None:
        counts["notifications"] = Notification.objects.filter(user_id=person.user_id).delete()[0]
        counts["notification_preferences"] = (
            NotificationPreference.objects.filter(user_id=person.user_id).delete()[0])
    return counts


def forget(*, user_id: int | None = None, visitor_id: str | None = None, channel: str = "python",
           requested_by: str = "") -> Receipt:
    """Forget a person everywhere the app keeps them (see the module docstring); returns the receipt.

    Inside a transaction (a user's deletion) the rows go with it, and the caches, buffers and the live model follow
    when it commits. Raises ValueError for an invalid identifier. Forgetting someone twice is harmless: the second
    receipt counts zeros."""
    if channel not in CHANNELS:
        raise ValueError(f"Unknown channel {channel!r}; one of {', '.join(CHANNELS)}.")
    person = find_person(user_id=user_id, visitor_id=visitor_id)
    subjects = person.subjects
    with transaction.atomic():
        counts = _delete(person)
        audit = ForgetRequest.objects.create(
            subject_hash=serving.subject_hash(person.asked),
            subject_hashes=sorted(serving.subject_hash(s) for s in subjects),
            counts=counts, channel=channel, requested_by=requested_by[:150],
        )
        receipt = Receipt(counts, len(subjects), audit.pk, audit.created_at)
        transaction.on_commit(lambda: _after_commit(person, receipt))
    logger.info("personalization: forget request %s (%s) deleted %s", audit.pk, channel, counts)
    return receipt


def _after_commit(person: Person, receipt: Receipt) -> None:
    """Flush the buffers that may still hold the person's events, delete what they wrote, clear the caches."""
    for name, flush in (("page views", lambda: page_view_writer.flush(FLUSH_TIMEOUT)),
                        ("recommendation logs", lambda: serving.log_writer.flush(FLUSH_TIMEOUT)),
                        ("collector", lambda: get_collector().flush())):
        try:
            flush()
        except Exception:  # noqa: BLE001 - a buffer that cannot be flushed now is written later: see the README
            logger.warning("personalization: could not flush the %s buffer before forgetting", name, exc_info=True)
            receipt.notes.append(f"The {name} buffer could not be flushed; run the forget request again later.")
    try:
        late = {"events": Event.objects.filter(person.events()).delete()[0],
                "recommendation_logs": RecommendationLog.objects.filter(subject__in=person.subjects).delete()[0]}
        if any(late.values()):
            for table, count in late.items():
                receipt.counts[table] += count
            ForgetRequest.objects.filter(pk=receipt.request_id).update(counts=receipt.counts)
    except Exception:  # noqa: BLE001
        logger.exception("personalization: could not delete the late rows of forget request %s", receipt.request_id)
        receipt.notes.append("Rows written while forgetting could not be deleted; run the forget request again.")
    serving.forget_cached(person.subjects)


def forget_deleted_user(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``pre_delete`` receiver of the user model: deleting a user forgets them (in the deletion's transaction, so
    a failure stops the deletion rather than leaving their data behind)."""
    if isinstance(instance.pk, int) and not isinstance(instance.pk, bool):
        forget(user_id=instance.pk, channel="user_deleted")
    elif instance.pk is not None:  # the app keys users by integer ids (u:<id>); nothing of theirs can be stored
        logger.warning("personalization: user %r has a non-integer key; nothing to forget", type(instance.pk))


def _json_ready(data: Any) -> Any:
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def export_person(*, user_id: int | None = None, visitor_id: str | None = None) -> dict[str, Any]:
    """Everything the app stores about a person, as JSON-ready data: their events, visitor links, recommendation
    logs, notifications and preferences, and the items of their rows in the live model.

    Raises ValueError for an invalid identifier."""
    person = find_person(user_id=user_id, visitor_id=visitor_id)
    subjects = person.subjects
    links = Q(visitor_id__in=person.visitor_ids)
    if person.user_id is not None:
        links |= Q(user_id=person.user_id)
    events = (Event.objects.filter(person.events()).order_by("occurred_at", "id")
              .values("event_id", "event_type", "item_key", "visitor_id", "user_id", "occurred_at", "received_at",
                      "value", "recommendation_id", "source", "context"))
    logs = (RecommendationLog.objects.filter(subject__in=subjects).order_by("created_at")
            .values("id", "subject", "slot", "model_version_id", "items", "fallback", "created_at"))
    notifications = (Notification.objects.filter(user_id=person.user_id).order_by("created_at")
                     .values("id", "rule__name", "channel", "subject", "body", "payload", "status", "created_at",
                             "opened_at", "read_at")) if person.user_id is not None else []
    preferences = (NotificationPreference.objects.filter(user_id=person.user_id)
                   .values("opted_out", "timezone", "updated_at")) if person.user_id is not None else []
    try:
        model = serving.live_model_rows(subjects)
    except Exception:  # noqa: BLE001
        logger.exception("personalization: could not read the live model for an export")
        model = {"model_version": None, "rows": {}, "error": "the live model could not be read"}
    return _json_ready({
        "generated_at": timezone.now(),
        "user_id": person.user_id,
        "visitor_ids": list(person.visitor_ids),
        "subjects": subjects,
        "events": list(events.iterator(chunk_size=2000)),
        "visitor_links": list(VisitorLink.objects.filter(links).order_by("linked_at")
                              .values("visitor_id", "user_id", "linked_at")),
        "recommendation_logs": list(logs.iterator(chunk_size=2000)),
        "notifications": [{**{k: v for k, v in row.items() if k != "rule__name"}, "rule": row["rule__name"]}
                          for row in notifications],
        "notification_preferences": list(preferences),
        "live_model": model,
    })


#: What the retention limit purges: model and the time field compared with the cut-off.
RETAINED = (("events", Event, "occurred_at"), ("recommendation_logs", RecommendationLog, "created_at"),
            ("notifications", Notification, "created_at"), ("audit_reports", AuditReport, "created_at"))


def purge_expired(days: int | None = None, *, batch_size: int = 5000,
                  now: datetime | None = None) -> dict[str, int] | None:
    """Delete events, recommendation logs, notifications and audit reports older than ``days`` (default
    ``RETENTION_DAYS``), in batches of ``batch_size`` rows (one short transaction each). Returns rows deleted per
    table; None when no limit is set (everything is kept). Raises ValueError for an invalid limit or batch size."""
    days = settings.RETENTION_DAYS if days is None else days
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"The retention limit is a positive number of days, not {days!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"The batch size is a positive integer, not {batch_size!r}.")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    counts = {}
    for name, model, time_field in RETAINED:
        counts[name] = _purge(model, time_field, cutoff, batch_size)
    if any(counts.values()):
        logger.info("personalization: purged rows older than %s days: %s", days, counts)
    return counts


def _purge(model: Any, time_field: str, cutoff: datetime, batch_size: int) -> int:
    total = 0
    old = model.objects.filter(**{f"{time_field}__lt": cutoff}).order_by()
    while True:
        with transaction.atomic():
            pks = list(old.values_list("pk", flat=True)[:batch_size])
            if not pks:
                return total
            total += model.objects.filter(pk__in=pks).delete()[0]

