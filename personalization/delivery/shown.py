"""What one page has shown: the item keys its lists rendered so far, so a later list skips them.

A page is the request being answered (its template tags and the page-hydration API see the same request object),
or, for a template rendered without a request, the template ``Context``. The keys live on that object, never in the
process, so two requests never share them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ATTRIBUTE = "_personalization_shown"


def page_of(holder: Any) -> Any:
    """The object a page's shown items are kept on: the request of a request or template context, else ``holder``.

    None stays None (no page: nothing is shared).
    """
    if holder is None or hasattr(holder, "META"):
        return holder
    request = getattr(holder, "request", None)  # a RequestContext
    if hasattr(request, "META"):
        return request
    try:
        request = holder.get("request")  # a Context whose processors put the request in
    except Exception:  # noqa: BLE001 - something that is no context: keep the items on it
        request = None
    return request if hasattr(request, "META") else holder


def shown(page: Any) -> dict[str, None]:
    """The item keys shown on ``page`` so far, in the order they were shown (empty and unsaved without a page)."""
    if page is None:
        return {}
    keys = getattr(page, ATTRIBUTE, None)
    if keys is None:
        keys = {}
        try:
            setattr(page, ATTRIBUTE, keys)
        except Exception:  # noqa: BLE001 - an object that takes no attributes shares nothing
            pass
    return keys


def note(page: Any, keys: Iterable[str]) -> None:
    """Record ``keys`` as shown on ``page`` (no-op without a page)."""
    if page is None:
        return
    seen = shown(page)
    for key in keys:
        seen.setdefault(key, None)
