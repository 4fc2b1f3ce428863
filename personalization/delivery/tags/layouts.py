"""``{% adaptive_layout %}`` / ``{% section %}``: the node holding a layout's sections, and its markup.

The order a visitor sees comes from :func:`personalization.delivery.layouts.layout_sections`; the default content
is the sections in their written order.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from personalization.delivery import layouts
from personalization.delivery.layouts import Section, pin_of
from personalization.delivery.tags.base import DeliveryNode, parse_args, request_of, resolve


class AdaptiveLayoutNode(DeliveryNode):
    tag_name = "adaptive_layout"

    def __init__(self, args: list[Any], kwargs: dict[str, Any], sections: list[tuple[Any, dict, Any]]) -> None:
        self.args, self.kwargs, self.sections = args, kwargs, sections

    def get_nodes_by_type(self, nodetype: type) -> list[template.Node]:
        nodes = [self] if isinstance(self, nodetype) else []
        for _, _, nodelist in self.sections:
            nodes.extend(nodelist.get_nodes_by_type(nodetype))
        return nodes

    def name(self, context: template.Context) -> str:
        return str(resolve(self.args[0], context, ""))[:64]

    def spec(self, context: template.Context) -> str:
        return f"layout:{self.name(context)}"

    def written(self, context: template.Context) -> list[Section]:
        """The template's sections in their written order, with their category and pin resolved."""
        return [
            Section(key=str(resolve(key, context, "")), category=str(resolve(kw.get("category"), context, "")),
                    pinned=pin_of(resolve(kw.get("pinned"), context), i + 1), nodelist=nodelist)
            for i, (key, kw, nodelist) in enumerate(self.sections)
        ]

    def render_sections(self, context: template.Context, sections: list[Section]) -> str:
        """The sections' bodies in the given order, in the layout's wrapper."""
        parts = [format_html('<div data-personalization-section="{}">{}</div>', s.key,
                             mark_safe(s.nodelist.render(context))) for s in sections]
        return format_html('<div data-personalization-layout="{}">{}</div>', self.name(context),
                           mark_safe("".join(parts)))

    def render_live(self, context: template.Context) -> str:
        name = self.name(context)
        return self.render_sections(context, layouts.layout_sections(request_of(context), name,
                                                                     self.written(context)))

    def render_default(self, context: template.Context) -> str:
        return "".join(nodelist.render(context) for _, _, nodelist in self.sections)


def do_adaptive_layout(parser: template.base.Parser, token: template.base.Token) -> AdaptiveLayoutNode:
    """``{% adaptive_layout "homepage" [hydrate=True] %}{% section "deals" [category="mugs"] [pinned=True|n] %}...
    {% endadaptive_layout %}``"""
    bits = token.split_contents()
    args, kwargs, _ = parse_args(parser, bits[1:], bits[0], positional=1, allowed={"hydrate"})
    parser.parse(("section", "endadaptive_layout"))
    sections = []
    token = parser.next_token()
    while token.contents.split()[0] == "section":
        sbits = token.split_contents()
        sargs, skwargs, _ = parse_args(parser, sbits[1:], "section", positional=1, allowed={"category", "pinned"})
        nodelist = parser.parse(("section", "endadaptive_layout"))
        sections.append((sargs[0], skwargs, nodelist))
        token = parser.next_token()
    return AdaptiveLayoutNode(args, kwargs, sections)
