"""``personalization.track()``: record an event from server code (checkout, webhooks, jobs)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from personalization.tracking.schema import EventValidationError
from personalization.tracking.service import IngestResult, record, validate_batch


def track(
    request_or_user: Any,
    event_type: str,
    item_key: str | None = None,
    value: float | None = None,
    *,
    event_id: str | None = None,
    recommendation_id: str = "",
    timestamp: Any = None,
    **context: Any,
) -> IngestResult:
    """Validate and record one event for a request (visitor, consent, context) or a user (server-side jobs).

    Raises ``EventValidationError`` with field errors for a malformed call: that is a programming error.
    Privacy rules still apply for requests: without consent nothing is stored (``result.dropped == 1``).
    """
    payload: dict[str, Any] = {"event": event_type}
    if item_key is not None:
        payload["item"] = item_key
    if value is not None:
        payload["value"] = value
    if event_id is not None:
        payload["event_id"] = event_id
    if recommendation_id:
        payload["recommendation_id"] = recommendation_id
    if timestamp is not None:
        payload["timestamp"] = timestamp
    if context:
        payload["context"] = context
    events, errors = validate_batch([payload], source="python")
    if errors:
        raise EventValidationError(errors[0])
    if isinstance(request_or_user, HttpRequest):
        return record(request_or_user, events)
    user = request_or_user
    if user is None or not getattr(user, "is_authenticated", False):
        raise ValueError("track() needs an HttpRequest or an authenticated user.")
    events[0].user_id = user.pk
    events[0].visitor_id = ""
    return record(None, events)
