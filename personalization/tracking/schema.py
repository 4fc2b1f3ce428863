"""The one validation path for incoming events (API, tracker, middleware, Python, Segment).

Hand-written rather than a DRF serializer: the API must validate tens of thousands of events per second on two
cores, and a serializer costs about 100 microseconds per event. Errors are keyed by field like DRF's, so the
API can return them unchanged in a 400.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from personalization.conf import settings

ITEM_KEY_RE = re.compile(r"^(?P<type>[a-z][a-z0-9_]{0,31}):(?P<id>[A-Za-z0-9][A-Za-z0-9_.\-]{0,63})$")
EVENT_FIELDS = {"event", "item", "event_id", "timestamp", "value", "context", "recommendation_id"}
MAX_RECOMMENDATION_ID = 64


class EventValidationError(ValueError):
    """Raised with a ``{field: [messages]}`` dict for one malformed event."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors)
        self.errors = errors


@dataclass(slots=True)
class EventData:
    """A validated event, ready for a collector."""

    event_type: str
    item_key: str
    event_id: uuid.UUID
    occurred_at: datetime
    value: float | None = None
    recommendation_id: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    visitor_id: str = ""
    user_id: int | None = None
    source: str = "api"

    def as_row(self) -> dict[str, Any]:
        """Plain dict used by the Redis buffer and bulk writers."""
        return {
            "event_id": str(self.event_id),
            "event_type": self.event_type,
            "item_key": self.item_key,
            "occurred_at": self.occurred_at.isoformat(),
            "value": self.value,
            "recommendation_id": self.recommendation_id,
            "context": self.context,
            "visitor_id": self.visitor_id,
            "user_id": self.user_id,
            "source": self.source,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EventData:
        return cls(
            event_type=row["event_type"],
            item_key=row["item_key"],
            event_id=uuid.UUID(row["event_id"]),
            occurred_at=datetime.fromisoformat(row["occurred_at"]),
            value=row.get("value"),
            recommendation_id=row.get("recommendation_id") or "",
            context=row.get("context") or {},
            visitor_id=row.get("visitor_id") or "",
            user_id=row.get("user_id"),
            source=row.get("source") or "api",
        )


def _limits() -> tuple[dict[str, dict[str, Any]], frozenset[str], timedelta, timedelta, int]:
    """Settings the validator reads for every event, derived once per settings load (``settings.reload()``
    clears the cache, so overridden settings in tests take effect at once)."""
    cache = settings._cache
    try:
        return cache["_schema_limits"]
    except KeyError:
        limits = (
            settings.event_types,
            frozenset(settings.ITEM_TYPES),
            timedelta(seconds=settings.MAX_CLOCK_SKEW_SECONDS),
            timedelta(seconds=settings.MAX_EVENT_AGE_SECONDS),
            settings.MAX_CONTEXT_BYTES,
        )
        cache["_schema_limits"] = limits
        return limits


def parse_item_key(key: Any) -> tuple[str, str]:
    """Split ``"product:42"`` into ``("product", "42")``; raise ValueError with a hint when malformed."""
    if not isinstance(key, str) or not (m := ITEM_KEY_RE.match(key)):
        raise ValueError(
            'Item keys look like "<type>:<id>", e.g. "product:42" (type: lowercase letters, digits, _; '
            "id: letters, digits, _ . -, at most 64 characters)."
        )
    item_type = m.group("type")
    if item_type not in _limits()[1]:
        raise ValueError(f"Unknown item type {item_type!r}; accepted: {', '.join(settings.ITEM_TYPES)}.")
    return item_type, m.group("id")


def _parse_timestamp(raw: Any, now: datetime) -> datetime:
    if isinstance(raw, str):
        try:
            ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("Not an ISO 8601 timestamp, e.g. 2024-05-01T12:30:00Z.") from None
    elif isinstance(raw, datetime):
        ts = raw
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        # Unix time; JavaScript's Date.now() sends milliseconds.
        try:
            seconds = float(raw)
            if not math.isfinite(seconds):
                raise ValueError
            seconds = seconds / 1000.0 if seconds > 1e11 else seconds
            ts = datetime.fromtimestamp(seconds, tz=dt_timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise ValueError("Timestamp out of range.") from None
    else:
        raise ValueError("Expected an ISO 8601 string or a Unix time in seconds or milliseconds.")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt_timezone.utc)
    _, _, skew, max_age, _ = _limits()
    if ts - now > skew:
        raise ValueError("Timestamp is in the future; check the sender's clock.")
    if now - ts > max_age:
        raise ValueError(
            f"Timestamp is older than {settings.MAX_EVENT_AGE_SECONDS} seconds; "
            "import history with `manage.py personalization_import` instead."
        )
    return ts


def _has_nul(value: Any) -> bool:
    """NUL cannot be stored in PostgreSQL text or JSONB: reject it instead of failing at write time."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


_BIG_INT = 10**15


def _flat_context_size_bound(context: dict) -> int | None:
    """An upper bound of ``len(json.dumps(context, separators=(",", ":")))`` for the common context (a flat
    object of strings and numbers without NUL) computed without serialising it; None when the context is not
    that simple (nested, NUL, non-finite floats, non-string keys), so the caller checks it the exact way.

    ``json.dumps`` (ASCII output) writes a character as at most 6 characters (``\\uXXXX``), or 12 for one
    outside the Basic Multilingual Plane (a surrogate pair); a float as its repr, an int below 10**15 in 17.
    """
    bound = 2  # {}
    for key, value in context.items():
        if type(key) is not str or "\x00" in key:
            return None
        bound += (6 if key.isascii() else 12) * len(key) + 4  # "key": and the comma
        if type(value) is str:
            if "\x00" in value:
                return None
            bound += (6 if value.isascii() else 12) * len(value) + 2
        elif type(value) is float:
            if not math.isfinite(value):
                return None
            bound += len(repr(value))
        elif type(value) is int:
            if not -_BIG_INT < value < _BIG_INT:
                return None
            bound += 17
        elif value is None or value is True or value is False:
            bound += 5  # null, true, false
        else:
            return None
    return bound


def validate_event(raw: Any, *, now: datetime, source: str = "api") -> EventData:
    """Validate one event payload (a dict) and return it normalised, or raise EventValidationError."""
    if not isinstance(raw, dict):
        raise EventValidationError({"non_field_errors": ["Expected a JSON object for each event."]})
    types, item_types, _, _, max_context = _limits()
    errors: dict[str, list[str]] = {}
    if not EVENT_FIELDS.issuperset(raw):
        unknown = set(raw) - EVENT_FIELDS
        errors["non_field_errors"] = [f"Unknown field(s): {', '.join(sorted(map(str, unknown)))}."]

    event_type = raw.get("event")
    spec = None
    if event_type is None or event_type == "":
        errors["event"] = ["This field is required."]
    elif not isinstance(event_type, str) or event_type not in types:
        shown = event_type if isinstance(event_type, str) else type(event_type).__name__
        errors["event"] = [f"Unknown event type {str(shown)[:40]!r}; accepted: {', '.join(sorted(types))}."]
    else:
        spec = types[event_type]

    item_key = raw.get("item")
    if item_key is None or item_key == "":
        item_key = ""
        if spec is not None and spec["item"]:
            errors["item"] = [f"This field is required for {event_type!r} events."]
    elif not (isinstance(item_key, str) and (m := ITEM_KEY_RE.match(item_key)) and m.group("type") in item_types):
        try:
            parse_item_key(item_key)
        except ValueError as exc:
            errors["item"] = [str(exc)]

    event_id = raw.get("event_id")
    if event_id is None or event_id == "":
        event_id = uuid.uuid4()
    else:
        try:
            event_id = uuid.UUID(event_id) if isinstance(event_id, str) else None
        except ValueError:
            event_id = None
        if event_id is None:
            errors["event_id"] = ["Must be a UUID string; reuse it when retrying so the event is stored once."]

    occurred_at = now
    timestamp = raw.get("timestamp")
    if timestamp is not None and timestamp != "":
        try:
            occurred_at = _parse_timestamp(timestamp, now)
        except ValueError as exc:
            errors["timestamp"] = [str(exc)]

    value = raw.get("value")
    if value is not None:
        try:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError
            value = float(value)
            if not math.isfinite(value):
                raise ValueError
        except (ValueError, OverflowError):
            errors["value"] = ["Must be a finite number (price, quantity, dwell seconds or rating)."]

    rec_id = raw.get("recommendation_id") or ""
    if not isinstance(rec_id, str) or len(rec_id) > MAX_RECOMMENDATION_ID:
        errors["recommendation_id"] = [f"Must be a string of at most {MAX_RECOMMENDATION_ID} characters."]
    elif "\x00" in rec_id:  # PostgreSQL text cannot hold it: a 400 now, not a failed write
        errors["recommendation_id"] = ["Must not contain NUL (\\u0000) characters."]

    context = raw.get("context")
    if context is None:
        context = {}
    elif not isinstance(context, dict):
        errors["context"] = ["Must be a JSON object."]
    elif (bound := _flat_context_size_bound(context)) is None or bound > max_context:
        try:
            size = len(json.dumps(context, separators=(",", ":"), allow_nan=False))
        except (TypeError, ValueError, RecursionError):
            errors["context"] = ["Must be JSON-serialisable without NaN or infinity, and not nested too deeply."]
        else:
            if size > max_context:
                errors["context"] = [f"Too large: {size} bytes, the limit is {max_context}."]
            elif _has_nul(context):
                errors["context"] = ["Must not contain NUL (\\u0000) characters."]

    if errors:
        raise EventValidationError(errors)
    return EventData(event_type, item_key, event_id, occurred_at, value, rec_id, context, "", None, source)
