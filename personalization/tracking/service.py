"""The tracking service: every way in (middleware, tracker, API, Python, Segment) ends here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from personalization import ratelimit
from personalization.conf import settings
from personalization.freshness import invalidate_events
from personalization.tracking import metrics
from personalization.tracking.collectors import CollectResult, collect
from personalization.tracking.context import client_ip, merge_context, request_context
from personalization.tracking.identity import Visitor, get_visitor
from personalization.tracking.schema import EventData, EventValidationError, validate_event

TRUSTED_SOURCES = {"python", "segment", "import", "middleware"}


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    dropped: int = 0  # not recorded on purpose: bots, no consent, over the rate limit
    reason: str = ""
    errors: dict[int, dict[str, list[str]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"accepted": self.accepted, "duplicates": self.duplicates, "dropped": self.dropped}
        if self.reason:
            data["reason"] = self.reason
        return data


def validate_batch(payloads: Sequence[Any], *, source: str) -> tuple[list[EventData], dict[int, dict]]:
    """Validate every payload; return the valid events and per-index errors."""
    now = timezone.now()
    valid: list[EventData] = []
    errors: dict[int, dict] = {}
    for index, raw in enumerate(payloads):
        try:
            valid.append(validate_event(raw, now=now, source=source))
        except EventValidationError as exc:
            errors[index] = exc.errors
    if errors:  # a rejected request: not the hot path
        metrics.incr("invalid_events", len(errors))
    return valid, errors


def over_rate_limit(visitor: Visitor, count: int, ip: str = "") -> bool:
    """Fixed-window counters per visitor and per client IP in the cache: scripted floods are dropped, not stored
    (a script that drops its cookie on every request is still one IP)."""
    window = settings.RATE_LIMIT_WINDOW
    if settings.RATE_LIMIT_EVENTS:
        total = ratelimit.add(f"personalization:rate:{visitor.subject}", count, window)
        if total is not None and total > settings.RATE_LIMIT_EVENTS:
            return True
    if ip and settings.RATE_LIMIT_EVENTS_PER_IP:
        total = ratelimit.add(f"personalization:rate-ip:{ip}", count, window)
        if total is not None and total > settings.RATE_LIMIT_EVENTS_PER_IP:
            return True
    return False


def prepare(
    request: HttpRequest | None, events: list[EventData], *, visitor: Visitor | None = None
) -> tuple[list[EventData], IngestResult | None]:
    """Attach identity and context and apply privacy, bot and rate rules.

    Returns the events to store and, when they are all dropped, the result saying why. Thread-safe for a
    finished request: the background writer runs it for page views, with the visitor resolved beforehand.
    """
    if visitor is None and request is not None:
        visitor = get_visitor(request)
    if visitor is not None:
        if not visitor.consent:
            metrics.incr("no_consent_events", len(events))
            return [], IngestResult(dropped=len(events), reason="no_consent")
        if visitor.is_bot:
            metrics.incr("bot_events", len(events))
            return [], IngestResult(dropped=len(events), reason="bot")
        if over_rate_limit(visitor, len(events), client_ip(request) if request is not None else ""):
            metrics.incr("rate_limited_events", len(events))
            return [], IngestResult(dropped=len(events), reason="rate_limited")
    server = request_context(request) if request is not None else {}
    visitor_id = visitor.visitor_id if visitor is not None else ""
    user_id = visitor.user_id if visitor is not None else None
    for event in events:
        if visitor is not None:
            event.visitor_id = event.visitor_id or visitor_id
            event.user_id = event.user_id or user_id
        context = event.context = merge_context(
            event.context, server, event.occurred_at, trusted=event.source in TRUSTED_SOURCES
        )
        if not event.recommendation_id:
            rec_id = context.get("recommendation_id")
            if isinstance(rec_id, str):
                event.recommendation_id = rec_id[:64]
    invalidate_events(events)  # these visitors' cached recommendations are stale from now on
    return events, None


def record(request: HttpRequest | None, events: list[EventData], *, visitor: Visitor | None = None) -> IngestResult:
    """Prepare events (identity, context, privacy, bots, rate) and hand them to the collector."""
    if not events:
        return IngestResult()
    ready, dropped = prepare(request, events, visitor=visitor)
    if dropped is not None:
        return dropped
    result: CollectResult = collect(ready)
    if result.duplicates:  # retried batches only; accepted events are counted from the Event table
        metrics.incr("duplicate_events", result.duplicates)
    return IngestResult(accepted=result.accepted, duplicates=result.duplicates)
