"""Database tables of the app.

``Event`` is the append-only log every later stage learns from. Rows are never updated except to link an
anonymous visitor's history to the user who signs in (identity stitching) and to erase a person on request.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Event(models.Model):
    """One interaction: a view, click, add-to-cart, purchase, impression, ..."""

    class Source(models.TextChoices):
        MIDDLEWARE = "middleware", "Middleware"
        TRACKER = "tracker", "JavaScript tracker"
        API = "api", "REST API"
        PYTHON = "python", "Python track()"
        SEGMENT = "segment", "Segment-compatible endpoint"
        IMPORT = "import", "Import"

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    event_type = models.CharField(max_length=32)
    item_key = models.CharField(max_length=100, blank=True, default="")
    visitor_id = models.CharField(max_length=64, blank=True, default="")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_constraint=False,
    )
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    value = models.FloatField(null=True, blank=True)
    recommendation_id = models.CharField(max_length=64, blank=True, default="")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    context = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["occurred_at"], name="pers_event_time"),
            models.Index(fields=["visitor_id", "occurred_at"], name="pers_event_visitor"),
            models.Index(fields=["user", "occurred_at"], name="pers_event_user"),
            models.Index(fields=["item_key", "occurred_at"], name="pers_event_item"),
            models.Index(fields=["event_type", "occurred_at"], name="pers_event_type"),
            models.Index(
                fields=["recommendation_id"], name="pers_event_rec",
                condition=~models.Q(recommendation_id=""),
            ),
        ]
        ordering = ["-occurred_at"]

    def __str__(self) -> str:
        who = f"user {self.user_id}" if self.user_id else f"visitor {self.visitor_id[:8]}"
        return f"{self.event_type} {self.item_key or '-'} by {who} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class VisitorLink(models.Model):
    """A visitor id (one browser) known to belong to a user, recorded at sign-in.

    Events buffered or sent later from that browser are attributed to the user, so a person's history is one
    history across devices and across the moment they signed in.
    """

    visitor_id = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    linked_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"visitor {self.visitor_id[:8]} -> user {self.user_id}"
