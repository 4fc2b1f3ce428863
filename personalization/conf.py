"""Settings of the app: documented defaults overlaid by the host's ``PERSONALIZATION`` dict.

Read them as ``from personalization.conf import settings; settings.EVENT_TYPES``. Unknown keys are rejected
(a typo must not silently fall back to a default), dotted paths are imported on first use, and everything is
reloaded when a test overrides ``PERSONALIZATION``.
"""

from __future__ import annotations

import difflib
import math
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from personalization.recommenders.defaults import (
    DEFAULT_EVENT_WEIGHTS,
    DEFAULT_MODELS,
    DEFAULT_VALUE_WEIGHTED_EVENTS,
)

DEFAULT_EVENT_TYPES: dict[str, dict[str, Any]] = {
    # weight: training weight of one event (recommenders.defaults); item: whether the event must name an item;
    # value_weighted: the weight is multiplied by the event's value (a rating of 5 weighs five ratings of 1).
    name: {"weight": weight, "item": name not in {"search"}, "value_weighted": name in DEFAULT_VALUE_WEIGHTED_EVENTS}
    for name, weight in DEFAULT_EVENT_WEIGHTS.items()
}

DEFAULTS: dict[str, Any] = {
    # --- events ---------------------------------------------------------------------------------------------
    "EVENT_TYPES": DEFAULT_EVENT_TYPES,  # replaces the whole table; use EXTRA_EVENT_TYPES to add custom types
    "EXTRA_EVENT_TYPES": {},
    "ITEM_TYPES": ["product"],  # the "<type>" part of item keys this site accepts
    "MAX_BATCH_SIZE": 500,  # events per API call
    "MAX_CONTEXT_BYTES": 2048,  # size of one event's JSON context
    "MAX_EVENT_AGE_SECONDS": 7 * 24 * 3600,  # older client timestamps are rejected (use the importer for history)
    "MAX_CLOCK_SKEW_SECONDS": 300,  # client timestamps further in the future are rejected
    # --- catalog --------------------------------------------------------------------------------------------
    "CATALOG_ADAPTER": "personalization.catalog.ModelCatalogAdapter",
    "CATALOG": {},  # item type -> {"model": "app.Model", "fields": {...}, "url_names": [...]} (README)
    # --- identity, context, privacy -------------------------------------------------------------------------
    "VISITOR_COOKIE_NAME": "pvid",
    "VISITOR_COOKIE_AGE": 365 * 24 * 3600,
    "VISITOR_COOKIE_REFRESH": 7 * 24 * 3600,  # re-sign (rotate) the cookie when its signature is older
    "VISITOR_COOKIE_SECURE": None,  # None: Secure when DEBUG is off
    "VISITOR_COOKIE_SALT": "personalization.visitor",
    "COUNTRY_HEADER": "HTTP_CF_IPCOUNTRY",  # CDN geo header; Accept-Language region is the fallback
    "IP_STORAGE": "truncate",  # "truncate" (IPv4 /24, IPv6 /48), "drop"
    "CONSENT_REQUIRED": False,
    "CONSENT_CALLBACK": "personalization.tracking.consent.cookie_consent",
    "CONSENT_COOKIE_NAME": "personalization_consent",
    "HONOR_DNT": False,
    "HONOR_GPC": True,
    "RETENTION_DAYS": None,  # events, recommendation logs, notifications, audit reports older than this are purged
    "CONTEXT_QUERY_PARAMS": ["utm_source", "utm_medium", "utm_campaign"],  # kept in stored page/referrer URLs
    "STORE_SEARCH_TEXT": False,  # False: a search's text is stored as a keyed hash ("query_hash") only
    # --- bots and abuse -------------------------------------------------------------------------------------
    "BOT_FILTER": True,
    "RATE_LIMIT_EVENTS": 300,  # events per visitor per window; above it events are dropped and counted
    "RATE_LIMIT_EVENTS_PER_IP": 3000,  # events per client IP per window, beside the per-visitor limit (None: off)
    "RATE_LIMIT_WINDOW": 60,
    "EVENTS_ALLOWED_ORIGINS": [],  # other origins (e.g. "https://app.example") whose pages may send events/ cookies
    "EXCLUDED_PATHS": ["/admin/", "/static/", "/media/", "/favicon.ico"],
    # --- collection -----------------------------------------------------------------------------------------
    "COLLECTOR_BACKEND": "personalization.tracking.collectors.DatabaseCollector",
    "REDIS_URL": None,  # for the Redis collector; falls back to Django's REDIS_URL setting
    "REDIS_STREAM_KEY": "personalization:events",
    "REDIS_DEDUPE_TTL": 24 * 3600,
    "FLUSH_BATCH_SIZE": 5000,
    "MIDDLEWARE_WRITE": "background",  # "background": page views written by a per-process thread; "inline"
    "BACKGROUND_FLUSH_SECONDS": 0.2,
    "CACHE_ALIAS": "default",
    # --- Redis faults (README "Faults"): every Redis connection the app makes, where its configuration sets none
    "REDIS_CONNECT_TIMEOUT": 0.3,  # seconds to open a connection
    "REDIS_SOCKET_TIMEOUT": 0.5,  # seconds to wait for a reply
    "REDIS_CIRCUIT_SECONDS": 5.0,  # after a failure, that Redis server is skipped on every path this long
    # --- training and the registry -----------------------------------------------------------------------------
    "TRAINING": {
        "window_days": 400,  # events older than this are not extracted (a year and the weeks around it: seasonality)
        "test_days": 14,  # the later window every version is validated on
        "half_life_days": 60.0,
        "scaling": "log",
        "models": {name: dict(params) for name, params in DEFAULT_MODELS.items()},
        "ranker": "gbdt",
        "candidates_per_model": 50,
        "min_events": 50,  # below this, training fails with a clear message
        "choose_configuration": True,  # compare orderings (ranker, blends, no ranker) on a validation window
        "choose_min_users": 300,  # ... only with at least this many validation users (fewer: the ranker stays)
        "refit_full": True,  # after validation, refit on all data (test window included) for serving
        "eval_max_users": 10_000,  # test-window users scored per model: a seeded sample (None: all of them)
        "extract_connections": 2,  # PostgreSQL: connections extracting slices of a large window in parallel
        "stale_after_seconds": 120,  # a training run whose heartbeat is silent this long lost its process: failed
        "queued_after_seconds": 15 * 60,  # a queued version no worker started in this time is failed
        # True: the ranker also learns from served lists (RecommendationLog): items clicked from a list are positives,
        # items shown and skipped negatives, with their list position as a feature (0 at serving); docs/feedback.md
        "impression_feedback": False,
        # True: the ranker also reads the request's context (hour of day, weekday, device, country) and each
        # candidate's lift in it; lists are then cached per context bucket and not precomputed (README "Which ranker
        # features stay")
        "context_features": False,
        # True: visits (a visitor without a long-term profile, with a session history) are ordered by a second ranker
        # trained on every next click of recent visits, with session features; known users keep the user ranker
        # (README "Session ranker")
        "session_ranker": True,
    },
    "PROMOTION_METRIC": "ndcg@10",
    "PROMOTION_MARGIN": 0.0,  # a new version must beat the live one by more than this (absolute)
    "ARTIFACT_STORAGE": None,  # None: a private folder beside MEDIA_ROOT; a STORAGES alias, dotted path or dict
    "ARTIFACT_DIR": "personalization/models",  # folder inside ARTIFACT_STORAGE
    "RANDOM_STATE": 42,
    # --- insight: SHAP explanations and bias reports (README "Insight: explanations and bias report") -------------
    "INSIGHTS": {
        "explain_features": 3,  # explain=1: at most this many SHAP-top features (as sentences) per item
        "shap_sample_rows": 2000,  # per version: (visitor, item) rows behind the mean |SHAP| per feature
        "bias_k": 10,  # per version: list length of the bias report's NDCG@k / recall@k and exposure
        "bias_max_users": 5000,  # per version: test-window visitors in the bias report (a seeded sample)
        "top_countries": 10,  # countries reported one by one; the rest are "other"
        "low_quality_ratio": 0.5,  # a segment below this share of the overall NDCG@k is flagged in the admin
        "min_segment_users": 10,  # ... when it holds at least this many evaluated visitors
        "sentences": {},  # feature-name pattern -> sentence, tried before the built-in table (docs/insight.md)
    },
    # --- delivery: template tags, content blocks, layouts -------------------------------------------------------
    "HYDRATE": False,  # True: tags render placeholders that hydrate.js fills (one API request per page)
    "DELIVERY": {
        "control_share": 0.1,  # share of visitors who get a uniformly random variant (a ContentBlock row wins)
        "sticky_seconds": 24 * 3600,  # a visitor keeps the variant chosen for a block this long
        "affinity_weight": 1.0,  # how much a variant's category affinity adds to its Thompson sample (0..1)
        "affinity_events": 50,  # recent events read to score a visitor's categories
        "layouts": {},  # layout name -> {"pinned": {section: position (1-based)}}; overrides the template's pins
    },
    # --- integrations ---------------------------------------------------------------------------------------
    "SEGMENT_WRITE_KEY": None,
    "SEGMENT_EVENT_MAP": {
        "Product Viewed": "view",
        "Product Clicked": "click",
        "Product Added": "add_to_cart",
        "Product Removed": "remove_from_cart",
        "Order Completed": "purchase",
        "Products Searched": "search",
        "Product List Viewed": "impression",
    },
    "SEGMENT_ITEM_TYPE": "product",
    # --- serving and the REST API (README "Serving") ---------------------------------------------------------------
    "SLOTS": {"default": {}},  # slot -> business rules (serving.SLOT_DEFAULTS); the API rejects other slots
    "RECOMMENDATION_CACHE_SECONDS": 300,  # per visitor and slot; new actions and new models change the key
    "RECOMMENDATION_POOL": 50,  # at least this many candidates (4 x n when larger) go through the rules
    "SESSION_HISTORY_LENGTH": 20,  # recent item events used as the visitor's session history
    "CATALOG_CACHE_SECONDS": 60,  # item availability, category, price and brand used by the rules
    "RECOMMENDATION_LOG_WRITE": "background",  # RecommendationLog rows: "background" thread, "inline" or "off"
    "PRECOMPUTE_ON_PROMOTION": True,  # run personalization.precompute_recommendations when a model goes live
    "PRECOMPUTE_DAYS": 7,  # visitors active this recently get their lists precomputed
    "PRECOMPUTE_MAX_VISITORS": 20000,
    "PRECOMPUTE_BATCH_SIZE": 200,  # visitors per database read and cache write (the model is asked per visitor)
    "PRECOMPUTE_SLOTS": None,  # slot names to precompute; None: every slot in SLOTS
    "API_RATE_VISITOR": "1200/min",  # DRF throttle rate of the recommendation API per visitor ...
    "API_RATE_IP": "6000/min",  # ... and per client IP (None disables either)
    "NEAR_CACHE": True,  # on Django's RedisCache: keep serving's entries in-process, invalidated by Redis (README)
    "NEAR_CACHE_SECONDS": 60,  # longest life of a near-cache entry (it never outlives its Redis TTL either)
    "NEAR_CACHE_MAX_BYTES": 32 * 1024 * 1024,  # per process: serialized size of the kept entries (oldest go first)
    # --- learning loop: online measurement and A/B tests (docs/online_measurement.md) -----------------------------
    "ATTRIBUTION_WINDOW_HOURS": 24,  # a cart or purchase counts for a list served this recently to the same subject
    "CLICK_SESSION_MINUTES": 30,  # a click counts for a list served this recently (the session) to the same subject
    "EXPERIMENT_REFRESH_SECONDS": 5.0,  # each process re-reads the running A/B tests this often

    # --- updates between retrains (README "Learning loop: updates between retrains") -------------------------------
    "UPDATE_INTERVAL_SECONDS": 60,  # personalization.update_models folds new events into the live model; 0: off
    "UPDATE_MAX_EVENTS": 20000,  # events folded in per run at most (the rest wait for the next run)
    "UPDATE_LOCK_SECONDS": 60,  # a run whose heartbeat stopped this long ago is taken for dead: the next one goes ahead
    # --- notifications (README "Notifications") ------------------------------------------------------------------
    "NOTIFICATION_CHANNELS": {  # channel name (NotificationRule.channel) -> dotted path of a NotificationChannel
        "email": "personalization.delivery.channels.EmailChannel",
        "inbox": "personalization.delivery.channels.InboxChannel",
        "webhook": "personalization.delivery.channels.WebhookChannel",
    },
    "NOTIFICATION_FROM_EMAIL": None,  # None: Django's DEFAULT_FROM_EMAIL
    "SITE_URL": "http://localhost:8000",  # absolute base of links in messages (item pages, opt-out, open pixel)
    "WEBHOOK_URL": None,  # the webhook channel POSTs signed JSON here
    "WEBHOOK_SECRET": None,  # HMAC-SHA256 key of X-Personalization-Signature; required by the webhook channel
    "WEBHOOK_TIMEOUT": 5.0,  # seconds
    "OPT_OUT_TOKEN_MAX_AGE": 180 * 24 * 3600,  # opt-out links expire after this many seconds (None: never)
    "NOTIFICATION_ITEMS": 4,  # items per message
    "NOTIFICATION_SCORE_WINDOW_DAYS": 90,  # events older than this do not count towards the engagement score
    "NOTIFICATION_SCORE_WEIGHTS": {  # logistic of RFM features when there is no live model (README)
        "intercept": -1.0, "recency_days": -0.15, "log_frequency": 0.6, "log_active_days": 0.4, "log_monetary": 0.2,
    },
    "NOTIFICATION_MODEL_WEIGHT": 0.5,  # share of the live ranker's propensity in the score when a model is live
    "ABANDONED_CART_HOURS": 4,  # a cart untouched this long is abandoned ...
    "ABANDONED_CART_MAX_DAYS": 7,  # ... until it is this old (older carts are left alone)
    "BACK_IN_STOCK_LOOKBACK_DAYS": 30,  # items viewed or carted this recently are watched for restocks
    "BACK_IN_STOCK_NOTICE_DAYS": 2,  # a restock is announced (deferred past quiet hours) for this long
    # --- data audits (README "Insight: data audits and export"; docs/audit_export.md) --------------------------------
    # [warn, fail] pairs: the check warns above the first number and fails above the second (attributed_share: below)
    "AUDIT": {
        "baseline_days": 28,  # the usual range comes from this many days before the audited period
        "min_history_days": 7,  # with fewer days of history the volume check reports but does not judge
        "volume_k_warn": 4.0,  # an hour's count outside median +- k * MAD of the same hour on the baseline days ...
        "volume_k_fail": 8.0,
        "volume_min_change": 20,  # ... and at least this many events away from the median
        "duplicate_rate": [0.05, 0.2],  # repeats / (stored + repeats)
        "bot_share": [0.3, 0.6],  # of events received
        "rate_limited_share": [0.01, 0.05],
        "unknown_item_share": [0.01, 0.05],  # of events naming an item the catalog manages
        "unavailable_item_share": [0.25, 0.6],
        "future_tolerance_seconds": 60,  # stamped later than arrival + this: "future"
        "future_share": [0.005, 0.05],
        "late_seconds": 3600,  # arrived later than this after it happened: "late"
        "late_share": [0.05, 0.2],
        "context_sample": 50_000,  # latest events of the period whose context is inspected
        "context_missing_share": [0.05, 0.25],
        "context_malformed_share": [0.01, 0.05],
        "max_events_per_minute": 120,  # one visitor above this in a minute is not a person
        "impossible_rate_share": [0.0, 0.01],  # share of events in such minutes
        "attribution_types": ["impression", "click"],  # reported
        "attributed_share": {"impression": [0.9, 0.5]},  # judged: warn below the first share, fail below the second
    },

    # --- drift and the learning loop (README "Learning loop: drift and schedules", docs/drift.md) -------------------
    "DRIFT_RECENT_HOURS": 24,  # recent traffic compared with the live version's training window (PSI, KS)
    "DRIFT_BASELINE_DAYS": 14,  # ... whose last this-many days are the baseline (a 365-day window would be slow)
    "DRIFT_MIN_EVENTS": 500,  # fewer recent events than this: PSI/KS are not computed (too noisy)
    "DRIFT_PSI_THRESHOLD": 0.2,  # population stability index above this is drift (0.1 moderate, 0.25 major)
    "DRIFT_PSI_TOP_ITEMS": 50,  # items: the most frequent ones each get a bin, the rest share one
    "DRIFT_KS_THRESHOLD": 0.1,  # Kolmogorov-Smirnov statistic above this (and p < 0.01) is drift
    "DRIFT_ADWIN_DELTA": 0.002,  # ADWIN's confidence on each slot's click stream (smaller: fewer, surer alarms)
    "DRIFT_ADWIN_MIN_IMPRESSIONS": 200,  # a slot's click stream needs this many impressions before an alarm counts
    "DRIFT_CLICK_SECONDS": 1800,  # an impression joins the click stream once this old (its click had time to come)
    "DRIFT_METRIC_DROP": 0.3,  # the live model's daily re-evaluation below (1 - this) x its validation metric: drift
    "DRIFT_RETRAIN": True,  # a detection queues a retrain (and tells staff in the admin)
    "DRIFT_RETRAIN_MIN_HOURS": 6,  # at most one retrain triggered by drift per this many hours
    # --- the admin dashboard (README "Insight: the admin dashboard", docs/dashboard.md) ---------------------------
    "DASHBOARD": {
        "event_days": 30,  # days of the "events per day" plot
        "ctr_days": 14,  # days of events attributed to served lists (CTR and conversion per slot and version)
        "counter_days": 7,  # days of the ingestion counters (bots, rate-limited; the cache keeps 8)
        "versions": 20,  # most recent evaluated model versions in the offline-metrics plot
        "cache_seconds": 60,  # a panel's figure is reused this long while its data has not changed
    },
}

IMPORT_STRINGS = {"CATALOG_ADAPTER", "COLLECTOR_BACKEND", "CONSENT_CALLBACK"}
MERGED_DICTS = {"TRAINING", "DELIVERY", "INSIGHTS", "AUDIT", "DASHBOARD"}  # laid over the defaults key by key


#: Largest absolute training weight of one event type (EVENT_TYPES, EXTRA_EVENT_TYPES and the dashboard's form):
#: weights are relative, and a huge one drowns every other signal in the interaction matrix.
EVENT_WEIGHT_LIMIT = 100.0


def event_weight_errors(weights: Any, known: Any) -> dict[str, str]:
    """Problems of a table of training weights (event type -> number), by event type ("" for the table itself).

    A weight must be a finite number (not a bool) within +-EVENT_WEIGHT_LIMIT, for an event type in ``known``.
    Shared by the system check (personalization.E090) and the dashboard's weights form.
    """
    if not isinstance(weights, dict):
        return {"": f"must be a dict of event type -> weight, not {type(weights).__name__}"}
    errors: dict[str, str] = {}
    known = set(known)
    for name, value in weights.items():
        if name not in known:
            errors[str(name)] = f"unknown event type {name!r}; known: {', '.join(sorted(known))}"
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            errors[name] = f"weight must be a finite number, not {value!r}"
        elif not -EVENT_WEIGHT_LIMIT <= value <= EVENT_WEIGHT_LIMIT:
            errors[name] = (f"weight {value:g} is out of range: keep it within "
                            f"-{EVENT_WEIGHT_LIMIT:g}..{EVENT_WEIGHT_LIMIT:g}")
    return errors


class PersonalizationSettings:
    """Lazy, cached view of DEFAULTS overlaid by ``settings.PERSONALIZATION``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}
        self._user: dict[str, Any] | None = None
        self._lock = threading.RLock()

    @property
    def user_settings(self) -> dict[str, Any]:
        if self._user is None:
            user = getattr(django_settings, "PERSONALIZATION", {}) or {}
            if not isinstance(user, dict):
                raise ImproperlyConfigured("settings.PERSONALIZATION must be a dict.")
            unknown = sorted(set(user) - set(DEFAULTS))
            if unknown:
                hints = []
                for key in unknown:
                    close = difflib.get_close_matches(key, DEFAULTS, n=1)
                    hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
                raise ImproperlyConfigured(
                    "Unknown key(s) in settings.PERSONALIZATION: " + ", ".join(hints)
                    + ". See the README's settings table for the valid keys."
                )
            self._user = dict(user)
        return self._user

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or attr not in DEFAULTS:
            raise AttributeError(f"Invalid personalization setting: {attr!r}")
        if attr in self._cache:
            return self._cache[attr]
        value = self.user_settings.get(attr, DEFAULTS[attr])
        if attr in MERGED_DICTS and value is not DEFAULTS[attr]:
            if not isinstance(value, dict):
                raise ImproperlyConfigured(f"PERSONALIZATION[{attr!r}] must be a dict.")
            unknown = sorted(set(value) - set(DEFAULTS[attr]))
            if unknown:
                raise ImproperlyConfigured(
                    f"Unknown key(s) in PERSONALIZATION[{attr!r}]: {', '.join(unknown)}; "
                    f"valid: {', '.join(sorted(DEFAULTS[attr]))}."
                )
            value = {**DEFAULTS[attr], **value}
        if attr in IMPORT_STRINGS and isinstance(value, str):
            try:
                value = import_string(value)
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f"PERSONALIZATION[{attr!r}] = {value!r} cannot be imported: {exc}"
                ) from exc
        self._cache[attr] = value
        return value

    @property
    def event_types(self) -> dict[str, dict[str, Any]]:
        """All accepted event types (base table plus EXTRA_EVENT_TYPES)."""
        if "_event_types" not in self._cache:
            merged = {**self.EVENT_TYPES, **self.EXTRA_EVENT_TYPES}
            problems = {n: p for n, p in event_weight_errors(
                {n: s.get("weight", 0.0) for n, s in merged.items()}, merged).items() if "finite number" in p}
            if problems:  # not a number at all (E090 reports it, and a weight out of range, with a hint)
                raise ImproperlyConfigured("Bad event type weight(s): " + "; ".join(
                    f"EVENT_TYPES[{n!r}]: {p}" for n, p in problems.items()))
            self._cache["_event_types"] = {
                name: {"weight": float(spec.get("weight", 0.0)), "item": bool(spec.get("item", True)),
                       "value_weighted": bool(spec.get("value_weighted", False))}
                for name, spec in merged.items()
            }
        return self._cache["_event_types"]

    @property
    def event_weights(self) -> dict[str, float]:
        return {name: spec["weight"] for name, spec in self.event_types.items()}

    @property
    def value_weighted_events(self) -> list[str]:
        """Event types whose training weight is multiplied by the event's value (ratings, by default)."""
        return sorted(name for name, spec in self.event_types.items() if spec["value_weighted"])

    def derived(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per settings generation: objects built from the settings (the collector, the catalog
        adapter, serving's item table) live here, so a reload drops them and this module knows none of them."""
        key = f"_derived:{key}"
        try:
            return self._cache[key]
        except KeyError:
            pass
        with self._lock:  # threads of one process share one instance (a collector holds a connection pool)
            if key not in self._cache:
                self._cache[key] = compute()
            return self._cache[key]

    def reload(self) -> None:
        self._cache.clear()
        self._user = None


settings = PersonalizationSettings()


def reload_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver (connected in ``AppConfig.ready()``): drop the settings and everything derived."""
    if setting in {"PERSONALIZATION", "DEBUG", "CACHES"}:
        settings.reload()
