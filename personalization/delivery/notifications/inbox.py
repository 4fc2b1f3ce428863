"""A user's in-app inbox: the delivered notifications of the in-app channels, their unread count, marking them
read. The inbox API and the badge tag both read it here."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from personalization.delivery.channels import inbox_channel_names
from personalization.models import Notification


def inbox(user: Any) -> QuerySet[Notification]:
    """The user's delivered in-app notifications (the channels whose class is in-app)."""
    return Notification.objects.filter(user=user, channel__in=inbox_channel_names(), status=Notification.Status.SENT)


def unread_count(user: Any) -> int:
    """How many of the user's in-app notifications are unread (0 for an anonymous user)."""
    if not getattr(user, "is_authenticated", False):
        return 0
    return inbox(user).filter(read_at__isnull=True).count()


def mark_read(user: Any, pk: int) -> Notification | None:
    """Mark one of the user's notifications read (also counts as opened); None when it is not in their inbox."""
    row = inbox(user).filter(pk=pk).first()
    if row is None:
        return None
    now = timezone.now()
    if row.read_at is None:
        row.read_at = now
        row.opened_at = row.opened_at or now
        row.save(update_fields=["read_at", "opened_at"])
    return row


def mark_all_read(user: Any) -> int:
    """Mark all the user's unread notifications read (and opened, if not yet); returns how many."""
    now = timezone.now()
    rows = inbox(user).filter(read_at__isnull=True)
    rows.filter(opened_at__isnull=True).update(opened_at=now)
    return rows.update(read_at=now)
