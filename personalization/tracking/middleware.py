"""``TrackingMiddleware``: records a ``view`` when a page about an item renders, and sets the visitor cookie.

Thin on purpose: it resolves the visitor from the cookie (no query), notes the item in ``process_view``, and
hands the event to the collector only after the response has been sent (a response closer), so the page is
never slowed or broken by tracking. Errors are logged, never raised.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from personalization.catalog import get_catalog
from personalization.conf import settings
from personalization.tracking.identity import apply_cookie, get_visitor
from personalization.tracking.schema import EventData, parse_item_key

logger = logging.getLogger("personalization.tracking")


_warmed = False


def _warm_up() -> None:
    """Compile the User-Agent parser's patterns at start-up (about 0.3 s, once per process) instead of in the
    first tracked request of every worker."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    try:
        from personalization.tracking.context import parse_user_agent

        parse_user_agent.__wrapped__("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0")
    except Exception:
        logger.exception("personalization: could not load the User-Agent parser")


def _excluded(path: str) -> bool:
    return any(path.startswith(prefix) for prefix in settings.EXCLUDED_PATHS)


class TrackingMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)
        _warm_up()

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        self._before(request)
        response = self.get_response(request)
        return self._after(request, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        self._before(request)
        response = await self.get_response(request)
        return self._after(request, response)

    def _before(self, request: HttpRequest) -> None:
        try:
            if not _excluded(request.path):
                get_visitor(request, resolve_user=False)
        except Exception:
            logger.exception("personalization: could not identify the visitor")

    def process_view(self, request: HttpRequest, view_func: Callable, view_args: tuple, view_kwargs: dict) -> None:
        try:
            if request.method == "GET" and not _excluded(request.path):
                request._personalization_view = (view_func, view_kwargs)
        except Exception:
            logger.exception("personalization: process_view failed")

    def _after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        try:
            if _excluded(request.path):
                return response
            event = self._page_view(request, response)
            apply_cookie(request, response)
            if event is not None:
                response._resource_closers.append(lambda: _record_after_response(request, event))
        except Exception:
            logger.exception("personalization: tracking failed; the page is served untracked")
        return response

    def _page_view(self, request: HttpRequest, response: HttpResponseBase) -> EventData | None:
        noted = getattr(request, "_personalization_view", None)
        if noted is None or response.status_code != 200:
            return None
        visitor = get_visitor(request, resolve_user=False)
        if not visitor.trackable:
            return None
        view_func, view_kwargs = noted
        key = get_catalog().item_for_request(request, view_func, view_kwargs)
        if not key:
            return None
        try:
            parse_item_key(key)
        except ValueError:
            logger.warning("personalization: page item key %r is malformed; view not recorded", key)
            return None
        return EventData(
            event_type="view",
            item_key=key,
            event_id=uuid.uuid4(),
            occurred_at=timezone.now(),
            source="middleware",
        )


def _record_after_response(request: HttpRequest, event: EventData) -> None:
    """Runs after the response is sent: write the view now, or resolve the user and hand the rest (context,
    rate limit, write) to the background writer, so a sync worker takes its next request sooner."""
    from personalization.tracking.service import record

    try:
        if settings.MIDDLEWARE_WRITE == "background":
            from personalization.tracking.background import writer

            writer.submit_request(request, get_visitor(request), [event])
        else:
            record(request, [event])
    except Exception:
        logger.exception("personalization: page view not recorded")
