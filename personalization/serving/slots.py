"""Slots: the business rules of each ``PERSONALIZATION["SLOTS"]`` entry over :data:`SLOT_DEFAULTS`, validated."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from personalization.conf import settings

logger = logging.getLogger("personalization.serving")

#: Rules of a slot (``PERSONALIZATION["SLOTS"][slot]``) when the slot does not set them.
SLOT_DEFAULTS: dict[str, Any] = {
    "n": 10,  # list length when the caller gives none
    "exclude_purchased": True,  # never recommend what the visitor bought
    "exclude_in_cart": True,  # nor what is in their cart (add_to_cart not followed by remove/purchase)
    "exclude_viewed": False,  # True: only items new to the visitor (else a viewed item may come back, ranked)
    "categories": [],  # only these categories (empty: all)
    "price_min": None,
    "price_max": None,
    "brands": [],  # only these brands (empty: all)
    "boost": {},  # category -> score factor (> 1 promotes, < 1 demotes)
    "pinned": [],  # item keys always shown first (when available and not excluded)
    "max_per_category": None,  # at most this many items of one category
    "diversity": None,  # "mmr" (maximal marginal relevance), "category" (spread categories) or None
    "mmr_lambda": 0.7,  # MMR trade-off: 1 = relevance only, 0 = diversity only
    "exploration": None,  # "epsilon" (uniform), "thompson" (Beta posterior of click rates) or None
    "exploration_rate": 0.1,  # share of the (unpinned) positions given to exploration
}
DIVERSITY = (None, "mmr", "category")
EXPLORATION = (None, "epsilon", "thompson")


class UnknownSlot(ValueError):
    """A slot not in ``PERSONALIZATION["SLOTS"]``."""


def slot_names() -> list[str]:
    """The configured slots."""
    return list(settings.SLOTS)


def default_slot() -> str:
    """The slot used when a caller names none: "default" when configured (or nothing is), else the first one."""
    slots = settings.SLOTS
    return "default" if "default" in slots or not slots else next(iter(slots))


def slot_spec(slot: str | None) -> dict[str, Any]:
    """The rules of ``slot`` (empty: the default slot) over :data:`SLOT_DEFAULTS`; UnknownSlot when not configured."""
    name = slot or default_slot()
    return dict(settings.derived(f"slot:{name}", lambda: _merged_slot_spec(name)))


def spec_or_default(slot: str) -> dict[str, Any]:
    """:func:`slot_spec`, or the default rules when the slot is unknown or misconfigured: template tags may name
    slots the host never configured (the API refuses them). Logged once per process and slot, not per page."""
    name = slot or default_slot()
    return dict(settings.derived(f"slot-or-default:{name}", lambda: _spec_or_default(name)))


def _spec_or_default(name: str) -> dict[str, Any]:
    try:
        return _merged_slot_spec(name)
    except (UnknownSlot, ImproperlyConfigured) as exc:
        logger.warning("personalization: %s Using the default rules (logged once per process and slot; "
                       "`manage.py check` lists the templates' unknown slots).", exc)
        return {**SLOT_DEFAULTS, "name": name}


def _merged_slot_spec(name: str) -> dict[str, Any]:
    slots = settings.SLOTS
    if name not in slots and not (name == "default" and not slots):
        raise UnknownSlot(f"Unknown slot {name!r}; configured slots: {', '.join(slots) or 'none'}.")
    spec = slots.get(name) or {}
    if not isinstance(spec, dict):
        raise ImproperlyConfigured(f'PERSONALIZATION["SLOTS"][{name!r}] must be a dict of rules.')
    unknown = sorted(set(spec) - set(SLOT_DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(f'Unknown rule(s) {unknown} in PERSONALIZATION["SLOTS"][{name!r}]; '
                                   f"valid: {', '.join(SLOT_DEFAULTS)}.")
    merged = {**SLOT_DEFAULTS, **spec, "name": name}
    if merged["diversity"] not in DIVERSITY:
        raise ImproperlyConfigured(f'SLOTS[{name!r}]["diversity"] must be "mmr", "category" or None.')
    if merged["exploration"] not in EXPLORATION:
        raise ImproperlyConfigured(f'SLOTS[{name!r}]["exploration"] must be "epsilon", "thompson" or None.')
    if not 0.0 <= float(merged["exploration_rate"]) <= 1.0:
        raise ImproperlyConfigured(f'SLOTS[{name!r}]["exploration_rate"] must be within 0..1.')
    return merged
