"""What the API answers while the database fails: default content with 200 for reads, 503 with Retry-After for
writes; never a 500 (DESIGN rule 8).

Every view of the app's API mixes in :class:`DegradesOnDatabaseError`. A database error anywhere in a request
(authentication, the view, the services below it) is logged and answered by the view's :meth:`degraded` (default
content, e.g. an empty list marked ``fallback: "error"``), or, for writes and views without default content, by
:func:`unavailable`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import Error as DatabaseError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

logger = logging.getLogger("personalization.api")
RETRY_AFTER = 30  # seconds a client should wait before sending a refused write again


def unavailable(retry_after: int = RETRY_AFTER, hint: str = "") -> Response:
    """503 with ``Retry-After``: nothing was stored; the client sends it again later."""
    response = Response({"detail": f"The service is temporarily unavailable (database error); nothing was stored. "
                                   f"Try again in {retry_after} seconds{hint}."}, status=503)
    response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response


class DegradesOnDatabaseError:
    """DRF view mixin: a database error becomes :meth:`degraded` (reads) or :func:`unavailable` (writes)."""

    def degraded(self, request: Request, *args: Any, **kwargs: Any) -> Response | None:
        """Default content for a read while the database fails (None: answer 503). Must not touch the database."""
        return None

    def handle_exception(self, exc: Exception) -> Response:
        if not isinstance(exc, DatabaseError):
            return super().handle_exception(exc)
        request = self.request
        logger.warning("personalization: database error in %s %s; answering with default content", request.method,
                       request.path, exc_info=True)
        response = None
        if request.method in SAFE_METHODS:
            try:
                response = self.degraded(request, *self.args, **self.kwargs)
            except Exception:  # noqa: BLE001 - the stand-in must not fail the request either
                logger.exception("personalization: default content of %s failed", request.path)
        if response is None:
            return unavailable()
        response["Cache-Control"] = "no-store"  # nobody (browser, CDN) keeps the stand-in
        return response
