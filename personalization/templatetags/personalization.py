"""Template tags: ``{% load personalization %}``.

- ``{% tracking_script %}`` loads tracker.js (and hydrate.js) configured for this site and page.
- ``{% recommended_items slot="home" limit=8 as items %}...{% empty %}...{% endrecommended_items %}``
- ``{% similar_items product limit=4 as items %}...{% empty %}...{% endsimilar_items %}``
- ``{% personalized_block "hero" %}{% variant "sale" %}...{% variant "x" category="candles" %}...
  {% endpersonalized_block %}``
- ``{% adaptive_layout "homepage" %}{% section "deals" category="mugs" %}...{% section "new" pinned=1 %}...
  {% endadaptive_layout %}``
- ``{% slot_attrs items %}`` / ``{% item_attrs item %}``: the tracking attributes for hand-written markup.

Every tag renders server-side, or with ``hydrate=True`` (or ``PERSONALIZATION["HYDRATE"]``) a placeholder holding
the default content that hydrate.js replaces with the API's rendering of the same node (one request per page).
Any error renders the template's own default content: the ``{% empty %}`` part, the first variant, or the
sections in their written order. Nothing here raises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django import template
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from personalization.conf import settings

logger = logging.getLogger("personalization.templatetags")
register = template.Library()

LIVE = "_personalization_live"  # set by the API: render for real, never a placeholder
INSIDE = "_personalization_placeholder"  # inside a placeholder's default content: no nested placeholders


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


# --- values handed to templates -------------------------------------------------------------------------------


@dataclass
class Item:
    """One recommended item as a template sees it."""

    object: Any
    key: str
    score: float
    reason: str
    position: int  # 1-based
    display: dict[str, Any] | None = None

    @property
    def attrs(self) -> SafeString:
        return format_html('data-personalization-item="{}" data-personalization-position="{}"', self.key,
                           self.position)

    def __str__(self) -> str:
        return self.key


class ItemList(list):
    """The items of one slot, with what the tracker needs to attribute impressions and clicks."""

    slot: str = ""
    recommendation_id: str = ""
    model_version: int | None = None
    fallback: str = ""

    @property
    def attrs(self) -> SafeString:
        return format_html('data-personalization-slot="{}" data-recommendation-id="{}"', self.slot,
                           self.recommendation_id)

    @property
    def keys(self) -> list[str]:
        return [item.key for item in self]


@register.simple_tag
def slot_attrs(items: Any) -> str:
    """``data-personalization-slot``/``data-recommendation-id`` of a ``recommended_items``/``similar_items`` list."""
    return getattr(items, "attrs", "")


@register.simple_tag
def item_attrs(item: Any) -> str:
    """``data-personalization-item``/``data-personalization-position`` of one item."""
    return getattr(item, "attrs", "")


# --- shared machinery -----------------------------------------------------------------------------------------


def _parse_args(parser: template.base.Parser, bits: list[str], tag: str, *, positional: int,
                allowed: set[str]) -> tuple[list[Any], dict[str, Any], str | None]:
    """Positional args, keyword args (``key=value``) and the ``as name`` of a tag."""
    as_var = None
    if len(bits) >= 2 and bits[-2] == "as":
        as_var = bits[-1]
        bits = bits[:-2]
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for bit in bits:
        kw = template.base.kwarg_re.match(bit)
        if kw and kw.group(1):
            name, value = kw.groups()
            if name not in allowed:
                raise template.TemplateSyntaxError(
                    f"{{% {tag} %}} got an unknown argument {name!r}; accepted: {', '.join(sorted(allowed))}."
                )
            kwargs[name] = parser.compile_filter(value)
        elif kwargs:
            raise template.TemplateSyntaxError(f"{{% {tag} %}}: positional argument {bit!r} after keywords.")
        else:
            args.append(parser.compile_filter(bit))
    if len(args) != positional:
        raise template.TemplateSyntaxError(f"{{% {tag} %}} takes {positional} positional argument(s), got {len(args)}.")
    return args, kwargs, as_var


def _resolve(value: Any, context: template.Context, default: Any = None) -> Any:
    if value is None:
        return default
    try:
        resolved = value.resolve(context)
    except Exception:  # noqa: BLE001
        return default
    return default if resolved is None or resolved == "" else resolved


def _literal(value: Any) -> Any:
    """The value of a constant argument (None for a variable that needs a context)."""
    if value is None or not isinstance(getattr(value, "var", None), str):
        return None
    return value.var


def _int(value: Any, default: int, low: int = 1, high: int = 100) -> int:
    try:
        return min(max(int(value), low), high)
    except (TypeError, ValueError):
        return default


def _key_of(target: Any) -> str:
    """Item key of a key string or a host object."""
    if target is None or target == "":
        return ""
    if isinstance(target, str):
        return target
    from personalization.catalog import get_catalog

    return get_catalog().key_for(target)


def _keys_of(value: Any) -> set[str]:
    if not value:
        return set()
    if isinstance(value, str):
        return {k for k in value.replace(",", " ").split() if k}
    keys = set()
    for entry in value:
        try:
            keys.add(_entry_key(entry))
        except Exception:  # noqa: BLE001 - what cannot be named cannot be excluded
            continue
    return keys - {""}


def _entry_key(entry: Any) -> str:
    """Key of an exclude entry: a key, an Item, something with ``item_key``, a line with a ``product``, an object."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Item):
        return entry.key
    own = getattr(entry, "item_key", None)
    if isinstance(own, str) and own:
        return own
    product = getattr(entry, "product", None)  # cart and order lines
    if product is not None:
        return _entry_key(product)
    return _key_of(entry)


class DeliveryNode(template.Node):
    """Server rendering, hydration placeholders and error fallback shared by the personalization block tags."""

    kind = ""
    child_nodelists: tuple[str, ...] = ()

    def hydrating(self, context: template.Context) -> bool:
        if context.get(LIVE):
            return False
        wanted = _resolve(self.kwargs.get("hydrate"), context)
        return bool(settings.HYDRATE) if wanted is None else wanted not in (False, "false", "False", "0", 0)

    def render(self, context: template.Context) -> str:
        try:
            if context.get(INSIDE):
                return self.render_default(context)
            if self.hydrating(context):
                return self.render_placeholder(context)
            return self.render_live(context)
        except Exception:  # noqa: BLE001 - a template tag never breaks a page
            logger.exception("personalization: {%% %s %%} failed; rendering its default content", self.tag_name)
            try:
                return self.render_default(context)
            except Exception:  # noqa: BLE001
                logger.exception("personalization: the default content of {%% %s %%} failed", self.tag_name)
                return ""

    def render_placeholder(self, context: template.Context) -> str:
        spec = self.spec(context)
        with context.push({INSIDE: True}):
            default = self.render_default(context)
        origin = getattr(getattr(self, "origin", None), "template_name", None) or ""
        return format_html('<div data-personalization-hydrate="{}" data-personalization-template="{}">{}</div>',
                           spec, origin, mark_safe(default))

    def spec(self, context: template.Context) -> str:
        raise NotImplementedError

    def render_live(self, context: template.Context, target: str | None = None) -> str:
        raise NotImplementedError

    def render_default(self, context: template.Context) -> str:
        raise NotImplementedError


def _request(context: template.Context) -> Any:
    request = context.get("request")
    return request if hasattr(request, "META") else None


# --- recommended_items / similar_items ------------------------------------------------------------------------


class ItemsNode(DeliveryNode):
    allowed: set[str] = set()

    def __init__(self, tag_name: str, args: list[Any], kwargs: dict[str, Any], as_var: str | None,
                 nodelist: template.NodeList, nodelist_empty: template.NodeList) -> None:
        self.tag_name, self.args, self.kwargs = tag_name, args, kwargs
        self.as_var = as_var or "items"
        self.nodelist, self.nodelist_empty = nodelist, nodelist_empty

    child_nodelists = ("nodelist", "nodelist_empty")

    def limit(self, context: template.Context) -> int:
        return _int(_resolve(self.kwargs.get("limit"), context), 8)

    def items(self, context: template.Context, target: str | None) -> ItemList:
        raise NotImplementedError

    def render_live(self, context: template.Context, target: str | None = None) -> str:
        return self.render_items(context, self.items(context, target))

    def render_items(self, context: template.Context, items: ItemList) -> str:
        if not items:
            return self.render_default(context)
        with context.push({self.as_var: items}):
            body = self.nodelist.render(context)
        if _resolve(self.kwargs.get("wrap"), context, True) in (False, "false", "False", "0", 0):
            return body
        return format_html('<div {}>{}</div>', items.attrs, mark_safe(body))

    def render_default(self, context: template.Context) -> str:
        empty = ItemList()
        with context.push({self.as_var: empty}):
            return self.nodelist_empty.render(context)


def _materialise(rows: list[Any], slot: str, rec_id: str, model_version: int | None = None,
                 fallback: str = "", limit: int = 100) -> ItemList:
    """Host objects for the recommended keys, in order; keys the catalog does not know are dropped."""
    from personalization.catalog import get_catalog

    items = ItemList()
    items.slot, items.recommendation_id, items.model_version, items.fallback = slot, rec_id, model_version, fallback
    keys = [row.item for row in rows]
    objects = get_catalog().get_objects(keys) if keys else {}
    for row in rows:
        obj = objects.get(row.item)
        if obj is not None and len(items) < limit:
            items.append(Item(obj, row.item, float(row.score), row.reason, len(items) + 1))
    return items


class RecommendedItemsNode(ItemsNode):
    kind = "recommended"

    def slot(self, context: template.Context) -> str:
        return str(_resolve(self.kwargs.get("slot"), context, "default"))[:64]

    def spec(self, context: template.Context) -> str:
        item = self.item_key(context)
        return f"{self.slot(context)}@{item}" if item else self.slot(context)

    def item_key(self, context: template.Context) -> str:
        try:
            return _key_of(_resolve(self.kwargs.get("item"), context))
        except Exception:  # noqa: BLE001
            return ""

    def items(self, context: template.Context, target: str | None) -> ItemList:
        from personalization.delivery.blocks import recommend_for

        request = _request(context)
        slot = self.slot(context)
        item = target if target is not None else self.item_key(context)
        exclude = _keys_of(_resolve(self.kwargs.get("exclude"), context))
        if item:
            exclude.add(item)
        limit = self.limit(context)
        category = str(_resolve(self.kwargs.get("category"), context, ""))
        # more candidates than shown: keys the catalog no longer has are dropped, the category filters some out
        result = recommend_for(request if request is not None else "v:", min(limit * (5 if category else 3), 200),
                               slot=slot, item=item or None, exclude=exclude or None, category=category or None)
        rows = [r for r in result.items if r.item not in exclude]
        if category:
            from personalization.delivery.blocks import _categories

            of = _categories([r.item for r in rows])
            rows = [r for r in rows if of.get(r.item) == category]
        return _materialise(rows, slot, result.recommendation_id, result.model_version, result.fallback, limit)


class SimilarItemsNode(ItemsNode):
    kind = "similar"

    def target(self, context: template.Context) -> str:
        return _key_of(_resolve(self.args[0], context))

    def spec(self, context: template.Context) -> str:
        return f"similar:{self.target(context)}"

    def items(self, context: template.Context, target: str | None) -> ItemList:
        from personalization.delivery.blocks import recommend_for

        key = target if target is not None else self.target(context)
        limit = self.limit(context)
        slot = str(_resolve(self.kwargs.get("slot"), context, "similar"))[:64]
        request = _request(context)
        # serving.recommend(item=...): the live model's similar items under the slot's rules (popular items when there
        # is no live model or the item is unknown), logged like every list, so the impressions and clicks that carry
        # its recommendation_id are attributed to it and to its model version
        result = recommend_for(request if request is not None else "v:", limit * 3 + 1, slot=slot, item=key or None,
                               exclude={key} if key else None)
        rows = [r for r in result.items if r.item != key]
        return _materialise(rows, slot, result.recommendation_id, result.model_version, result.fallback, limit)


def _items_tag(parser: template.base.Parser, token: template.base.Token, node_class: type[ItemsNode],
               positional: int, allowed: set[str]) -> ItemsNode:
    bits = token.split_contents()
    tag = bits[0]
    args, kwargs, as_var = _parse_args(parser, bits[1:], tag, positional=positional, allowed=allowed)
    nodelist = parser.parse(("empty", f"end{tag}"))
    nodelist_empty = template.NodeList()
    if parser.next_token().contents == "empty":
        nodelist_empty = parser.parse((f"end{tag}",))
        parser.delete_first_token()
    return node_class(tag, args, kwargs, as_var, nodelist, nodelist_empty)


@register.tag("recommended_items")
def do_recommended_items(parser: template.base.Parser, token: template.base.Token) -> ItemsNode:
    """``{% recommended_items slot="home" limit=8 [item=product] [exclude=keys] [category="candles"] [hydrate=True]
    [wrap=False]
    [as items] %}...{% empty %}...{% endrecommended_items %}``"""
    return _items_tag(parser, token, RecommendedItemsNode, 0,
                      {"slot", "limit", "item", "exclude", "category", "hydrate", "wrap"})


@register.tag("similar_items")
def do_similar_items(parser: template.base.Parser, token: template.base.Token) -> ItemsNode:
    """``{% similar_items product limit=4 [slot="similar"] [hydrate=True] [wrap=False] [as items] %}...
    {% empty %}...{% endsimilar_items %}`` (``product``: a host object or an item key)."""
    return _items_tag(parser, token, SimilarItemsNode, 1, {"limit", "slot", "hydrate", "wrap"})


# --- personalized_block / variant -----------------------------------------------------------------------------

VARIANT_ARGS = {"category", "segment", "device", "country", "audience", "item"}


class PersonalizedBlockNode(DeliveryNode):
    kind = "block"
    tag_name = "personalized_block"

    def __init__(self, args: list[Any], kwargs: dict[str, Any], variants: list[tuple[Any, dict, Any]]) -> None:
        self.args, self.kwargs, self.variants = args, kwargs, variants

    def get_nodes_by_type(self, nodetype: type) -> list[template.Node]:
        nodes = [self] if isinstance(self, nodetype) else []
        for _, _, nodelist in self.variants:
            nodes.extend(nodelist.get_nodes_by_type(nodetype))
        return nodes

    def slot(self, context: template.Context | None = None) -> str:
        return str(_resolve(self.args[0], context if context is not None else template.Context(), ""))[:64]

    def spec(self, context: template.Context) -> str:
        return f"block:{self.slot(context)}"

    def options(self, context: template.Context) -> list[Any]:
        from personalization.delivery.blocks import VariantOption

        options = []
        for key, kwargs, nodelist in self.variants:
            fields = {name: str(_resolve(value, context, "")) for name, value in kwargs.items()}
            options.append(VariantOption(key=str(_resolve(key, context, "")), nodelist=nodelist, **fields))
        return options

    def choose(self, request: Any, context: template.Context | None = None) -> tuple[Any, str]:
        """(chosen VariantOption or None, how) for the request's visitor."""
        from personalization.delivery.blocks import audience_for, choose_variant

        context = context if context is not None else template.Context()
        control = _resolve(self.kwargs.get("control"), context)
        choice = choose_variant(self.slot(context), self.options(context), audience_for(request),
                                control_share=float(control) if control is not None else None)
        return (choice.variant, choice.how) if choice else (None, "")

    def render_variant(self, option: Any, context: template.Context, how: str) -> str:
        content = option.nodelist.render(context) if option.nodelist is not None else mark_safe(option.html)
        return format_html(
            '<div data-personalization-block="{}" data-personalization-variant="{}"'
            ' data-personalization-block-item="{}" data-personalization-choice="{}">{}</div>',
            self.slot(context), option.key, option.item, how, mark_safe(content),
        )

    def render_live(self, context: template.Context, target: str | None = None) -> str:
        option, how = self.choose(_request(context), context)
        if option is None:
            return ""
        return self.render_variant(option, context, how)

    def render_default(self, context: template.Context) -> str:
        if not self.variants:
            return ""
        return self.variants[0][2].render(context)


@register.tag("personalized_block")
def do_personalized_block(parser: template.base.Parser, token: template.base.Token) -> PersonalizedBlockNode:
    """``{% personalized_block "hero" [control=0.1] [hydrate=True] %}{% variant "key" [category=...]
    [segment=...] [device=...] [country=...] [audience="new"|"returning"] [item=key] %}...
    {% endpersonalized_block %}``"""
    bits = token.split_contents()
    args, kwargs, _ = _parse_args(parser, bits[1:], bits[0], positional=1, allowed={"control", "hydrate"})
    parser.parse(("variant", "endpersonalized_block"))  # anything before the first variant is ignored
    variants = []
    token = parser.next_token()
    while token.contents.split()[0] == "variant":
        vbits = token.split_contents()
        vargs, vkwargs, _ = _parse_args(parser, vbits[1:], "variant", positional=1, allowed=VARIANT_ARGS)
        nodelist = parser.parse(("variant", "endpersonalized_block"))
        variants.append((vargs[0], vkwargs, nodelist))
        token = parser.next_token()
    return PersonalizedBlockNode(args, kwargs, variants)


# --- adaptive_layout / section --------------------------------------------------------------------------------


class AdaptiveLayoutNode(DeliveryNode):
    kind = "layout"
    tag_name = "adaptive_layout"

    def __init__(self, args: list[Any], kwargs: dict[str, Any], sections: list[tuple[Any, dict, Any]]) -> None:
        self.args, self.kwargs, self.sections = args, kwargs, sections

    def get_nodes_by_type(self, nodetype: type) -> list[template.Node]:
        nodes = [self] if isinstance(self, nodetype) else []
        for _, _, nodelist in self.sections:
            nodes.extend(nodelist.get_nodes_by_type(nodetype))
        return nodes

    def name(self, context: template.Context | None = None) -> str:
        return str(_resolve(self.args[0], context if context is not None else template.Context(), ""))[:64]

    def spec(self, context: template.Context) -> str:
        return f"layout:{self.name(context)}"

    def written(self, context: template.Context) -> list[Any]:
        from personalization.delivery.layouts import Section, pin_of

        return [
            Section(key=str(_resolve(key, context, "")), category=str(_resolve(kw.get("category"), context, "")),
                    pinned=pin_of(_resolve(kw.get("pinned"), context), i + 1), nodelist=nodelist)
            for i, (key, kw, nodelist) in enumerate(self.sections)
        ]

    def ordered(self, request: Any, context: template.Context) -> list[Any]:
        from personalization.delivery.blocks import audience_for
        from personalization.delivery.layouts import order_sections

        return order_sections(self.name(context), self.written(context), audience_for(request).affinity)

    def _render(self, context: template.Context, sections: list[Any]) -> str:
        parts = [format_html('<div data-personalization-section="{}">{}</div>', s.key,
                             mark_safe(s.nodelist.render(context))) for s in sections]
        return format_html('<div data-personalization-layout="{}">{}</div>', self.name(context),
                           mark_safe("".join(parts)))

    def render_live(self, context: template.Context, target: str | None = None) -> str:
        return self._render(context, self.ordered(_request(context), context))

    def render_default(self, context: template.Context) -> str:
        return "".join(nodelist.render(context) for _, _, nodelist in self.sections)


@register.tag("adaptive_layout")
def do_adaptive_layout(parser: template.base.Parser, token: template.base.Token) -> AdaptiveLayoutNode:
    """``{% adaptive_layout "homepage" [hydrate=True] %}{% section "deals" [category="mugs"] [pinned=True|n] %}...
    {% endadaptive_layout %}``"""
    bits = token.split_contents()
    args, kwargs, _ = _parse_args(parser, bits[1:], bits[0], positional=1, allowed={"hydrate"})
    parser.parse(("section", "endadaptive_layout"))
    sections = []
    token = parser.next_token()
    while token.contents.split()[0] == "section":
        sbits = token.split_contents()
        sargs, skwargs, _ = _parse_args(parser, sbits[1:], "section", positional=1, allowed={"category", "pinned"})
        nodelist = parser.parse(("section", "endadaptive_layout"))
        sections.append((sargs[0], skwargs, nodelist))
        token = parser.next_token()
    return AdaptiveLayoutNode(args, kwargs, sections)
