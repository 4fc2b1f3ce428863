"""django-personalization: tracking, models and delivery of personalized content for Django sites.

Public API (imported lazily, so importing the package never touches Django settings):

- ``track(request_or_user, event_type, item_key=None, value=None, **context)``: record an event from Python.
- ``recommend(user_or_visitor, n=10, context=None)``: item keys with scores from the live model(s), falling back
  to the cold-start chain; never raises.
- ``similar_items(item_key, n=10)``: items like one item.
"""

from __future__ import annotations

from typing import Any

__all__ = ["recommend", "similar_items", "track"]
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


def recommend(user_or_visitor: Any, n: int = 10, context: dict | None = None, **kwargs: Any) -> Any:
    """Recommendations for a user, request or visitor id; see ``personalization.serving.recommend``."""
    from personalization.serving import recommend as _recommend

    return _recommend(user_or_visitor, n, context=context, **kwargs)


def similar_items(item_key: str, n: int = 10) -> Any:
    """Items similar to one item; see ``personalization.serving.similar_items``."""
    from personalization.serving import similar_items as _similar

    return _similar(item_key, n)
