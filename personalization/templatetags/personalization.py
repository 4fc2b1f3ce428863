"""Template tags: ``{% load personalization %}``.

``{% tracking_script %}`` loads tracker.js configured for this site and page.
"""

from __future__ import annotations

import logging
from typing import Any

from django import template
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from personalization.conf import settings

logger = logging.getLogger("personalization.templatetags")
register = template.Library()


def page_item(request: Any) -> str:
    """The item the current page is about, as the middleware saw it ("" when none)."""
    noted = getattr(request, "_personalization_view", None)
    if not noted:
        return ""
    from personalization.catalog import get_catalog

    try:
        return get_catalog().item_for_request(request, *noted) or ""
    except Exception:  # noqa: BLE001 - a template must render whatever the adapter does
        logger.exception("personalization: page item not resolved")
        return ""


@register.simple_tag(takes_context=True)
def tracking_script(context: template.Context, flush_interval: int = 5000) -> str:
    """``<script>`` tag for tracker.js with the events endpoint, page item and consent mode."""
    try:
        endpoint = reverse("personalization:events")
    except NoReverseMatch:
        logger.warning("personalization: include personalization.api.urls to enable the tracker")
        return ""
    request = context.get("request")
    return format_html(
        '<script src="{}" data-endpoint="{}" data-item="{}" data-consent-required="{}" data-consent-cookie="{}" '
        'data-flush-interval="{}" defer></script>',
        static("personalization/tracker.js"),
        endpoint,
        page_item(request) if request is not None else "",
        "1" if settings.CONSENT_REQUIRED else "0",
        settings.CONSENT_COOKIE_NAME,
        int(flush_interval),
    )
