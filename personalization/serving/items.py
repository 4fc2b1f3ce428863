"""Catalog lookups: item features and display fields through an in-process item table in front of the cache.

The table is one of the settings' derived values (``settings.derived``), so a settings reload (a new catalog
adapter, tests) drops it; a new catalog generation published in the cache drops it in every process.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from personalization import shared_cache
from personalization.catalog import get_catalog
from personalization.conf import settings
from personalization.freshness import PREFIX, safe_part
from personalization.serving.keys import CATALOG_GEN_KEY

_MISSING = {"missing": True}
LOCAL_ITEMS_MAX = 500_000  # rows of the in-process item table before it is emptied


class _LocalItems:
    """In-process item table: features and display rows per item key, each with its own expiry.

    It sits in front of the shared cache (``CATALOG_CACHE_SECONDS``): a request whose items are all here makes no
    cache or database round trip for them. Rows expire after ``CATALOG_CACHE_SECONDS`` (half of it when the row came
    from the shared cache, so no row is older than the setting allows by more than half of it); the whole table is
    dropped when the catalog generation published in the cache changes (also after the cache is cleared) and when
    the settings are reloaded (it is a derived value of the settings).
    """

    def __init__(self) -> None:
        self.gen: str | None = None
        self.features: dict[str, tuple[float, dict[str, Any]]] = {}
        self.display: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def clear(self) -> None:
        self.features = {}
        self.display = {}


def _local() -> _LocalItems:
    return settings.derived("serving.items", _LocalItems)


def sync_catalog(gen: Any) -> None:
    """Drop the in-process item table when the catalog generation in the cache is not the one it was filled under."""
    if gen is None:
        gen = uuid.uuid4().hex
        try:
            cache = shared_cache.cache()
            added = cache.add(CATALOG_GEN_KEY, gen, timeout=None)
            shared_cache.forget([CATALOG_GEN_KEY])  # this process's copy held "absent"
            if not added:
                gen = cache.get(CATALOG_GEN_KEY) or gen
        except Exception:  # noqa: BLE001
            return
    local = _local()
    if gen != local.gen:
        local.clear()
        local.gen = gen


def _cached_rows(keys: list[str], table: dict[str, tuple[float, Any]], prefix: str,
                 load: Callable[[list[str]], dict[str, Any]]) -> dict[str, Any]:
    """Rows of ``keys`` from the in-process table, else the shared cache, else ``load(missing keys)``."""
    ttl = settings.CATALOG_CACHE_SECONDS
    now = time.monotonic()
    found: dict[str, Any] = {}
    todo: list[str] = []
    for k in keys:
        entry = table.get(k)
        if entry is not None and entry[0] > now:
            found[k] = entry[1]
        else:
            todo.append(k)
    if not todo:
        return found
    cache_keys = {f"{PREFIX}{prefix}:{safe_part(k)}": k for k in todo}
    try:
        cached = shared_cache.get_many(cache_keys)
    except Exception:  # noqa: BLE001
        cached = {}
    shared = {cache_keys[ck]: v for ck, v in cached.items()}
    rest = [k for k in todo if k not in shared]
    fresh = load(rest) if rest else {}
    if fresh and ttl > 0:
        try:
            shared_cache.set_many({f"{PREFIX}{prefix}:{safe_part(k)}": v for k, v in fresh.items()}, timeout=ttl)
        except Exception:  # noqa: BLE001
            pass
    if ttl > 0:
        if len(table) + len(todo) > LOCAL_ITEMS_MAX:
            table.clear()
        for k, v in shared.items():
            table[k] = (now + ttl / 2, v)
        for k, v in fresh.items():
            table[k] = (now + ttl, v)
    found.update(shared)
    found.update(fresh)
    return found


def _load_features(todo: list[str]) -> dict[str, dict[str, Any]]:
    catalog = get_catalog()
    rows = {row["item"]: row for row in catalog.features(todo)}
    return {k: rows.get(k) or (_MISSING if catalog.manages(k) else {"item": k, "available": True}) for k in todo}


def _load_display(todo: list[str]) -> dict[str, dict[str, Any]]:
    rows = get_catalog().display(todo)
    return {k: rows.get(k, _MISSING) for k in todo}


def item_features(keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Catalog features (category, price, brand, available) of existing items, cached CATALOG_CACHE_SECONDS."""
    keys = list(dict.fromkeys(k for k in keys if isinstance(k, str)))
    if not keys:
        return {}
    found = _cached_rows(keys, _local().features, "item", _load_features)
    return {k: v for k, v in found.items() if not v.get("missing")}


def item_display(keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Display fields (title, url, image, price, category, brand) of existing items, cached like the features."""
    keys = list(dict.fromkeys(k for k in keys if isinstance(k, str)))
    if not keys:
        return {}
    found = _cached_rows(keys, _local().display, "display", _load_display)
    return {k: dict(found[k]) for k in keys if k in found and not found[k].get("missing")}
