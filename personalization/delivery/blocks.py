"""Content blocks: who the visitor is (affinity, audience) and which variant of a block they see.

A block's variants come from the template (``{% variant %}``) and from admin ``Variant`` rows (with ``html``) of
the ``ContentBlock`` with the same slot; an admin row with a template variant's key adds targeting to it. The
choice per visitor: targeting filters (segment, device, country, new/returning), then Thompson sampling on the
variants' clicks/impressions (``VariantStat``) plus the visitor's affinity for a variant's category, with a
control share chosen uniformly at random. It is sticky: seeded by visitor, slot and period, and cached.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.utils import timezone

from personalization import serving, shared_cache
from personalization.conf import settings
from personalization.delivery import bandit

logger = logging.getLogger("personalization.delivery")
RETURNING_AFTER = timedelta(minutes=30)  # an event older than this makes a visitor "returning"


# --- who is looking -------------------------------------------------------------------------------------------


@dataclass
class Audience:
    """What the delivery layer knows about the person viewing a page."""

    subject: str = "v:"
    user_id: int | None = None
    visitor_id: str = ""
    device: str = ""
    country: str = ""
    returning: bool = False
    segments: set[str] = field(default_factory=set)
    affinity: dict[str, float] = field(default_factory=dict)  # category -> share of interest (sums to 1)

    @property
    def top_category(self) -> str:
        return max(self.affinity, key=self.affinity.get) if self.affinity else ""


def audience_for(request: Any) -> Audience:
    """The Audience of a request (computed once per request); an anonymous nobody without a request."""
    if request is None:
        return Audience()
    cached = getattr(request, "_personalization_audience", None)
    if isinstance(cached, Audience):
        return cached
    audience = Audience()
    try:
        from personalization.tracking.context import request_context
        from personalization.tracking.identity import get_visitor

        visitor = get_visitor(request)
        audience.subject, audience.user_id, audience.visitor_id = visitor.subject, visitor.user_id, visitor.visitor_id
        ctx = request_context(request)
        audience.device, audience.country = ctx.get("device", ""), ctx.get("country", "")
        events = _recent_events(audience)
        audience.returning = bool(events) and events[-1][2] < timezone.now() - RETURNING_AFTER
        audience.affinity = _affinity_from_events(events) or _affinity_from_model(request)
        audience.segments = _segments(request, audience)
    except Exception:  # noqa: BLE001 - a page must render for whoever is looking
        logger.exception("personalization: audience not resolved; treating the visitor as anonymous")
    try:
        request._personalization_audience = audience
    except Exception:  # noqa: BLE001
        pass
    return audience


def _recent_events(audience: Audience) -> list[tuple[str, str, Any]]:
    """(item, event type, time) of the person's most recent events, newest first."""
    from personalization.models import Event

    if audience.user_id:
        qs = Event.objects.filter(user_id=audience.user_id)
    elif audience.visitor_id:
        qs = Event.objects.filter(visitor_id=audience.visitor_id)
    else:
        return []
    limit = int(settings.DELIVERY["affinity_events"])
    return list(qs.order_by("-occurred_at").values_list("item_key", "event_type", "occurred_at")[:limit])


def _categories(keys: list[str]) -> dict[str, str]:
    from personalization.catalog import get_catalog

    if not keys:
        return {}
    return {row["item"]: row.get("category") or "" for row in get_catalog().features(keys)}


def _normalise(scores: dict[str, float]) -> dict[str, float]:
    total = sum(v for v in scores.values() if v > 0)
    if total <= 0:
        return {}
    return {k: v / total for k, v in sorted(scores.items(), key=lambda kv: -kv[1]) if v > 0}


def _affinity_from_events(events: list[tuple[str, str, Any]]) -> dict[str, float]:
    """Category shares of the weighted recent events (view 1, click 2, cart 4, purchase 8, ...)."""
    weights = settings.event_weights
    keys = list(dict.fromkeys(item for item, _, _ in events if item))
    category = _categories(keys)
    scores: dict[str, float] = defaultdict(float)
    for item, event_type, _ in events:
        cat = category.get(item)
        if cat:
            scores[cat] += max(weights.get(event_type, 0.0), 0.0)
    return _normalise(scores)


def _affinity_from_model(request: Any) -> dict[str, float]:
    """Without history of their own: the categories the live model recommends to the visitor (rank-weighted)."""
    if serving.live_system()[1] is None:
        return {}
    result = serving.recommend(request, 20)
    if result.fallback:
        return {}
    category = _categories(result.keys())
    scores: dict[str, float] = defaultdict(float)
    for rank, key in enumerate(result.keys()):
        if category.get(key):
            scores[category[key]] += 1.0 / (rank + 1)
    return _normalise(scores)


def _segments(request: Any, audience: Audience) -> set[str]:
    segments = {"returning" if audience.returning else "new"}
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        segments.add("authenticated")
        try:
            segments.update(user.groups.values_list("name", flat=True))
        except Exception:  # noqa: BLE001 - a custom user model without groups
            pass
    else:
        segments.add("anonymous")
    if audience.device:
        segments.add(audience.device)
    return segments


# --- variants -------------------------------------------------------------------------------------------------


@dataclass
class VariantOption:
    """One candidate variant: from the template (``nodelist``) or from an admin row (``html``)."""

    key: str
    category: str = ""
    segment: str = ""
    device: str = ""
    country: str = ""
    audience: str = "any"
    item: str = ""
    html: str = ""
    nodelist: Any = None
    active: bool = True

    def eligible(self, who: Audience) -> bool:
        if not self.active:
            return False
        if self.segment and self.segment not in who.segments:
            return False
        if self.device and self.device != who.device:
            return False
        if self.country and self.country.upper() != (who.country or "").upper():
            return False
        if self.audience == "new" and who.returning:
            return False
        if self.audience == "returning" and not who.returning:
            return False
        return True


@dataclass
class BlockConfig:
    slot: str
    active: bool = True
    control_share: float | None = None
    variants: list[VariantOption] = field(default_factory=list)


def block_config(slot: str) -> BlockConfig:
    """The admin side of a block (cached one minute): active flag, control share and variant rows."""
    key = f"personalization:block-config:{slot}"
    cached = shared_cache.get(key)
    if isinstance(cached, BlockConfig):
        return cached
    from personalization.models import ContentBlock

    config = BlockConfig(slot)
    block = ContentBlock.objects.filter(slot=slot).first()
    if block is not None:
        config.active, config.control_share = block.active, block.control_share
        for row in block.variants.all().order_by("pk"):
            config.variants.append(VariantOption(
                key=row.key, category=row.category, segment=row.segment, device=row.device, country=row.country,
                audience=row.audience, html=row.html, active=row.active,
            ))
    try:
        shared_cache.cache().set(key, config, timeout=60)
    except Exception:  # noqa: BLE001
        pass
    return config


def forget_block_config(slot: str) -> None:
    try:
        shared_cache.cache().delete(f"personalization:block-config:{slot}")
    except Exception:  # noqa: BLE001
        pass


def merge_variants(template_variants: list[VariantOption], config: BlockConfig) -> list[VariantOption]:
    """Template variants, with admin targeting laid over same-key ones, then admin variants that have HTML."""
    merged = {v.key: v for v in template_variants}
    order = [v.key for v in template_variants]
    for row in config.variants:
        if row.key in merged:
            base = merged[row.key]
            merged[row.key] = VariantOption(
                key=base.key, category=row.category or base.category, segment=row.segment or base.segment,
                device=row.device or base.device, country=row.country or base.country,
                audience=row.audience if row.audience != "any" else base.audience, item=base.item,
                html=base.html, nodelist=base.nodelist, active=base.active and row.active,
            )
        elif row.html:
            merged[row.key] = row
            order.append(row.key)
    return [merged[k] for k in order]


def variant_stats(slot: str) -> dict[str, tuple[int, int]]:
    """(clicks, impressions) per variant key of a slot."""
    from personalization.models import VariantStat

    return {v: (c, i) for v, c, i in VariantStat.objects.filter(slot=slot).values_list("variant", "clicks",
                                                                                         "impressions")}


@dataclass
class Choice:
    variant: VariantOption
    how: str  # "thompson", "control", "sticky", "only", "default"


def choose_variant(slot: str, variants: list[VariantOption], who: Audience, *,
                   control_share: float | None = None) -> Choice | None:
    """The variant this person sees in ``slot`` (None when there are no variants)."""
    config = block_config(slot)
    merged = merge_variants(variants, config)
    if not merged:
        return None
    default = variants[0] if variants else merged[0]
    if not config.active:
        return Choice(default, "default")
    options = [v for v in merged if v.eligible(who)]
    if not options:
        return Choice(default, "default")
    if len(options) == 1:
        return Choice(options[0], "only")
    sticky_seconds = max(int(settings.DELIVERY["sticky_seconds"]), 1)
    period = int(time.time() // sticky_seconds)
    # The top category is part of the key: a visitor whose interest changed may get a better-fitting variant.
    sticky_key = f"personalization:variant:{slot}:{who.subject}:{who.top_category}:{period}"
    keys = [v.key for v in options]
    remembered = shared_cache.get(sticky_key)
    if remembered in keys:
        return Choice(options[keys.index(remembered)], "sticky")
    share = control_share if control_share is not None else config.control_share
    if share is None:
        share = float(settings.DELIVERY["control_share"])
    stats = variant_stats(slot)
    weight = float(settings.DELIVERY["affinity_weight"])
    bonus = [weight * who.affinity.get(v.category, 0.0) if v.category else 0.0 for v in options]
    rng = bandit.seeded_rng(who.subject, slot, period)
    index, how = bandit.choose([stats.get(k, (0, 0)) for k in keys], rng, control_share=share, bonus=bonus)
    try:
        shared_cache.cache().set(sticky_key, keys[index], timeout=sticky_seconds)
    except Exception:  # noqa: BLE001
        pass
    return Choice(options[index], how)


def block_choice(request: Any, slot: str, variants: list[VariantOption], *,
                 control_share: float | None = None) -> Choice | None:
    """The variant of block ``slot`` the request's visitor sees (None: the block has no variants)."""
    return choose_variant(slot, variants, audience_for(request), control_share=control_share)


# --- statistics -----------------------------------------------------------------------------------------------

WATERMARK_KEY = "personalization:variant-stats:watermark"


def aggregate_variant_stats(batch: int = 50_000) -> dict[str, int]:
    """Add impressions and clicks carrying ``context.block``/``context.variant`` to VariantStat.

    Incremental by event id: the last counted id is kept in the cache. Without it (first run, cache flushed) the
    counts are recomputed from all events, so running it twice never counts an event twice.
    """
    from django.db import transaction
    from django.db.models import Count, F, Max

    from personalization.models import Event, VariantStat

    cache = shared_cache.cache()
    lock = f"{WATERMARK_KEY}:lock"
    if not cache.add(lock, 1, timeout=600):
        return {"skipped": 1}
    try:
        watermark = cache.get(WATERMARK_KEY)
        full = watermark is None
        qs = Event.objects.filter(event_type__in=("impression", "click"), context__has_key="variant")
        if not full:
            qs = qs.filter(id__gt=watermark)
        top = qs.aggregate(m=Max("id"))["m"]
        if top is None:
            if full:
                cache.set(WATERMARK_KEY, Event.objects.aggregate(m=Max("id"))["m"] or 0, timeout=None)
            return {"events": 0, "variants": 0}
        rows = (qs.filter(id__lte=top, context__has_key="block")
                .values("context__block", "context__variant", "event_type").annotate(n=Count("id")))
        counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"impression": 0, "click": 0})
        events = 0
        for row in rows:
            slot, variant = row["context__block"], row["context__variant"]
            if not isinstance(slot, str) or not isinstance(variant, str) or not slot or not variant:
                continue
            counts[(slot[:64], variant[:64])][row["event_type"]] += row["n"]
            events += row["n"]
        with transaction.atomic():
            if full:
                VariantStat.objects.all().update(impressions=0, clicks=0)
            for (slot, variant), n in counts.items():
                stat, _ = VariantStat.objects.get_or_create(slot=slot, variant=variant)
                VariantStat.objects.filter(pk=stat.pk).update(
                    impressions=F("impressions") + n["impression"], clicks=F("clicks") + n["click"],
                )
        cache.set(WATERMARK_KEY, top, timeout=None)
        return {"events": events, "variants": len(counts), "full": int(full)}
    finally:
        cache.delete(lock)
