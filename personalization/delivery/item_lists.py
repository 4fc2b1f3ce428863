"""Item lists for pages: a slot's recommended or similar items as host objects, with what tracking needs.

The one service behind ``{% recommended_items %}``, ``{% similar_items %}`` and the page-hydration API. It asks
serving for exactly the list a page shows (``n`` items, serving applying the exclusions, the category, the slot's
rules and the candidate pool), so the list ``serving.precompute`` stores for a slot's ``n`` is the list a page shows.

One page, no item twice: the lists of one page (:mod:`personalization.delivery.shown`) skip the items an earlier
list of the page showed (serving excludes them, so a list still has ``n`` items), unless a list asks for
``repeat=True``; every list's items count as shown for the lists after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.utils.html import format_html
from django.utils.safestring import SafeString

from personalization import serving
from personalization.catalog import get_catalog
from personalization.delivery import shown


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


def item_key(target: Any) -> str:
    """Item key of a key string or a host object ("" for nothing)."""
    if target is None or target == "":
        return ""
    if isinstance(target, str):
        return target
    return get_catalog().key_for(target)


def item_keys(value: Any) -> set[str]:
    """Keys of an exclude argument: a string of keys (spaces or commas), or items, lines or host objects."""
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
    return item_key(entry)


def recommended_items(who: Any, slot: str, n: int | None = None, *, item: str = "",
                      exclude: Iterable[str] = (), category: str = "", page: Any = None,
                      repeat: bool = False) -> ItemList:
    """The items ``slot`` shows to ``who`` (a request, user or subject; None: an anonymous visitor).

    ``n``: how many (None: the slot's ``n``, the length ``serving.precompute`` stores); ``item``: "more like this
    item" (never shown itself); ``exclude``: keys never shown; ``category``: only this category. ``page``: what
    holds the page's shown items (default: ``who`` when it is a request); the list skips them unless ``repeat``,
    and its own items join them.
    """
    page = page if page is not None else (who if hasattr(who, "META") else None)
    excluded = set(exclude) | ({item} if item else set())
    if not repeat:
        excluded |= set(shown.shown(page))
    result = serving.recommend(who if who is not None else "v:", n, slot=slot, item=item or None,
                               exclude=excluded or None, category=category or None)
    items = _materialise(result, slot)
    shown.note(page, items.keys)
    return items


def similar_items(who: Any, target: str, n: int | None = None, *, slot: str = "similar", page: Any = None,
                  repeat: bool = False) -> ItemList:
    """Items like ``target`` under ``slot``'s rules: serving's list "more like this item", logged like every list,
    so the impressions and clicks carrying its recommendation id are attributed to it and its model version
    (popular items when there is no live model or the item is unknown). ``page``/``repeat``: as for
    :func:`recommended_items`."""
    return recommended_items(who, slot, n, item=target, page=page, repeat=repeat)


def _materialise(result: Any, slot: str) -> ItemList:
    """Host objects for the recommended keys, in order; keys the catalog no longer has are dropped."""
    items = ItemList()
    items.slot, items.recommendation_id = slot, result.recommendation_id
    items.model_version, items.fallback = result.model_version, result.fallback
    keys = result.keys()
    objects = get_catalog().get_objects(keys) if keys else {}
    for row in result.items:
        obj = objects.get(row.item)
        if obj is not None:
            items.append(Item(obj, row.item, float(row.score), row.reason, len(items) + 1))
    return items
