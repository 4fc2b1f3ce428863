"""``{% load personalization_inbox %}``: ``{% notification_badge %}``, the signed-in user's unread in-app count.

Renders ``<span class="personalization-badge" data-unread="3">3</span>`` (nothing for anonymous users or when
there is nothing unread; ``{% notification_badge always=True %}`` renders ``0`` too). Never raises: on a database
error it renders nothing. ``{% unread_notifications as n %}`` gives the number to a template variable instead.
"""

from __future__ import annotations

import logging

from django import template
from django.utils.html import format_html

from personalization.delivery.notifications import unread_count

register = template.Library()
logger = logging.getLogger("personalization.templatetags")


def _count(context: template.Context) -> int | None:
    user = context.get("user")
    if user is None and context.get("request") is not None:
        user = getattr(context["request"], "user", None)
    if not getattr(user, "is_authenticated", False):
        return 0
    try:
        return unread_count(user)
    except Exception:  # noqa: BLE001 - a template tag must never break the page
        logger.warning("notification_badge: could not count unread notifications", exc_info=True)
        return None


@register.simple_tag(takes_context=True)
def unread_notifications(context: template.Context) -> int:
    return _count(context) or 0


@register.simple_tag(takes_context=True)
def notification_badge(context: template.Context, always: bool = False, css_class: str = "personalization-badge"):
    count = _count(context)
    if count is None or (count == 0 and not always):
        return ""
    return format_html('<span class="{}" data-unread="{}">{}</span>', css_class, count, count)
