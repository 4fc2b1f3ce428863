"""Personalized notifications: who gets which message, when, through which channel, at most how often.

One run (:func:`send_notifications`, the ``personalization.send_notifications`` beat task) walks the active
``NotificationRule`` rows. For each rule its *trigger* selects candidate users and items:

``recommended_items``
    users with any event in the last ``NOTIFICATION_SCORE_WINDOW_DAYS``; items from ``serving.recommend()``
    (available, not already bought). At most one message per rule and user per local day.
``abandoned_cart``
    users whose cart (``add_to_cart`` not followed by ``remove_from_cart`` or ``purchase`` of the item) was last
    touched more than ``ABANDONED_CART_HOURS`` ago and less than ``ABANDONED_CART_MAX_DAYS`` ago. One message per
    cart state.
``back_in_stock``
    users who viewed or carted (in the last ``BACK_IN_STOCK_LOOKBACK_DAYS``) an item that was unavailable and is
    available again. Availability is a snapshot of the catalog adapter's ``available()`` over the watched items,
    kept in the cache between runs; a restock seen by one run stays announceable for
    ``BACK_IN_STOCK_NOTICE_DAYS`` (so users in quiet hours get it later). One message per restock.

Each candidate then passes, cheapest first: the user is active and not opted out; it is not quiet hours in the
user's zone (``NotificationPreference.timezone``, else ``TIME_ZONE``; the message is *deferred* to a later run,
never sent); the rule's ``max_per_week`` (messages sent by this rule to this user in the 7 days before ``now``,
whatever the channel); the idempotency key (rule + user + trigger subject + period) is unused; the engagement
score reaches the rule's ``threshold``. Then the row is inserted first (the unique key makes a retried or
concurrent run skip it) and the channel sends; the outcome (``sent``, ``failed`` with the error, ``skipped``) is
recorded on the row and never raised.

**Engagement score** (0..1, :func:`engagement`): a logistic of the user's RFM features
(:func:`~personalization.pipeline.features.user_features` over the score window)::

    rfm = 1 / (1 + exp(-(intercept + recency_days * r + log1p(frequency) * f + log1p(active_days) * a
                          + log1p(monetary) * m)))

with ``NOTIFICATION_SCORE_WEIGHTS`` (defaults -1.0, -0.15, 0.6, 0.4, 0.2: a user seen yesterday with 10 events on
three days scores ~0.7, one seen a month ago with two events ~0.01, a user without events 0). When a model is live
and ranks the user's own candidates, its ranker's predicted probability that the user interacts with their best
recommendation, ``p``, is blended in: ``score = (1 - w) * rfm + w * p`` with ``w = NOTIFICATION_MODEL_WEIGHT``.
The weights are hand-set, not fitted: the score orders users sensibly and stays in 0..1, but it is a probability
only in shape until the weights are fitted to a site's outcomes (see the README).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.cache import caches
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.template import TemplateDoesNotExist, engines
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from personalization.conf import DEFAULTS, settings
from personalization.models import Event, Notification, NotificationPreference, NotificationRule

logger = logging.getLogger("personalization.notifications")

Trigger = NotificationRule.Trigger
DEFAULT_TEMPLATES = {
    Trigger.RECOMMENDED: "personalization/notifications/recommended",
    Trigger.BACK_IN_STOCK: "personalization/notifications/back_in_stock",
    Trigger.ABANDONED_CART: "personalization/notifications/abandoned_cart",
}
VIEW, ADD, REMOVE, PURCHASE = "view", "add_to_cart", "remove_from_cart", "purchase"
OPT_OUT_SALT = "personalization.notifications.opt-out"
OPEN_SALT = "personalization.notifications.open"
SNAPSHOT_KEY = "personalization:notifications:availability:v1"
PENDING = "pending: the channel has not confirmed delivery"
CHUNK = 500


# == engagement score ============================================================================================
def score_weights() -> dict[str, float]:
    return {**DEFAULTS["NOTIFICATION_SCORE_WEIGHTS"], **(settings.NOTIFICATION_SCORE_WEIGHTS or {})}


def rfm_score(recency_days: float, frequency: float, active_days: float, monetary: float,
              weights: dict[str, float] | None = None) -> float:
    """The logistic RFM score in 0..1 (0 for a user without events); see the module docstring."""
    if not frequency or frequency <= 0:
        return 0.0
    w = weights or score_weights()
    z = (w["intercept"] + w["recency_days"] * max(float(recency_days), 0.0)
         + w["log_frequency"] * math.log1p(max(float(frequency), 0.0))
         + w["log_active_days"] * math.log1p(max(float(active_days), 0.0))
         + w["log_monetary"] * math.log1p(max(float(monetary or 0.0), 0.0)))
    z = max(min(z, 50.0), -50.0)
    return 1.0 / (1.0 + math.exp(-z))


@dataclass
class Engagement:
    score: float
    rfm: float
    model: float | None = None  # the live ranker's propensity, when it ranked this user's candidates
    features: dict[str, float] = field(default_factory=dict)


class Scorer:
    """Scores users at ``now``, memoizing RFM features (fetched in bulk) and one ``recommend()`` call per user."""

    def __init__(self, now: datetime):
        self.now = now
        self._features: dict[int, dict[str, float]] = {}
        self._purchased: dict[int, set[str]] = defaultdict(set)
        self._recs: dict[int, Any] = {}
        self._engagement: dict[int, Engagement] = {}

    def prefetch(self, user_ids: Iterable[int]) -> None:
        """RFM features of the users (one query per chunk), via ``pipeline.features.user_features``."""
        import pandas as pd

        from personalization.pipeline.columns import EVENT, ITEM, TIMESTAMP, USER, VALUE
        from personalization.pipeline.features import user_features

        todo = sorted({int(u) for u in user_ids} - set(self._features))
        since = self.now - timedelta(days=float(settings.NOTIFICATION_SCORE_WINDOW_DAYS))
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            for uid in chunk:
                self._features[uid] = {}
            rows = list(Event.objects.filter(user_id__in=chunk, occurred_at__gte=since, occurred_at__lte=self.now)
                        .exclude(event_type="impression")
                        .values_list("user_id", "item_key", "event_type", "occurred_at", "value").order_by())
            if not rows:
                continue
            frame = pd.DataFrame(rows, columns=[USER, ITEM, EVENT, TIMESTAMP, VALUE])
            frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
            frame[VALUE] = pd.to_numeric(frame[VALUE], errors="coerce")
            for uid, item in frame.loc[frame[EVENT] == PURCHASE, [USER, ITEM]].itertuples(index=False):
                self._purchased[int(uid)].add(item)
            table = user_features(frame, now=pd.Timestamp(self.now))
            for uid, row in table.iterrows():
                self._features[int(uid)] = {k: float(v) for k, v in row.items()}

    def features(self, user_id: int) -> dict[str, float]:
        if user_id not in self._features:
            self.prefetch([user_id])
        return self._features[user_id]

    def purchased(self, user_id: int) -> set[str]:
        self.features(user_id)
        return self._purchased[user_id]

    def recommendations(self, user: Any) -> Any:
        """``serving.recommend()`` for the user (memoized for the run)."""
        if user.pk not in self._recs:
            from personalization.serving import recommend

            self._recs[user.pk] = recommend(user, n=max(int(settings.NOTIFICATION_ITEMS), 1) * 3)
        return self._recs[user.pk]

    def model_propensity(self, user: Any) -> float | None:
        """The live ranker's probability for the user's best candidate; None without a live ranked answer."""
        result = self.recommendations(user)
        if result.fallback or not result.items:
            return None
        scores = [r.score for r in result.items]
        if all(str(r.reason).startswith("popularity") for r in result.items):
            return None  # the model does not know this user: it answered with popular items, not a propensity
        if not all(0.0 <= s <= 1.0 for s in scores):
            return None  # no ranker: fusion scores, not probabilities
        return max(scores)

    def engagement(self, user: Any) -> Engagement:
        if user.pk in self._engagement:
            return self._engagement[user.pk]
        feats = self.features(user.pk)
        rfm = rfm_score(feats.get("user_recency_days", 0.0), feats.get("user_frequency", 0.0),
                        feats.get("user_active_days", 0.0), feats.get("user_monetary", 0.0)) if feats else 0.0
        model = self.model_propensity(user) if feats else None
        weight = min(max(float(settings.NOTIFICATION_MODEL_WEIGHT), 0.0), 1.0)
        score = rfm if model is None else (1.0 - weight) * rfm + weight * model
        result = Engagement(score=float(min(max(score, 0.0), 1.0)), rfm=rfm, model=model, features=feats)
        self._engagement[user.pk] = result
        return result


def engagement(users: Iterable[Any], now: datetime | None = None) -> dict[int, Engagement]:
    """Engagement of each user at ``now`` (default: the current time), keyed by user id."""
    users = list(users)
    scorer = Scorer(now or timezone.now())
    scorer.prefetch(u.pk for u in users)
    return {u.pk: scorer.engagement(u) for u in users}


# == quiet hours, tokens, keys ===================================================================================
def user_zone(preference: NotificationPreference | None) -> ZoneInfo:
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
    digest = hashlib.sha256(f"{subject}|{period}".encode()).hexdigest()[:32]
    return f"n:{rule_id}:{user_id}:{period[:32]}:{digest}"


def opt_out_token(user_id: int) -> str:
    """A signed, non-expiring token naming the user (links in old emails keep working)."""
    return signing.dumps(int(user_id), salt=OPT_OUT_SALT)


def user_for_opt_out_token(token: str) -> int | None:
    try:
        value = signing.loads(token, salt=OPT_OUT_SALT)
    except signing.BadSignature:
        return None
    return value if isinstance(value, int) else None


def open_token(key: str) -> str:
    return signing.dumps(key, salt=OPEN_SALT)


def key_for_open_token(token: str) -> str | None:
    try:
        value = signing.loads(token, salt=OPEN_SALT)
    except signing.BadSignature:
        return None
    return value if isinstance(value, str) else None


def absolute(path: str) -> str:
    if not path or path.startswith(("http://", "https://")):
        return path or ""
    return (settings.SITE_URL or "").rstrip("/") + "/" + path.lstrip("/")


def _url(name: str, token: str) -> str:
    try:
        return absolute(reverse(f"personalization:{name}", args=[token]))
    except NoReverseMatch:
        return ""


def opt_out_url(user_id: int) -> str:
    return _url("notifications-unsubscribe", opt_out_token(user_id))


def open_url(key: str) -> str:
    return _url("notifications-open", open_token(key))


def opt_out(user_id: int) -> None:
    """Stop every notification to the user (the one-click link calls this)."""
    NotificationPreference.objects.update_or_create(user_id=user_id, defaults={"opted_out": True})


def mark_opened(key: str, now: datetime | None = None) -> bool:
    return bool(Notification.objects.filter(idempotency_key=key, opened_at__isnull=True)
                .update(opened_at=now or timezone.now()))


# == triggers ====================================================================================================
@dataclass
class Candidate:
    user_id: int
    subject: str  # what the message is about (part of the idempotency key)
    period: str | None = None  # part of the key; None: the user's local date
    items: list[str] | None = None  # None: the user's recommendations


def recommended_candidates(rule: NotificationRule, run: Run) -> list[Candidate]:
    since = run.now - timedelta(days=float(settings.NOTIFICATION_SCORE_WINDOW_DAYS))
    ids = (Event.objects.filter(user__isnull=False, occurred_at__gte=since, occurred_at__lte=run.now)
           .values_list("user_id", flat=True).distinct().order_by())
    return [Candidate(uid, "recommended") for uid in sorted(set(ids))]


def abandoned_cart_candidates(rule: NotificationRule, run: Run) -> list[Candidate]:
    now = run.now
    idle = now - timedelta(hours=float(settings.ABANDONED_CART_HOURS))
    oldest = now - timedelta(days=float(settings.ABANDONED_CART_MAX_DAYS))
    rows = (Event.objects.filter(user__isnull=False, event_type__in=[ADD, REMOVE, PURCHASE],
                                 occurred_at__gte=oldest, occurred_at__lte=now)
            .exclude(item_key="").order_by("user_id", "occurred_at", "id")
            .values_list("user_id", "item_key", "event_type", "occurred_at"))
    carts: dict[int, dict[str, datetime]] = defaultdict(dict)
    for uid, item, kind, when in rows.iterator(chunk_size=5000):
        if kind == ADD:
            carts[uid][item] = when
        else:
            carts[uid].pop(item, None)
    out = []
    for uid in sorted(carts):
        cart = carts[uid]
        if not cart:
            continue
        last = max(cart.values())
        if last > idle:
            continue  # still shopping
        items = sorted(cart, key=lambda k: cart[k], reverse=True)
        signature = ",".join(sorted(cart)) + "@" + last.isoformat()
        out.append(Candidate(uid, "cart:" + signature, period=last.date().isoformat(), items=items))
    return out


def refresh_availability(now: datetime) -> dict[str, datetime]:
    """Update the availability snapshot of watched items; returns restocked item -> when the restock was seen.

    Watched items are those viewed or carted by users in the look-back window. An item unavailable in the previous
    snapshot and available now is restocked at ``now``; restocks are remembered for ``BACK_IN_STOCK_NOTICE_DAYS``.
    The first run has no previous snapshot and so finds no restocks.
    """
    from personalization.catalog import get_catalog

    cache = caches[settings.CACHE_ALIAS]
    snapshot = cache.get(SNAPSHOT_KEY) or {}
    previous = set(snapshot.get("unavailable", ()))
    restocked = {k: datetime.fromisoformat(v) for k, v in (snapshot.get("restocked") or {}).items()}
    since = now - timedelta(days=float(settings.BACK_IN_STOCK_LOOKBACK_DAYS))
    watched = set(Event.objects.filter(user__isnull=False, event_type__in=[VIEW, ADD], occurred_at__gte=since,
                                       occurred_at__lte=now).exclude(item_key="")
                  .values_list("item_key", flat=True).distinct().order_by())
    checked = watched | previous
    available = get_catalog().available(checked) if checked else set()
    for key in previous & available:
        restocked[key] = now
    notice = timedelta(days=float(settings.BACK_IN_STOCK_NOTICE_DAYS))
    restocked = {k: t for k, t in restocked.items() if k in available and now - notice <= t}
    cache.set(SNAPSHOT_KEY, {"unavailable": sorted(watched - available),
                             "restocked": {k: t.isoformat() for k, t in restocked.items()},
                             "at": now.isoformat()}, timeout=None)
    return restocked


def back_in_stock_candidates(rule: NotificationRule, run: Run) -> list[Candidate]:
    restocked = run.restocked()
    if not restocked:
        return []
    since = run.now - timedelta(days=float(settings.BACK_IN_STOCK_LOOKBACK_DAYS))
    interest = (Event.objects.filter(user__isnull=False, item_key__in=list(restocked), event_type__in=[VIEW, ADD],
                                     occurred_at__gte=since, occurred_at__lte=run.now)
                .values_list("user_id", "item_key").distinct().order_by())
    bought = set(Event.objects.filter(user__isnull=False, item_key__in=list(restocked), event_type=PURCHASE,
                                      occurred_at__gte=min(restocked.values()), occurred_at__lte=run.now)
                 .values_list("user_id", "item_key", "occurred_at").order_by())
    bought_after = {(u, k) for u, k, t in bought if t >= restocked[k]}
    groups: dict[tuple[int, datetime], list[str]] = defaultdict(list)
    for uid, item in interest:
        if (uid, item) not in bought_after:
            groups[(uid, restocked[item])].append(item)
    return [
        Candidate(uid, "restock:" + ",".join(sorted(items)) + "@" + when.isoformat(),
                  period=when.date().isoformat(), items=sorted(items))
        for (uid, when), items in sorted(groups.items())
    ]


TRIGGERS = {
    Trigger.RECOMMENDED: recommended_candidates,
    Trigger.ABANDONED_CART: abandoned_cart_candidates,
    Trigger.BACK_IN_STOCK: back_in_stock_candidates,
}


# == a run =======================================================================================================
class Run:
    """State shared by the rules of one run: the time, the scorer, the restocks seen (computed once)."""

    def __init__(self, now: datetime):
        self.now = now
        self.scorer = Scorer(now)
        self._restocked: dict[str, datetime] | None = None

    def restocked(self) -> dict[str, datetime]:
        if self._restocked is None:
            self._restocked = refresh_availability(self.now)
        return self._restocked


def template_prefix(rule: NotificationRule) -> str:
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
    from personalization.delivery.channels import Message, SkipMessage

    items = _items(keys)
    reasons = extra.get("reasons") or {}
    for item in items:
        item["reason"] = reasons.get(item["key"], "")
    context = {
        "user": user, "rule": rule, "trigger": rule.trigger, "items": items, "item": items[0] if items else None,
        "site_url": (settings.SITE_URL or "").rstrip("/"), "opt_out_url": opt_out_url(user.pk),
        "open_url": open_url(key),
    }
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
    from django.core.exceptions import ImproperlyConfigured

    from personalization.delivery.channels import get_channel

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
