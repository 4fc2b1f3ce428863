"""Hydration endpoints for cached pages: ``GET blocks/<slot>/`` and ``GET page/?slots=...``.

``page/`` renders every placeholder of a page in one request: the delivery services choose the items, variants and
sections, and the template nodes the page was rendered from (each placeholder names its template) render them, so
hydrated and server-rendered output show the same items. The placeholders are rendered in the order they come (the
page's order, one spec per placeholder), all for the one request, so each list skips the items of the lists before
it as on a server-rendered page (:mod:`personalization.delivery.shown`).
Slot specs: ``home`` (recommended items of a slot), ``product@product:42`` (with an item as context),
``similar:product:42``, ``block:hero``, ``layout:homepage``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from django.http import HttpRequest
from django.template import RequestContext, TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import get_template, render_to_string
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from personalization.api.degraded import DegradesOnDatabaseError
from personalization.api.parsing import SessionWithoutCsrf
from personalization.delivery import blocks, item_lists, layouts
from personalization.delivery.item_lists import ItemList
from personalization.delivery.tags.base import LIVE, DeliveryNode, literal
from personalization.delivery.tags.blocks import PersonalizedBlockNode, variant_html
from personalization.delivery.tags.items import RecommendedItemsNode, SimilarItemsNode
from personalization.delivery.tags.layouts import AdaptiveLayoutNode
from personalization.tracking.identity import apply_cookie, get_visitor

logger = logging.getLogger("personalization.api")
MAX_SLOTS = 20
MAX_TEMPLATES = 5
DEFAULT_ITEMS_TEMPLATE = "personalization/items.html"


def _nodes(template_names: list[str]) -> list[tuple[Any, DeliveryNode]]:
    """(django Template, node) for every personalization node in the named templates."""
    found = []
    for name in template_names:
        try:
            compiled = get_template(name).template
        except (TemplateDoesNotExist, TemplateSyntaxError, Exception):  # noqa: BLE001 - a bad name finds nothing
            continue
        for node in compiled.nodelist.get_nodes_by_type(DeliveryNode):
            found.append((compiled, node))
    return found


def _match(spec: str, nodes: list[tuple[Any, DeliveryNode]]) -> tuple[Any, Any, str | None]:
    """The (template, node, target) a spec names; node None when no template holds it."""
    kind, _, rest = spec.partition(":")
    if kind == "block":
        for compiled, node in nodes:
            if isinstance(node, PersonalizedBlockNode) and literal(node.args[0]) == rest:
                return compiled, node, None
        return None, None, None
    if kind == "layout":
        for compiled, node in nodes:
            if isinstance(node, AdaptiveLayoutNode) and literal(node.args[0]) == rest:
                return compiled, node, None
        return None, None, None
    if kind == "similar":
        for compiled, node in nodes:
            if isinstance(node, SimilarItemsNode) and not node.assigns:
                return compiled, node, rest
        return None, None, rest
    slot, _, item = spec.partition("@")
    for compiled, node in nodes:
        if isinstance(node, RecommendedItemsNode) and not node.assigns and literal(node.kwargs.get("slot")) == slot:
            return compiled, node, item
    return None, None, item


def _page_request(request: HttpRequest, page: str) -> HttpRequest:
    """The request as the page's templates expect it (its path is the page's, for "next" links)."""
    if not page or not page.startswith("/") or page.startswith("//"):
        return request
    clone = copy.copy(request)
    path, _, query = page.partition("?")
    clone.path = clone.path_info = path[:300]
    clone.META = {**request.META, "QUERY_STRING": query[:500]}
    return clone


def render_spec(request: HttpRequest, spec: str, nodes: list[tuple[Any, DeliveryNode]]) -> dict[str, Any]:
    """What one placeholder needs: ``html`` plus what was shown (items or variant).

    The delivery services choose the items, the variant or the sections; the node of the page's template renders
    them with its own body, so the result is what server rendering shows.
    """
    compiled, node, target = _match(spec, nodes)
    context = RequestContext(request, {LIVE: True})
    if node is None:
        return _render_without_template(request, spec, target)
    with context.bind_template(compiled):
        if isinstance(node, RecommendedItemsNode):
            items = item_lists.recommended_items(request, **{**node.arguments(context), "item": target or ""})
            return {"html": str(node.render_items(context, items)), **_items_info(items)}
        if isinstance(node, SimilarItemsNode):
            items = item_lists.similar_items(request, **{**node.arguments(context), "target": target or ""})
            return {"html": str(node.render_items(context, items)), **_items_info(items)}
        if isinstance(node, PersonalizedBlockNode):
            choice = blocks.block_choice(request, node.slot(context), node.options(context),
                                         control_share=node.control(context))
            if choice is None:
                return {"html": str(node.render_default(context))}
            return {"html": str(node.render_variant(choice.variant, context, choice.how)),
                    "variant": choice.variant.key, "choice": choice.how}
        sections = layouts.layout_sections(request, node.name(context), node.written(context))
        return {"html": str(node.render_sections(context, sections))}


def _items_info(items: ItemList) -> dict[str, Any]:
    return {"items": items.keys, "recommendation_id": items.recommendation_id,
            "model_version": items.model_version, "fallback": items.fallback}


def _render_without_template(request: HttpRequest, spec: str, target: str | None) -> dict[str, Any]:
    """Items in the app's default partial; blocks from admin variants only; layouts need their template."""
    kind, _, rest = spec.partition(":")
    if kind == "layout":
        return {"error": "Layouts are rendered from their template: pass templates=<the page's template>."}
    if kind == "block":
        return block_payload(request, rest, [])
    if kind == "similar":
        items = item_lists.similar_items(request, target or "")
    else:
        items = item_lists.recommended_items(request, spec.partition("@")[0][:64], item=target or "")
    html = render_to_string(DEFAULT_ITEMS_TEMPLATE, {"items": items}, request=request) if items else ""
    if items:
        html = format_html("<div {}>{}</div>", items.attrs, mark_safe(html))
    return {"html": str(html), **_items_info(items)}


def block_payload(request: HttpRequest, slot: str, template_names: list[str]) -> dict[str, Any]:
    """The chosen variant of a block for the request's visitor, with its HTML."""
    compiled, node, _ = _match(f"block:{slot}", _nodes(template_names)) if template_names else (None, None, None)
    if node is None:  # the admin's variants only
        choice = blocks.block_choice(request, slot, [])
        html = variant_html(slot, choice.variant, choice.how, mark_safe(choice.variant.html)) if choice else ""
    else:
        context = RequestContext(request, {LIVE: True})
        with context.bind_template(compiled):
            choice = blocks.block_choice(request, node.slot(context), node.options(context),
                                         control_share=node.control(context))
            html = node.render_variant(choice.variant, context, choice.how) if choice is not None else ""
    if choice is None:
        return {"slot": slot, "variant": None, "html": "", "choice": ""}
    option = choice.variant
    return {"slot": slot, "variant": option.key, "category": option.category, "choice": choice.how, "html": str(html)}


def _names(raw: str, limit: int) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()][:limit]


def _with_cookie(request: Request, response: Response) -> Response:
    response["Cache-Control"] = "private, no-store"
    get_visitor(request._request)
    apply_cookie(request._request, response)
    return response


class BlockView(DegradesOnDatabaseError, APIView):
    """The variant of a content block chosen for this visitor."""

    def degraded(self, request: Request, slot: str = "", **kwargs: Any) -> Response:
        """The database fails: no variant (the page keeps the block's default content)."""
        return Response({"slot": slot[:64], "variant": None, "html": "", "choice": "error"})

    authentication_classes = [SessionWithoutCsrf]
    permission_classes: list = []

    @extend_schema(
        parameters=[OpenApiParameter("template", OpenApiTypes.STR, description="template holding the block's "
                                     "{% personalized_block %} (its variants join the admin variants)")],
        responses=inline_serializer("BlockOut", {
            "slot": serializers.CharField(), "variant": serializers.CharField(allow_null=True),
            "category": serializers.CharField(required=False), "choice": serializers.CharField(),
            "html": serializers.CharField(),
        }),
        summary="Chosen variant of a content block",
    )
    def get(self, request: Request, slot: str) -> Response:
        templates = _names(request.query_params.get("template", ""), MAX_TEMPLATES)
        try:
            payload = block_payload(request._request, slot[:64], templates)
        except Exception:  # noqa: BLE001 - the page keeps its default content
            logger.exception("personalization: block %s not rendered", slot)
            payload = {"slot": slot, "variant": None, "html": "", "choice": "error"}
        return _with_cookie(request, Response(payload))


class PageView(DegradesOnDatabaseError, APIView):
    """Everything a cached page's placeholders need, in one request."""

    def degraded(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The database fails: every placeholder keeps its default content."""
        specs = _names(request.query_params.get("slots", ""), MAX_SLOTS)
        return Response({"slots": {spec[:200]: {"error": "not rendered"} for spec in dict.fromkeys(specs)}})

    authentication_classes = [SessionWithoutCsrf]
    permission_classes: list = []

    @extend_schema(
        parameters=[
            OpenApiParameter("slots", OpenApiTypes.STR, required=True,
                             description="comma-separated specs, one per placeholder in the page's order (a spec "
                                         "twice: two lists without common items): home, product@product:42, "
                                         "similar:product:42, block:hero, layout:homepage"),
            OpenApiParameter("templates", OpenApiTypes.STR, description="comma-separated templates holding the "
                                                                        "placeholders' tags"),
            OpenApiParameter("page", OpenApiTypes.STR, description="the page's path (for links in fragments)"),
        ],
        responses=inline_serializer("PageOut", {
            "slots": serializers.DictField(help_text="each spec's first placeholder"),
            "placeholders": serializers.ListField(child=serializers.DictField(),
                                                  help_text="one entry per requested spec, in the request's order"),
        }),
        summary="Hydrate a cached page's personalized slots",
    )
    def get(self, request: Request) -> Response:
        specs = [spec[:200] for spec in _names(request.query_params.get("slots", ""), MAX_SLOTS)]
        if not specs:
            return Response({"slots": ["Name at least one slot, e.g. ?slots=home,block:hero."]}, status=400)
        get_visitor(request._request)  # before the copy: the page and the cookie share one visitor id
        django_request = _page_request(request._request, request.query_params.get("page", ""))
        nodes = _nodes(_names(request.query_params.get("templates", ""), MAX_TEMPLATES))
        slots: dict[str, Any] = {}
        in_order: list[dict[str, Any]] = []
        for spec in specs:  # in the page's order: each list skips what the lists before it showed
            try:
                payload = render_spec(django_request, spec, nodes)
            except Exception:  # noqa: BLE001 - one broken slot keeps its default content; the others render
                logger.exception("personalization: slot %s not rendered", spec)
                payload = {"error": "not rendered"}
            slots.setdefault(spec, payload)
            in_order.append(payload)
        return _with_cookie(request, Response({"slots": slots, "placeholders": in_order}))
