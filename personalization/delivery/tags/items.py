"""``{% recommended_items %}`` and ``{% similar_items %}``: their nodes and argument parsing.

Block form: ``{% recommended_items slot="home" limit=8 [as items] %}...{% empty %}...{% endrecommended_items %}``
renders its body with the list (``items`` unless named). Assignment form: ``{% recommended_items slot="home" limit=4
as picks %}`` without an end tag puts the list in ``picks`` and renders nothing (on a cached page, where it has no
body to hydrate, the list is empty). The lists come from :mod:`personalization.delivery.item_lists`.

The lists of one page never repeat an item: a tag skips the items that the tags rendered before it showed, unless it
says ``repeat=True`` (its items still count as shown for the tags after it).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.base import TokenType
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from personalization.delivery import item_lists, shown
from personalization.delivery.item_lists import ItemList
from personalization.delivery.tags.base import FALSE, DeliveryNode, as_int, parse_args, request_of, resolve

RECOMMENDED_ARGS = {"slot", "limit", "item", "exclude", "category", "hydrate", "wrap", "repeat"}
SIMILAR_ARGS = {"limit", "slot", "hydrate", "wrap", "repeat"}


class ItemsNode(DeliveryNode):
    """A list of items: the body rendered with it (block form), or the list put in a variable (assignment form)."""

    child_nodelists = ("nodelist", "nodelist_empty")

    def __init__(self, tag_name: str, args: list[Any], kwargs: dict[str, Any], as_var: str | None,
                 nodelist: template.NodeList, nodelist_empty: template.NodeList, *, assigns: bool = False) -> None:
        self.tag_name, self.args, self.kwargs = tag_name, args, kwargs
        self.as_var = as_var or "items"
        self.nodelist, self.nodelist_empty = nodelist, nodelist_empty
        self.assigns = assigns

    def limit(self, context: template.Context) -> int | None:
        """The list's length (None: the slot's ``n``, the length precomputed lists have)."""
        return as_int(resolve(self.kwargs.get("limit"), context), None)

    def repeat(self, context: template.Context) -> bool:
        """Whether the list may show items that earlier lists of the page showed (``repeat=True``)."""
        return resolve(self.kwargs.get("repeat"), context, False) not in FALSE

    def items(self, context: template.Context) -> ItemList:
        raise NotImplementedError

    def render_live(self, context: template.Context) -> str:
        return self.render_items(context, self.items(context))

    def render_placeholder(self, context: template.Context) -> str:
        if self.assigns:  # no body for hydrate.js to replace: nothing personal goes into a cached page
            return self.render_default(context)
        return super().render_placeholder(context)

    def render_items(self, context: template.Context, items: ItemList) -> str:
        """The body with ``items`` (the default content when there are none), in the slot's tracking wrapper."""
        if self.assigns:
            context[self.as_var] = items
            return ""
        if not items:
            return self.render_default(context)
        with context.push({self.as_var: items}):
            body = self.nodelist.render(context)
        if resolve(self.kwargs.get("wrap"), context, True) in FALSE:
            return body
        return format_html('<div {}>{}</div>', items.attrs, mark_safe(body))

    def render_default(self, context: template.Context) -> str:
        empty = ItemList()
        if self.assigns:
            context[self.as_var] = empty
            return ""
        with context.push({self.as_var: empty}):
            return self.nodelist_empty.render(context)


class RecommendedItemsNode(ItemsNode):
    def slot(self, context: template.Context) -> str:
        return str(resolve(self.kwargs.get("slot"), context, "default"))[:64]

    def item_key(self, context: template.Context) -> str:
        try:
            return item_lists.item_key(resolve(self.kwargs.get("item"), context))
        except Exception:  # noqa: BLE001 - an object the catalog cannot name is no item
            return ""

    def spec(self, context: template.Context) -> str:
        item = self.item_key(context)
        return f"{self.slot(context)}@{item}" if item else self.slot(context)

    def arguments(self, context: template.Context) -> dict[str, Any]:
        """The keyword arguments of :func:`item_lists.recommended_items` this tag asks for."""
        return {"slot": self.slot(context), "n": self.limit(context), "item": self.item_key(context),
                "exclude": item_lists.item_keys(resolve(self.kwargs.get("exclude"), context)),
                "category": str(resolve(self.kwargs.get("category"), context, "")), "repeat": self.repeat(context)}

    def items(self, context: template.Context) -> ItemList:
        return item_lists.recommended_items(request_of(context), **self.arguments(context),
                                            page=shown.page_of(context))


class SimilarItemsNode(ItemsNode):
    def target(self, context: template.Context) -> str:
        return item_lists.item_key(resolve(self.args[0], context))

    def spec(self, context: template.Context) -> str:
        return f"similar:{self.target(context)}"

    def arguments(self, context: template.Context) -> dict[str, Any]:
        """The keyword arguments of :func:`item_lists.similar_items` this tag asks for."""
        return {"target": self.target(context), "n": self.limit(context),
                "slot": str(resolve(self.kwargs.get("slot"), context, "similar"))[:64], "repeat": self.repeat(context)}

    def items(self, context: template.Context) -> ItemList:
        return item_lists.similar_items(request_of(context), **self.arguments(context), page=shown.page_of(context))


def has_body(parser: template.base.Parser, tag: str) -> bool:
    """Whether the ``{% <tag> ... as name %}`` being parsed is the block form (closed by ``{% end<tag> %}``).

    The tags of this name still to come must pair with their end tags: the one being parsed is the assignment form
    when they can without it taking an end tag, else the block form. So ``{% t as a %}{{ a }}{% t as b %}...
    {% endt %}`` assigns ``a``, and inside ``{% t %}...{% endt %}`` an assignment form leaves the end tag to it.
    """
    end = f"end{tag}"
    kinds = []
    for token in reversed(parser.tokens):  # Django keeps the tokens still to parse last-first
        if token.token_type != TokenType.BLOCK or not token.contents.strip():
            continue
        name = token.contents.split(maxsplit=1)[0]
        if name == end:
            kinds.append("end")
        elif name == tag:
            bits = token.split_contents()
            kinds.append("either" if len(bits) >= 3 and bits[-2] == "as" else "open")
    enclosing = sum(1 for command, _ in parser.command_stack[:-1] if command == tag)

    def pairs(open_blocks: int) -> bool:
        """Whether the tags to come close exactly ``open_blocks`` blocks (each "either" being a block or not)."""
        states = {open_blocks}
        for kind in kinds:
            if kind == "end":
                states = {s - 1 for s in states if s > 0}
            elif kind == "open":
                states = {s + 1 for s in states}
            else:
                states = states | {s + 1 for s in states}
            if not states:
                return False
        return 0 in states

    if pairs(enclosing):
        return False
    return pairs(enclosing + 1) or "end" in kinds


def items_tag(parser: template.base.Parser, token: template.base.Token, node_class: type[ItemsNode],
              positional: int, allowed: set[str]) -> ItemsNode:
    """The node of an items tag, in its block form or its assignment form."""
    bits = token.split_contents()
    tag = bits[0]
    args, kwargs, as_var = parse_args(parser, bits[1:], tag, positional=positional, allowed=allowed)
    if as_var is not None and not has_body(parser, tag):
        return node_class(tag, args, kwargs, as_var, template.NodeList(), template.NodeList(), assigns=True)
    nodelist = parser.parse(("empty", f"end{tag}"))
    nodelist_empty = template.NodeList()
    if parser.next_token().contents == "empty":
        nodelist_empty = parser.parse((f"end{tag}",))
        parser.delete_first_token()
    return node_class(tag, args, kwargs, as_var, nodelist, nodelist_empty)


def do_recommended_items(parser: template.base.Parser, token: template.base.Token) -> ItemsNode:
    """``{% recommended_items slot="home" [limit=8] [item=product] [exclude=keys] [category="candles"]
    [hydrate=True] [wrap=False] [repeat=True] [as items] %}...{% empty %}...{% endrecommended_items %}``, or
    ``{% recommended_items ... as items %}`` alone."""
    return items_tag(parser, token, RecommendedItemsNode, 0, RECOMMENDED_ARGS)


def do_similar_items(parser: template.base.Parser, token: template.base.Token) -> ItemsNode:
    """``{% similar_items product [limit=4] [slot="similar"] [hydrate=True] [wrap=False] [repeat=True] [as items] %}...
    {% empty %}...{% endsimilar_items %}``, or ``{% similar_items product ... as items %}`` alone (``product``: a host
    object or an item key)."""
    return items_tag(parser, token, SimilarItemsNode, 1, SIMILAR_ARGS)
