"""The online service: ``recommend()`` and ``similar_items()`` from the live model, with a cold-start chain.

The live version's system is loaded once per process and swapped atomically when another process promotes a
new version: every call compares the live version id published in the cache with the loaded one. Nothing here
raises to a caller: on any failure it logs and falls back (live model -> popularity -> empty list).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import caches

from personalization.conf import settings

logger = logging.getLogger("personalization.serving")
LIVE_KEY = "personalization:live-version"


@dataclass
class Recommendation:
    item: str
    score: float
    reason: str = ""


@dataclass
class Result:
    items: list[Recommendation]
    recommendation_id: str
    model_version: int | None
    fallback: str = ""  # "" when the live model answered, else which fallback did
    extra: dict[str, Any] = field(default_factory=dict)

    def keys(self) -> list[str]:
        return [r.item for r in self.items]


class _Loaded:
    def __init__(self) -> None:
        self.version_id: int | None = None
        self.system: Any = None
        self.lock = threading.Lock()


_loaded = _Loaded()


def _cache():
    return caches[settings.CACHE_ALIAS]


def notify_model_changed() -> None:
    """Publish the live version id so every process swaps models on its next call."""
    from personalization.registry import live_version

    live = live_version()
    try:
        _cache().set(LIVE_KEY, live.pk if live else 0, timeout=None)
    except Exception:  # noqa: BLE001
        logger.warning("Could not publish the live model version", exc_info=True)


def _live_version_id() -> int | None:
    try:
        value = _cache().get(LIVE_KEY)
    except Exception:  # noqa: BLE001
        value = None
    if value is None:
        from personalization.registry import live_version

        live = live_version()
        value = live.pk if live else 0
        try:
            _cache().set(LIVE_KEY, value, timeout=300)
        except Exception:  # noqa: BLE001
            pass
    return value or None


def live_system() -> tuple[int | None, Any]:
    """(version id, system) of the live model, loading or swapping it when the live version changed."""
    version_id = _live_version_id()
    if version_id is None:
        return None, None
    if _loaded.version_id == version_id:
        return version_id, _loaded.system
    with _loaded.lock:
        if _loaded.version_id != version_id:
            from personalization.models import ModelVersion
            from personalization.registry import load_system

            version = ModelVersion.objects.get(pk=version_id)
            system = load_system(version)
            _loaded.system, _loaded.version_id = system, version_id  # swap only once fully loaded
    return _loaded.version_id, _loaded.system


def subject_of(user_or_visitor: Any) -> str:
    """Model subject id for a user object, a request, a ``u:``/``v:`` string or a raw visitor id."""
    if isinstance(user_or_visitor, str):
        return user_or_visitor if user_or_visitor[:2] in {"u:", "v:"} else f"v:{user_or_visitor}"
    if hasattr(user_or_visitor, "META"):
        from personalization.tracking.identity import get_visitor

        return get_visitor(user_or_visitor).subject
    if getattr(user_or_visitor, "is_authenticated", False):
        return f"u:{user_or_visitor.pk}"
    return "v:"


def recommend(
    user_or_visitor: Any, n: int = 10, *, context: dict[str, Any] | None = None,
    history: list[str] | None = None, exclude: set[str] | None = None,
) -> Result:
    """Top-n item keys with scores for a person, from the live model; the cold-start chain otherwise."""
    rec_id = uuid.uuid4().hex
    subject = subject_of(user_or_visitor)
    exclude = set(exclude or ())
    try:
        version_id, system = live_system()
        if system is not None:
            histories = {subject: history} if history else None
            rows = system.recommend([subject], n=n, histories=histories, exclude=exclude or None, context=context)
            items = [Recommendation(key, float(score), reason) for key, score, reason in rows[0]]
            if items:
                return Result(items, rec_id, version_id)
    except Exception:
        logger.exception("personalization: live model failed for %s; using the fallback", subject)
        version_id = None
    return Result(_popular(n, exclude), rec_id, version_id, fallback="popularity")


def _popular(n: int, exclude: set[str]) -> list[Recommendation]:
    """Most interacted-with items of the last 30 days (cached 10 minutes)."""
    from datetime import timedelta

    from django.db.models import Count
    from django.utils import timezone

    from personalization.models import Event

    key = "personalization:popular:v1"
    try:
        popular = _cache().get(key)
    except Exception:  # noqa: BLE001
        popular = None
    if popular is None:
        since = timezone.now() - timedelta(days=30)
        rows = (
            Event.objects.filter(occurred_at__gte=since).exclude(item_key="").exclude(event_type="impression")
            .values("item_key").annotate(c=Count("id")).order_by("-c")[:200]
        )
        popular = [(r["item_key"], r["c"]) for r in rows]
        if not popular:  # an imported history may be older than 30 days
            rows = (Event.objects.exclude(item_key="").values("item_key").annotate(c=Count("id"))
                    .order_by("-c")[:200])
            popular = [(r["item_key"], r["c"]) for r in rows]
        try:
            _cache().set(key, popular, timeout=600)
        except Exception:  # noqa: BLE001
            pass
    return [Recommendation(k, float(c), "popular") for k, c in popular if k not in exclude][:n]


def similar_items(item: str, n: int = 10) -> list[Recommendation]:
    """Items like ``item`` from the live model; empty when there is no live model or the item is unknown."""
    try:
        _, system = live_system()
        if system is None:
            return []
        rows = system.similar_items([item], n=n)[0]
        return [Recommendation(key, float(score), "similar") for key, score in rows]
    except Exception:
        logger.exception("personalization: similar items failed for %s", item)
        return []
