"""Explanations: each item's true reason in words ("Because you viewed Blue mug", "Popular in FR", ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from personalization.serving.items import item_display
from personalization.serving.results import Recommendation
from personalization.serving.state import VisitorState

ACTION_VERB = {"purchase": "bought", "add_to_cart": "added", "rate": "rated", "click": "clicked",
               "view": "viewed", "dwell": "viewed"}


def explain_items(items: Sequence[Recommendation], state: VisitorState, spec: dict[str, Any]) -> None:
    """Fill ``explanation`` from each item's true reason, naming the history item behind it when there is one."""

    referenced = set()
    for r in items:
        if ":because " in r.reason:
            referenced.add(r.reason.split(":because ", 1)[1])
        elif r.reason.startswith("similar:"):
            referenced.add(r.reason[len("similar:"):])
    display = item_display(referenced | {r.item for r in items}) if items else {}
    boost = spec.get("boost") or {}
    for r in items:
        r.explanation = _explain(r.reason, display, state)
        cat = (display.get(r.item) or {}).get("category")
        if cat in boost and float(boost[cat]) > 1 and not r.reason.startswith(("pinned", "exploration")):
            r.explanation += f" (the shop promotes {cat})"


def _title(key: str, display: dict[str, dict[str, Any]]) -> str:
    return str((display.get(key) or {}).get("title") or key)


def _explain(reason: str, display: dict[str, dict[str, Any]], state: VisitorState) -> str:
    source, _, detail = reason.partition(":")
    if detail.startswith("because "):
        key = detail[len("because "):]
        action = state.actions.get(key, "")
        verb = ACTION_VERB.get(action, "showed interest in")
        cart = " to your cart" if action == "add_to_cart" else ""
        return f"Because you {verb} {_title(key, display)}{cart}"
    if source == "similar":
        return f"Similar to {_title(detail, display)}"
    if source == "history":
        return "You looked at this recently"
    if source == "pinned":
        return "Pinned by the shop"
    if source == "exploration":
        how = "at random" if detail == "epsilon" else "for its uncertain click rate"
        return f"Exploring: picked {how} among your candidates to learn what you like"
    if source in ("popularity", "popular"):
        name, _, value = detail.partition("=")
        if name == "country":
            return f"Popular in {value}"
        if name == "device":
            return f"Popular on {value}"
        if name == "hour":
            return f"Popular around {int(value):02d}:00"
        return "Popular in the shop"
    if source in ("als", "bpr"):
        return "Liked by shoppers with tastes like yours"
    if source in ("itemknn", "item2vec", "content", "ease"):
        return "Related to items you interacted with"
    return f"Chosen by the {source} model"
