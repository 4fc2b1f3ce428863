"""Adaptive layouts: sections reordered by the visitor's predicted interest, pinned sections kept in place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personalization.conf import settings
from personalization.delivery.blocks import audience_for


@dataclass
class Section:
    key: str
    category: str = ""
    pinned: int | None = None  # 1-based position this section keeps; None: free to move
    nodelist: Any = None


def pin_of(value: Any, written_position: int) -> int | None:
    """``pinned=True`` keeps the written position; ``pinned=<n>`` means position n (1-based); falsy: not pinned."""
    if value is None or value is False or value == "":
        return None
    if value is True:
        return written_position
    if isinstance(value, str):
        if value.lower() in {"true", "yes"}:
            return written_position
        if value.lower() in {"false", "no", "0"}:
            return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        return written_position
    return n if n > 0 else None


def configured_pins(layout: str) -> dict[str, int]:
    """``PERSONALIZATION["DELIVERY"]["layouts"][layout]["pinned"]``: section key -> position (1-based)."""
    spec = (settings.DELIVERY.get("layouts") or {}).get(layout) or {}
    pinned = spec.get("pinned") or {}
    if isinstance(pinned, (list, tuple)):  # a list pins the named sections to the first positions, in order
        return {key: i + 1 for i, key in enumerate(pinned)}
    return {str(k): int(v) for k, v in pinned.items()}


def order_sections(layout: str, sections: list[Section], affinity: dict[str, float]) -> list[Section]:
    """Sections in display order: pinned ones at their positions, the others by affinity (ties: written order)."""
    n = len(sections)
    pins = {s.key: s.pinned for s in sections if s.pinned}
    pins.update({k: v for k, v in configured_pins(layout).items() if any(s.key == k for s in sections)})
    slots: list[Section | None] = [None] * n
    free: list[Section] = []
    for section in sections:
        position = pins.get(section.key)
        if position:
            index = min(max(position, 1), n) - 1
            while index < n and slots[index] is not None:  # two pins on one position: the later one moves down
                index += 1
            if index < n:
                slots[index] = section
                continue
        free.append(section)
    free.sort(key=lambda s: -affinity.get(s.category, 0.0) if s.category else 0.0)
    it = iter(free)
    return [slot if slot is not None else next(it) for slot in slots]


def layout_sections(request: Any, layout: str, sections: list[Section]) -> list[Section]:
    """The sections of ``layout`` in the order the request's visitor sees them."""
    return order_sections(layout, sections, audience_for(request).affinity)
