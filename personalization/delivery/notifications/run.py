"""A notification run (:func:`send_notifications`, the ``personalization.send_notifications`` beat task): for each
active ``NotificationRule``, its trigger's candidates pass the limits and are recorded and sent once.

Each candidate passes, cheapest first: the user is active and not opted out; it is not quiet hours in the user's
zone (``NotificationPreference.timezone``, else ``TIME_ZONE``; the message is *deferred* to a later run, never
sent); the rule's ``max_per_week`` (messages sent by this rule to this user in the 7 days before ``now``, whatever
the channel); the idempotency key (rule + user + trigger subject + period) is unused; the engagement score
(:mod:`~personalization.delivery.notifications.scoring`) reaches the rule's ``threshold``. Then the row is inserted
first (the unique key makes a retried or concurrent run skip it) and the channel sends; the outcome (``sent``,
``failed`` with the error, ``skipped``) is recorded on the row and never raised.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.template import TemplateDoesNotExist, engines
from django.template.loader import render_to_string
from django.utils import timezone

from personalization.conf import settings
from personalization.delivery.channels import Message, SkipMessage, get_channel
from personalization.delivery.notifications.links import absolute, open_url, opt_out_url
from personalization.delivery.notifications.scoring import Engagement, Scorer
from personalization.delivery.notifications.template_context import message_context
from personalization.delivery.notifications.triggers import TRIGGERS, Candidate, Trigger, refresh_availability
from personalization.models import Notification, NotificationPreference, NotificationRule

logger = logging.getLogger("personalization.notifications")

DEFAULT_TEMPLATES = {
    Trigger.RECOMMENDED: "personalization/notifications/recommended",
    Trigger.BACK_IN_STOCK: "personalization/notifications/back_in_stock",
    Trigger.ABANDONED_CART: "personalization/notifications/abandoned_cart",
}
PENDING = "pending: the channel has not confirmed delivery"


def user_zone(preference: NotificationPreference | None) -> ZoneInfo:
    """The user's time zone (their preference, else ``TIME_ZONE``; an unknown name is logged and replaced)."""
    name = (preference.timezone if preference else "") or django_settings.TIME_ZONE or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        logger.warning("Unknown time zone %r of user %s; using %s", name, preference.user_id if preference else "-",
                       django_settings.TIME_ZONE)
        return ZoneInfo(django_settings.TIME_ZONE or "UTC")


def in_quiet_hours(start: int, end: int, hour: int) -> bool:
    """Whether ``hour`` (0..23, local) falls in [start, end), wrapping past midnight; start == end: never quiet."""
    if start == end:
        return False
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end


def idempotency_key(rule_id: int, user_id: int, subject: str, period: str) -> str:
    """The unique key of one message: rule + user + what it is about + period (at most one row per key)."""
    digest = hashlib.sha256(f"{subject}|{period}".encode()).hexdigest()[:32]
    return f"n:{rule_id}:{user_id}:{period[:32]}:{digest}"


class Run:
    """State shared by the rules of one run: the time, the scorer, the restocks seen (computed once)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.scorer = Scorer(now)
        self._restocked: dict[str, datetime] | None = None

    def restocked(self) -> dict[str, datetime]:
        """The restocked items and when each restock was seen (the snapshot is refreshed once per run)."""
        if self._restocked is None:
            self._restocked = refresh_availability(self.now)
        return self._restocked


def template_prefix(rule: NotificationRule) -> str:
    """The rule's template path without extension (the model's default follows the trigger)."""
    default = NotificationRule._meta.get_field("template").default
    if not rule.template or (rule.template == default and rule.trigger != Trigger.RECOMMENDED):
        return DEFAULT_TEMPLATES.get(rule.trigger, default)
    return rule.template


def _items(keys: list[str]) -> list[dict[str, Any]]:
    from personalization.catalog import get_catalog

    display = get_catalog().display(keys) if keys else {}
    out = []
    for key in keys:
        row = display.get(key, {})
        out.append({
            "key": key, "title": row.get("title") or key, "url": absolute(str(row.get("url") or "")),
            "image": absolute(str(row.get("image") or "")), "price": row.get("price"),
            "category": row.get("category"),
        })
    return out


def _resolve_items(candidate: Candidate, user: Any, run: Run) -> tuple[list[str], dict[str, Any]]:
    """The item keys to show (available ones, at most NOTIFICATION_ITEMS) and extra payload."""
    from personalization.catalog import get_catalog

    limit = max(int(settings.NOTIFICATION_ITEMS), 1)
    extra: dict[str, Any] = {}
    if candidate.items is None:
        result = run.scorer.recommendations(user)
        bought = run.scorer.purchased(user.pk)
        keys = [k for k in result.keys() if k not in bought]
        reasons = {r.item: r.reason for r in result.items}
        extra = {"recommendation_id": result.recommendation_id, "model_version": result.model_version,
                 "fallback": result.fallback, "reasons": {k: reasons.get(k, "") for k in keys}}
    else:
        keys = list(candidate.items)
    available = get_catalog().available(keys) if keys else set()
    keys = [k for k in keys if k in available][:limit]
    if "reasons" in extra:
        extra["reasons"] = {k: extra["reasons"][k] for k in keys}
    return keys, extra


def _render(rule: NotificationRule, context: dict[str, Any]) -> tuple[str, str, str]:
    engine = engines["django"]
    subject_source = "{% autoescape off %}" + (rule.subject or rule.get_trigger_display()) + "{% endautoescape %}"
    subject = " ".join(engine.from_string(subject_source).render(context).split())[:200]
    prefix = template_prefix(rule)
    text = render_to_string(f"{prefix}.txt", context)
    try:
        html = render_to_string(f"{prefix}.html", context)
    except TemplateDoesNotExist:
        html = ""
    return subject, text, html


def deliver(rule: NotificationRule, channel: Any, user: Any, key: str, keys: list[str], score: Engagement,
            candidate: Candidate, extra: dict[str, Any], now: datetime) -> str | None:
    """Insert the row (first), then send; returns the status recorded, None when the key was already used."""
    items = _items(keys)
    reasons = extra.get("reasons") or {}
    for item in items:
        item["reason"] = reasons.get(item["key"], "")
    context = message_context(user=user, items=items, trigger=rule.trigger,
                              site_url=(settings.SITE_URL or "").rstrip("/"), opt_out_url=opt_out_url(user.pk),
                              open_url=open_url(key))
    subject, text, html = _render(rule, context)
    payload = {
        "trigger": rule.trigger, "items": items, "about": candidate.subject[:300],
        "score": round(score.score, 4), "rfm_score": round(score.rfm, 4),
        "model_score": None if score.model is None else round(score.model, 4),
        **{k: v for k, v in extra.items() if k != "reasons"},
    }
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                user=user, rule=rule, channel=rule.channel, idempotency_key=key, subject=subject, body=text,
                payload=payload, status=Notification.Status.FAILED, error=PENDING,
            )
    except IntegrityError:
        return None  # another run (or a retry) already took this message
    status, error = Notification.Status.SENT, ""
    try:
        channel.send(Message(notification=notification, user=user, subject=subject, text=text, html=html,
                             payload=payload, opt_out_url=context["opt_out_url"], open_url=context["open_url"]))
    except SkipMessage as exc:
        status, error = Notification.Status.SKIPPED, str(exc)
    except Exception as exc:  # noqa: BLE001 - a channel's failure is recorded, never raised
        status, error = Notification.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
        logger.warning("Notification %s to user %s through %s failed: %s", key, user.pk, rule.channel, error)
    Notification.objects.filter(pk=notification.pk).update(status=status, error=error, created_at=now)
    return status


def run_rule(rule: NotificationRule, run: Run) -> Counter:
    """Select, filter and send the messages of one rule; returns counts per outcome."""
    stats: Counter = Counter()
    try:
        channel = get_channel(rule.channel)
    except ImproperlyConfigured as exc:
        logger.error("Notification rule %s (%s): %s", rule.pk, rule, exc)
        stats["misconfigured"] += 1
        return stats
    candidates = TRIGGERS[rule.trigger](rule, run)
    if not candidates:
        return stats
    ids = sorted({c.user_id for c in candidates})
    users = {u.pk: u for u in get_user_model()._default_manager.filter(pk__in=ids, is_active=True)}
    prefs = {p.user_id: p for p in NotificationPreference.objects.filter(user_id__in=ids)}
    week = Counter(dict(
        Notification.objects.filter(rule=rule, user_id__in=ids, status=Notification.Status.SENT,
                                    created_at__gt=run.now - timedelta(days=7), created_at__lte=run.now)
        .values_list("user_id").annotate(n=Count("id")).values_list("user_id", "n").order_by()
    ))
    run.scorer.prefetch(uid for uid in ids if uid in users)
    for candidate in candidates:
        user = users.get(candidate.user_id)
        if user is None:
            stats["inactive"] += 1
            continue
        pref = prefs.get(user.pk)
        if pref is not None and pref.opted_out:
            stats["opted_out"] += 1
            continue
        local = run.now.astimezone(user_zone(pref))
        if in_quiet_hours(rule.quiet_start, rule.quiet_end, local.hour):
            stats["deferred_quiet_hours"] += 1
            continue
        if week[user.pk] >= rule.max_per_week:
            stats["capped"] += 1
            continue
        period = candidate.period or local.date().isoformat()
        key = idempotency_key(rule.pk, user.pk, candidate.subject, period)
        if Notification.objects.filter(idempotency_key=key).exists():
            stats["already_sent"] += 1
            continue
        score = run.scorer.engagement(user)
        if score.score < rule.threshold:
            stats["below_threshold"] += 1
            continue
        keys, extra = _resolve_items(candidate, user, run)
        if not keys:
            stats["no_items"] += 1
            continue
        try:
            status = deliver(rule, channel, user, key, keys, score, candidate, extra, run.now)
        except Exception:  # noqa: BLE001 - e.g. a broken template: logged, retried by the next run
            logger.exception("Could not prepare notification %s for user %s", key, user.pk)
            stats["error"] += 1
            continue
        if status is None:
            stats["already_sent"] += 1
            continue
        stats[status] += 1
        if status == Notification.Status.SENT:
            week[user.pk] += 1
    return stats


def send_notifications(now: datetime | None = None, rule_ids: Iterable[int] | None = None) -> dict[str, dict]:
    """Run every active rule (or the given ones) at ``now``; returns counts per rule name and outcome."""
    now = now or timezone.now()
    if timezone.is_naive(now):
        now = timezone.make_aware(now, timezone.get_default_timezone())
    rules = NotificationRule.objects.filter(active=True).order_by("pk")
    if rule_ids is not None:
        rules = rules.filter(pk__in=list(rule_ids))
    run = Run(now)
    report: dict[str, dict] = {}
    for rule in rules:
        stats = run_rule(rule, run)
        report[f"{rule.pk}:{rule.name}"] = dict(stats)
        if stats:
            logger.info("Notification rule %s (%s): %s", rule.pk, rule.name, dict(stats))
    return report
