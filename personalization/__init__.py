"""django-personalization: tracking, models and delivery of personalized content for Django sites.

Public API (imported lazily, so importing the package never touches Django settings):

- ``track(request_or_user, event_type, item_key=None, value=None, **context)``: record an event from Python.
"""

from __future__ import annotations

from typing import Any

__all__ = ["track"]
__version__ = "0.1.0"


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
) -> Any:
    """Record one event through the same validation path as the API. See ``personalization.tracking.api``."""
    from personalization.tracking.api import track as _track

    return _track(
        request_or_user, event_type, item_key, value, event_id=event_id,
        recommendation_id=recommendation_id, timestamp=timestamp, **context,
    )
