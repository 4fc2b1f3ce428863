"""The ``{% load personalization %}`` tag library: registers the delivery tags and renders the tracking tags.

- ``{% tracking_script %}`` loads tracker.js (and hydrate.js) configured for this site and page.
- ``{% recommended_items slot="home" limit=8 as items %}...{% empty %}...{% endrecommended_items %}``, or
  ``{% recommended_items slot="home" limit=4 as items %}`` alone to put the list in ``items``
- ``{% similar_items product limit=4 as items %}...{% empty %}...{% endsimilar_items %}`` (or alone, likewise)
- ``{% personalized_block "hero" %}{% variant "sale" %}...{% variant "x" category="candles" %}...
  {% endpersonalized_block %}``
- ``{% adaptive_layout "homepage" %}{% section "deals" category="mugs" %}...{% section "new" pinned=1 %}...
  {% endadaptive_layout %}``
- ``{% slot_attrs items %}`` / ``{% item_attrs item %}``: the tracking attributes for hand-written markup.
- ``{% explain_recommendation item %}``: why the visitor gets this item, in sentences (SHAP of the ranker).

The delivery tags' nodes live in :mod:`personalization.delivery.tags`.
"""

from __future__ import annotations

import logging
from typing import Any

from django import template
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from personalization.catalog import get_catalog
from personalization.conf import settings
from personalization.delivery.tags.blocks import do_personalized_block
from personalization.delivery.tags.items import do_recommended_items, do_similar_items
from personalization.delivery.tags.layouts import do_adaptive_layout

logger = logging.getLogger("personalization.templatetags")
register = template.Library()
register.tag("recommended_items", do_recommended_items)
register.tag("similar_items", do_similar_items)
register.tag("personalized_block", do_personalized_block)
register.tag("adaptive_layout", do_adaptive_layout)


def page_item(request: Any) -> str:
    """The item the current page is about, as the middleware saw it ("" when none)."""
    noted = getattr(request, "_personalization_view", None)
    if not noted:
        return ""
    try:
        return get_catalog().item_for_request(request, *noted) or ""
    except Exception:  # noqa: BLE001 - a template must render whatever the adapter does
        logger.exception("personalization: page item not resolved")
        return ""


@register.simple_tag(takes_context=True)
def tracking_script(context: template.Context, flush_interval: int = 5000, privacy: str = "") -> str:
    """``<script>`` tags for tracker.js (events endpoint, page item, consent mode) and hydrate.js.

    ``privacy="local"``: the tracker keeps the visitor's history in the browser for on-device re-ranking and sends
    no events (README "On-device re-ranking").
    """
    try:
        endpoint = reverse("personalization:events")
    except NoReverseMatch:
        logger.warning("personalization: include personalization.api.urls to enable the tracker")
        return ""
    request = context.get("request")
    tracker = format_html(
        '<script src="{}" data-endpoint="{}" data-item="{}" data-consent-required="{}" data-consent-cookie="{}" '
        'data-flush-interval="{}" data-privacy="{}" defer></script>',
        static("personalization/tracker.js"),
        endpoint,
        page_item(request) if request is not None else "",
        "1" if settings.CONSENT_REQUIRED else "0",
        settings.CONSENT_COOKIE_NAME,
        int(flush_interval),
        privacy,
    )
    try:
        page_endpoint = reverse("personalization:page")
    except NoReverseMatch:
        return tracker
    return tracker + format_html(
        '<script src="{}" data-page-endpoint="{}" defer></script>', static("personalization/hydrate.js"),
        page_endpoint,
    )


@register.simple_tag
def slot_attrs(items: Any) -> str:
    """``data-personalization-slot``/``data-recommendation-id`` of a ``recommended_items``/``similar_items`` list."""
    return getattr(items, "attrs", "")


@register.simple_tag
def item_attrs(item: Any) -> str:
    """``data-personalization-item``/``data-personalization-position`` of one item."""
    return getattr(item, "attrs", "")


@register.simple_tag(takes_context=True)
def explain_recommendation(context: template.Context, item: Any, slot: str = "") -> str:
    """Why ``item`` (an item of ``recommended_items``, a key or a host object) is recommended to this visitor:
    ``<span class="personalization-why">`` with the sentences of the features that raised its score (SHAP), else
    its source reason in words; "" when it is not in the visitor's list. Never raises."""
    from personalization.delivery.item_lists import item_key

    try:
        request = context.get("request")
        key = getattr(item, "key", None) or getattr(item, "item", None) or item_key(item)
        if request is None or not key:
            return ""
        words, factors = _explained(request, str(key), str(slot or ""))
        sentences = [f["sentence"] for f in factors] or ([words] if words else [])
        if not sentences:
            return ""
        return format_html('<span class="personalization-why" data-personalization-item="{}">{}</span>', key,
                           " · ".join(sentences))
    except Exception:  # noqa: BLE001 - a template must render whatever happens
        logger.exception("personalization: explain_recommendation failed")
        return ""


#: Items of the visitor's list explained per request (the largest list serving returns).
PAGE_EXPLAINED_ITEMS = 100


def _explained(request: Any, key: str, slot: str) -> tuple[str, list[dict[str, Any]]]:
    """(source reason in words, SHAP factors) of item ``key`` for the request's visitor, as the slot's list ranks it
    for them; ("", []) when it is not in that list. The list is computed once per request and slot (every tag of a
    page shares it) and is not logged as served."""
    from personalization import serving

    memo = getattr(request, "_personalization_explained", None)
    if memo is None:
        memo = {}
        request._personalization_explained = memo
    if slot not in memo:
        result = serving.recommend(request, PAGE_EXPLAINED_ITEMS, slot=slot, explain=True, log=False)
        memo[slot] = {r.item: r for r in result.items}
    rec = memo[slot].get(key)
    return (rec.explanation, list(rec.factors)) if rec is not None else ("", [])
