"""Identity stitching: sign-in links the browser's anonymous history to the user; sign-out starts afresh.

The receivers are connected in ``PersonalizationConfig.ready()``.
"""

from __future__ import annotations

import logging
from typing import Any

from personalization.models import Event, VisitorLink
from personalization.tracking.identity import get_visitor, rotate_visitor

logger = logging.getLogger("personalization.tracking")


def link_visitor(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Attach this browser's past anonymous events to the user and remember the link for later ones."""
    if request is None:
        return
    try:
        visitor = get_visitor(request)
        visitor.user_id = user.pk
        if not visitor.consent:
            return
        VisitorLink.objects.update_or_create(visitor_id=visitor.visitor_id, defaults={"user": user})
        Event.objects.filter(visitor_id=visitor.visitor_id, user__isnull=True).update(user=user)
    except Exception:
        logger.exception("personalization: could not link the visitor to user %s", user.pk)


def rotate_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """A shared computer's next visitor must not continue the previous user's history."""
    if request is not None:
        try:
            rotate_visitor(request)
        except Exception:
            logger.exception("personalization: could not rotate the visitor id")
