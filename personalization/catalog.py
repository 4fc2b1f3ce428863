"""Catalog adapters: map item keys ``"<type>:<id>"`` to the host's models and back.

The adapter is the only place that knows the host's catalog. Later stages ask it for item features
(training), display fields and availability (serving), and which item a page is about (tracking).
Choose one with ``PERSONALIZATION["CATALOG_ADAPTER"]``; the default is driven by ``PERSONALIZATION["CATALOG"]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.http import HttpRequest

from personalization.conf import settings

FEATURE_FIELDS = ("category", "price", "brand", "text", "available")
DISPLAY_FIELDS = ("title", "url", "image", "price", "category", "brand")
OBJECT_FIELDS = ("url", "image")  # read off the object (attribute, property or method), not with values()


class CatalogAdapter(ABC):
    """What the app needs to know about the host's items."""

    @abstractmethod
    def key_for(self, obj: Any) -> str:
        """The item key of a host object."""

    @abstractmethod
    def get_objects(self, keys: Iterable[str]) -> dict[str, Any]:
        """Host objects for the keys that exist (missing keys are left out)."""

    @abstractmethod
    def item_for_request(self, request: HttpRequest, view_func: Callable, view_kwargs: dict) -> str | None:
        """The item a page is about, without touching the database; None for other pages."""

    @abstractmethod
    def features(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """One dict per item: item, category, price, brand, text, available (for training and cold start)."""

    def manages(self, key: str) -> bool:
        """Whether the catalog holds the items of this key's type: serving drops a managed item it does not find
        (deleted, unpublished), and serves an item of an unmanaged type as it is (a headless site without CATALOG)."""
        return True

    @abstractmethod
    def display(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Display fields (title, url, image, price, category, brand) per existing key."""

    def available(self, keys: Iterable[str]) -> set[str]:
        """Keys of items that may be recommended now."""
        return {row["item"] for row in self.features(keys) if row.get("available", True)}


@dataclass(frozen=True)
class ItemType:
    """One entry of ``PERSONALIZATION["CATALOG"]``."""

    name: str
    model: type[models.Model]
    id_field: str
    url_names: tuple[str, ...]
    url_kwarg: str
    fields: dict[str, Any]


def _type_from_settings(name: str, spec: dict[str, Any]) -> ItemType:
    if not isinstance(spec, dict) or "model" not in spec:
        raise ImproperlyConfigured(
            f'PERSONALIZATION["CATALOG"][{name!r}] must be a dict with at least "model": "app_label.ModelName".'
        )
    try:
        model = apps.get_model(spec["model"])
    except (LookupError, ValueError) as exc:
        raise ImproperlyConfigured(f'PERSONALIZATION["CATALOG"][{name!r}]["model"]: {exc}') from exc
    unknown = set(spec) - {"model", "id_field", "url_names", "url_kwarg", "fields"}
    if unknown:
        raise ImproperlyConfigured(f'PERSONALIZATION["CATALOG"][{name!r}] has unknown keys: {sorted(unknown)}.')
    id_field = spec.get("id_field", "pk")
    return ItemType(
        name=name,
        model=model,
        id_field=id_field,
        url_names=tuple(spec.get("url_names", ())),
        url_kwarg=spec.get("url_kwarg", id_field),
        fields=dict(spec.get("fields", {})),
    )


class ModelCatalogAdapter(CatalogAdapter):
    """Adapter configured by settings: one entry per item type.

    ``"fields"`` maps feature/display names to ORM paths (``"category__slug"``), a list of paths for ``text``
    (joined), or, for ``url``/``image``, a model attribute or method name (``"get_absolute_url"``).
    """

    @cached_property
    def types(self) -> dict[str, ItemType]:
        return {name: _type_from_settings(name, spec) for name, spec in settings.CATALOG.items()}

    def manages(self, key: str) -> bool:
        return key.partition(":")[0] in self.types

    def _type_for_model(self, model: type[models.Model]) -> ItemType:
        for item_type in self.types.values():
            if issubclass(model, item_type.model):
                return item_type
        raise ValueError(f"{model.__name__} is not in PERSONALIZATION['CATALOG'].")

    def key_for(self, obj: Any) -> str:
        item_type = self._type_for_model(type(obj))
        value = obj.pk if item_type.id_field == "pk" else getattr(obj, item_type.id_field)
        return f"{item_type.name}:{value}"

    def _split(self, keys: Iterable[str]) -> dict[str, dict[str, str]]:
        by_type: dict[str, dict[str, str]] = {}
        for key in keys:
            if not isinstance(key, str) or ":" not in key:
                continue
            type_name, ident = key.split(":", 1)
            if type_name in self.types:
                by_type.setdefault(type_name, {})[ident] = key
        return by_type

    def _lookup(self, item_type: ItemType, idents: Iterable[str]) -> dict[str, Any]:
        field = item_type.id_field
        if field == "pk":
            field = item_type.model._meta.pk.name
        model_field = item_type.model._meta.get_field(field)
        clean = []
        for ident in idents:
            try:
                clean.append(model_field.to_python(ident))
            except Exception:  # noqa: BLE001 - a key that cannot be this model's id matches nothing
                continue
        return {"field": field, "values": clean}

    def get_objects(self, keys: Iterable[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for type_name, idents in self._split(keys).items():
            item_type = self.types[type_name]
            lookup = self._lookup(item_type, idents)
            qs = item_type.model._default_manager.filter(**{f"{lookup['field']}__in": lookup["values"]})
            # templates show the catalog's fields (category, brand...): their related rows come with the objects
            related = _related_paths(item_type.model, _flat_paths(item_type.fields.values()))
            for obj in qs.select_related(*related) if related else qs:
                found[self.key_for(obj)] = obj
        return found

    def item_for_request(self, request: HttpRequest, view_func: Callable, view_kwargs: dict) -> str | None:
        explicit = getattr(request, "personalization_item", None)
        if isinstance(explicit, str):
            return explicit
        hook = getattr(view_func, "personalization_item", None)
        if callable(hook):
            return hook(request, **view_kwargs)
        match = getattr(request, "resolver_match", None)
        if match is None:
            return None
        for item_type in self.types.values():
            if match.view_name in item_type.url_names and item_type.url_kwarg in view_kwargs:
                return f"{item_type.name}:{view_kwargs[item_type.url_kwarg]}"
        return None

    def _rows(self, keys: Iterable[str] | None, wanted: tuple[str, ...]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        if keys is None:
            selection = {name: None for name in self.types}
        else:
            selection = self._split(keys)
        for type_name, idents in selection.items():
            item_type = self.types[type_name]
            qs = item_type.model._default_manager.all()
            id_path = item_type.model._meta.pk.name if item_type.id_field == "pk" else item_type.id_field
            if idents is not None:
                lookup = self._lookup(item_type, idents)
                qs = qs.filter(**{f"{lookup['field']}__in": lookup["values"]})
            paths: dict[str, Any] = {}
            for name in wanted:
                spec = item_type.fields.get(name)
                if spec is None or name in OBJECT_FIELDS:
                    continue
                paths[name] = spec
            flat = [id_path, *_flat_paths(paths.values())]
            needs_objects = any(n in wanted and n in item_type.fields for n in OBJECT_FIELDS)
            if needs_objects:
                related = _related_paths(item_type.model, flat)
                objects = list(qs.select_related(*related) if related else qs)
                values = [{p: _resolve(obj, p) for p in flat} for obj in objects]
            else:
                objects = []
                values = list(qs.values(*dict.fromkeys(flat)))
            for index, value in enumerate(values):
                row: dict[str, Any] = {"item": f"{type_name}:{value[id_path]}"}
                for name, spec in paths.items():
                    if isinstance(spec, (list, tuple)):
                        row[name] = " ".join(str(value[p]) for p in spec if value[p] not in (None, ""))
                    else:
                        row[name] = value[spec]
                if "price" in row and row["price"] is not None:
                    row["price"] = float(row["price"])
                if needs_objects:
                    for name in OBJECT_FIELDS:
                        if name in wanted and name in item_type.fields:
                            row[name] = _resolve(objects[index], item_type.fields[name])
                rows.append(row)
        return rows

    def features(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        rows = self._rows(keys, FEATURE_FIELDS)
        for row in rows:
            row.setdefault("available", True)
        return rows

    def display(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {row.pop("item"): row for row in self._rows(list(keys), DISPLAY_FIELDS)}


def _flat_paths(specs: Iterable[Any]) -> list[str]:
    """The ORM paths of field specs (a path, or a list of paths joined for text)."""
    return [path for spec in specs for path in (spec if isinstance(spec, (list, tuple)) else [spec])]


def _related_paths(model: type[models.Model], paths: Iterable[str]) -> list[str]:
    """The forward foreign-key prefixes of ORM paths (``category__slug`` -> ``category``), for ``select_related``:
    one query for the objects and their related rows instead of one more query per object and path."""
    out: dict[str, None] = {}
    for path in paths:
        current, prefix = model, []
        for part in path.split("__")[:-1]:
            try:
                field = current._meta.get_field(part)
            except Exception:  # noqa: BLE001 - an attribute or method, not a field
                break
            if not (field.is_relation and (field.many_to_one or field.one_to_one) and field.concrete):
                break
            prefix.append(part)
            current = field.related_model
        if prefix:
            out["__".join(prefix)] = None
    return list(out)


def _resolve(obj: Any, path: str) -> Any:
    """Follow ``a__b`` through attributes, calling methods without arguments."""
    value = obj
    for part in path.split("__"):
        if value is None:
            return None
        value = getattr(value, part, None)
        if callable(value) and not isinstance(value, models.Manager):
            value = value()
    return value


def get_catalog() -> CatalogAdapter:
    """The configured catalog adapter (one instance per process and settings generation)."""
    return settings.derived("catalog", settings.CATALOG_ADAPTER)
