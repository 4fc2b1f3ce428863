"""``{% personalized_block %}`` / ``{% variant %}``: the node holding a block's variants, and its markup.

The variant a visitor sees comes from :func:`personalization.delivery.blocks.block_choice`; the default content is
the first variant.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from personalization.delivery import blocks
from personalization.delivery.blocks import VariantOption
from personalization.delivery.tags.base import DeliveryNode, parse_args, request_of, resolve

VARIANT_ARGS = {"category", "segment", "device", "country", "audience", "item"}


def variant_html(slot: str, option: VariantOption, how: str, content: str) -> SafeString:
    """A chosen variant's content in the wrapper hydrate.js and tracker.js read (block, variant, item, choice)."""
    return format_html(
        '<div data-personalization-block="{}" data-personalization-variant="{}"'
        ' data-personalization-block-item="{}" data-personalization-choice="{}">{}</div>',
        slot, option.key, option.item, how, mark_safe(content),
    )


class PersonalizedBlockNode(DeliveryNode):
    tag_name = "personalized_block"

    def __init__(self, args: list[Any], kwargs: dict[str, Any], variants: list[tuple[Any, dict, Any]]) -> None:
        self.args, self.kwargs, self.variants = args, kwargs, variants

    def get_nodes_by_type(self, nodetype: type) -> list[template.Node]:
        nodes = [self] if isinstance(self, nodetype) else []
        for _, _, nodelist in self.variants:
            nodes.extend(nodelist.get_nodes_by_type(nodetype))
        return nodes

    def slot(self, context: template.Context) -> str:
        return str(resolve(self.args[0], context, ""))[:64]

    def spec(self, context: template.Context) -> str:
        return f"block:{self.slot(context)}"

    def options(self, context: template.Context) -> list[VariantOption]:
        """The template's variants with their targeting resolved."""
        options = []
        for key, kwargs, nodelist in self.variants:
            fields = {name: str(resolve(value, context, "")) for name, value in kwargs.items()}
            options.append(VariantOption(key=str(resolve(key, context, "")), nodelist=nodelist, **fields))
        return options

    def control(self, context: template.Context) -> float | None:
        """The ``control=`` share (None: the block's or the settings' share)."""
        control = resolve(self.kwargs.get("control"), context)
        return float(control) if control is not None else None

    def render_variant(self, option: VariantOption, context: template.Context, how: str) -> str:
        """The chosen variant: its template body or its admin HTML, in the block's wrapper."""
        content = option.nodelist.render(context) if option.nodelist is not None else mark_safe(option.html)
        return variant_html(self.slot(context), option, how, content)

    def render_live(self, context: template.Context) -> str:
        choice = blocks.block_choice(request_of(context), self.slot(context), self.options(context),
                                     control_share=self.control(context))
        if choice is None:
            return ""
        return self.render_variant(choice.variant, context, choice.how)

    def render_default(self, context: template.Context) -> str:
        if not self.variants:
            return ""
        return self.variants[0][2].render(context)


def do_personalized_block(parser: template.base.Parser, token: template.base.Token) -> PersonalizedBlockNode:
    """``{% personalized_block "hero" [control=0.1] [hydrate=True] %}{% variant "key" [category=...]
    [segment=...] [device=...] [country=...] [audience="new"|"returning"] [item=key] %}...
    {% endpersonalized_block %}``"""
    bits = token.split_contents()
    args, kwargs, _ = parse_args(parser, bits[1:], bits[0], positional=1, allowed={"control", "hydrate"})
    parser.parse(("variant", "endpersonalized_block"))  # anything before the first variant is ignored
    variants = []
    token = parser.next_token()
    while token.contents.split()[0] == "variant":
        vbits = token.split_contents()
        vargs, vkwargs, _ = parse_args(parser, vbits[1:], "variant", positional=1, allowed=VARIANT_ARGS)
        nodelist = parser.parse(("variant", "endpersonalized_block"))
        variants.append((vargs[0], vkwargs, nodelist))
        token = parser.next_token()
    return PersonalizedBlockNode(args, kwargs, variants)
