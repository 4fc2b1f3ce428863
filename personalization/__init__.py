"""django-personalization: tracking, models and delivery of personalized content for Django sites.

Public API (imported lazily, so importing the package never touches Django settings):

- ``track(request_or_user, event_type, item_key=None, value=None, **context)``: record an event from Python.
- ``recommend(user_or_visitor, n=10, context=None)``: item keys with scores from the live model(s), falling back
  to the cold-start chain; never raises.
- ``similar_items(item_key, n=10)``: items like one item.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["recommend", "similar_items", "track"]
__version__ = "0.1.0"

# Public name -> the module that defines it; imported on first use (PEP 562), so the callables keep their own
# signatures and docstrings and importing the package stays free of Django.
_PUBLIC = {
    "track": "personalization.tracking.api",
    "recommend": "personalization.serving",
    "similar_items": "personalization.serving",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'personalization' has no attribute {name!r}")
