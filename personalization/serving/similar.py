"""Similar items: the live model's neighbours of one item, memoized per loaded model."""

from __future__ import annotations

import logging
import threading
from typing import Any

from personalization.serving.live import live_system
from personalization.serving.results import Recommendation

logger = logging.getLogger("personalization.serving")
SIMILAR_MEMO_MAX = 20_000


class _SimilarMemo:
    """``system.similar_items`` per (item, n) for the loaded system: it depends on the model alone, so a product
    page does not recompute it for every view. Emptied when the system changes or after SIMILAR_MEMO_MAX rows."""

    def __init__(self) -> None:
        self.system: Any = None
        self.rows: dict[tuple[str, int], list[tuple[str, float]]] = {}
        self.lock = threading.Lock()


_similar_memo = _SimilarMemo()


def similar_rows(system: Any, item: str, n: int) -> list[tuple[str, float]]:
    """``system.similar_items([item], n)[0]``, memoized while ``system`` is the loaded one."""
    memo = _similar_memo
    if memo.system is system:
        rows = memo.rows.get((item, n))
        if rows is not None:
            return list(rows)
    rows = system.similar_items([item], n=n)[0]
    with memo.lock:
        if memo.system is not system or len(memo.rows) >= SIMILAR_MEMO_MAX:
            memo.system, memo.rows = system, {}
        memo.rows[(item, n)] = list(rows)
    return rows


def similar_items(item: str, n: int = 10) -> list[Recommendation]:
    """Available items like ``item`` from the live model; empty when there is no live model or the item is unknown."""
    try:
        _, system = live_system()
        if system is None:
            return []
        rows = similar_rows(system, item, n)
        return [Recommendation(key, float(score), f"similar:{item}") for key, score in rows]
    except Exception:
        logger.exception("personalization: similar items failed for %s", item)
        return []
