"""System checks: configuration mistakes are reported at start-up with a hint, not found in production."""

from __future__ import annotations

import difflib
import importlib.util
import re
from typing import Any

from django.conf import settings as django_settings
from django.core.checks import Error, Info, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

MIDDLEWARE_PATHS = {
    "personalization.middleware.TrackingMiddleware",
    "personalization.tracking.middleware.TrackingMiddleware",
}


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list:
    from personalization.conf import settings

    errors: list = []
    try:
        settings.reload()
        settings.user_settings  # noqa: B018 - validates unknown keys
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="Fix the PERSONALIZATION setting.", id="personalization.E001")]

    for name in ("CATALOG_ADAPTER", "COLLECTOR_BACKEND", "CONSENT_CALLBACK"):
        try:
            getattr(settings, name)
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), hint="Give a dotted path to an importable class or function.",
                                id="personalization.E002"))

    from personalization.catalog import ModelCatalogAdapter, get_catalog

    try:
        adapter = get_catalog()
        if isinstance(adapter, ModelCatalogAdapter):
            adapter.types  # noqa: B018 - resolves the models named in CATALOG
            if not adapter.types:
                errors.append(Warning(
                    'PERSONALIZATION["CATALOG"] is empty: no page will record views and no item has features.',
                    hint='Add e.g. {"product": {"model": "shop.Product", "url_names": ["shop:product"]}}.',
                    id="personalization.W002",
                ))
    except (ImproperlyConfigured, TypeError) as exc:
        errors.append(Error(str(exc), hint="Fix PERSONALIZATION['CATALOG'] or CATALOG_ADAPTER.",
                            id="personalization.E003"))

    if not MIDDLEWARE_PATHS & set(getattr(django_settings, "MIDDLEWARE", [])):
        errors.append(Warning(
            "TrackingMiddleware is not installed: page views are not recorded and visitors get no cookie.",
            hint='Add "personalization.middleware.TrackingMiddleware" to MIDDLEWARE after AuthenticationMiddleware.',
            id="personalization.W001",
        ))

    caches = getattr(django_settings, "CACHES", {})
    backend = caches.get(settings.CACHE_ALIAS, {}).get("BACKEND", "")
    if not backend:
        errors.append(Error(f"Cache alias {settings.CACHE_ALIAS!r} is not configured.",
                            hint="Configure it in CACHES or set PERSONALIZATION['CACHE_ALIAS'].",
                            id="personalization.E004"))
    elif backend.endswith("DummyCache"):
        errors.append(Warning(
            "Tracking and serving use a DummyCache: rate limits, bot counters and recommendation caching are off.",
            hint="Use Redis (or local memory for a single process).", id="personalization.W003",
        ))
    for name in {**settings.EVENT_TYPES, **settings.EXTRA_EVENT_TYPES}:  # raw: a bad weight is E090, not a crash
        if not name.isidentifier() or len(name) > 32:
            errors.append(Error(f"Event type {name!r} must be an identifier of at most 32 characters.",
                                id="personalization.E005"))
    if settings.CONSENT_REQUIRED and not callable(settings.CONSENT_CALLBACK):
        errors.append(Error("CONSENT_REQUIRED is on but CONSENT_CALLBACK is not callable.", id="personalization.E006"))
    if settings.IP_STORAGE not in {"truncate", "drop"}:
        errors.append(Error(f"IP_STORAGE must be 'truncate' or 'drop', not {settings.IP_STORAGE!r}.",
                            id="personalization.E007"))
    cap = settings.TRAINING["eval_max_users"]
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        errors.append(Error(f"TRAINING['eval_max_users'] must be a positive integer or None, not {cap!r}.",
                            hint="E.g. 10000: each model is scored on a seeded sample of that many test-window "
                                 "users; None scores all of them (slow on large sites).",
                            id="personalization.E008"))
    workers = settings.TRAINING["extract_connections"]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        errors.append(Error(f"TRAINING['extract_connections'] must be a positive integer, not {workers!r}.",
                            hint="1 extracts training events over one database connection; 2 (the default) "
                                 "copies a large window in two time slices at once.",
                            id="personalization.E009"))
    for name in ("NEAR_CACHE_SECONDS", "NEAR_CACHE_MAX_BYTES"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            errors.append(Error(f"{name} must be a positive number, not {value!r}.",
                                hint="Set NEAR_CACHE to False to turn the near cache off.",
                                id="personalization.E010"))
    days = settings.RETENTION_DAYS
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        errors.append(Error(f"RETENTION_DAYS must be a positive number of days or None, not {days!r}.",
                            hint="E.g. 395 purges events, recommendation logs and notifications older than 13 "
                                 "months every night; None keeps them.", id="personalization.E030"))
    return errors


@register(Tags.caches, deploy=True)
def check_cache_scope(app_configs: Any = None, **kwargs: Any) -> list:
    """I003 (``check --deploy``): a local-memory cache is per process, which a deployment with several workers
    should know. Not on every command: for one process (runserver) it is fine."""
    from personalization.conf import settings

    try:
        backend = getattr(django_settings, "CACHES", {}).get(settings.CACHE_ALIAS, {}).get("BACKEND", "")
    except Exception:  # noqa: BLE001 - E001/E004 report broken settings
        return []
    if not backend.endswith("LocMemCache"):
        return []
    return [Info(
        f"Cache alias {settings.CACHE_ALIAS!r} is local memory: each process keeps its own copy, so rate limits, "
        "bot counters and cached recommendations are per process (a model trained in another process is still "
        "served within seconds: serving then reads the live version from the database).",
        hint="Fine for one server process (runserver, one gunicorn worker). With several workers or servers, use "
             "Redis: CACHES = {'default': {'BACKEND': 'django.core.cache.backends.redis.RedisCache', "
             "'LOCATION': 'redis://127.0.0.1:6379/1'}}.",
        id="personalization.I003",
    )]


@register(Tags.security)
def check_artifact_storage(app_configs: Any = None, **kwargs: Any) -> list:
    """E031: model artifacts (every visitor's interactions, a pickled ranker) must not be publicly servable."""
    from personalization.artifact_storage import artifact_storage, public_exposure
    from personalization.conf import settings

    try:
        settings.user_settings  # noqa: B018 - broken settings are E001's to report
    except ImproperlyConfigured:
        return []
    try:
        storage = artifact_storage()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="Fix PERSONALIZATION['ARTIFACT_STORAGE'].", id="personalization.E031")]
    reasons = public_exposure(storage)
    if not reasons:
        return []
    return [Error(
        "Model artifacts could be served publicly: the artifact storage's " + "; ".join(reasons) + ".",
        hint="Leave PERSONALIZATION['ARTIFACT_STORAGE'] unset (a private folder beside MEDIA_ROOT), or point it at "
             "a storage no URL serves: a folder outside MEDIA_ROOT and STATIC_ROOT without base_url, or a "
             "private bucket (default_acl 'private', signed URLs).",
        id="personalization.E031",
    )]


REDIS_CACHES = {
    # backend -> (OPTIONS key of the connect timeout, of the read timeout)
    "django.core.cache.backends.redis.RedisCache": ("socket_connect_timeout", "socket_timeout"),
    "django_redis.cache.RedisCache": ("SOCKET_CONNECT_TIMEOUT", "SOCKET_TIMEOUT"),
}


@register(Tags.caches)
def check_redis_timeouts(app_configs: Any = None, **kwargs: Any) -> list:
    """W009: the app's Redis cache has no connect or read timeout in OPTIONS (a hung Redis would hold every page
    that touches it); E014: the app's own Redis timeouts and circuit time must be positive numbers."""
    from personalization.conf import settings

    messages: list = []
    try:
        for name in ("REDIS_CONNECT_TIMEOUT", "REDIS_SOCKET_TIMEOUT", "REDIS_CIRCUIT_SECONDS"):
            value = getattr(settings, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                messages.append(Error(f"{name} must be a positive number of seconds, not {value!r}.",
                                      hint="The defaults are 0.3, 0.5 and 5.", id="personalization.E014"))
        config = getattr(django_settings, "CACHES", {}).get(settings.CACHE_ALIAS, {})
    except Exception:  # noqa: BLE001 - E001/E004 report broken settings
        return messages
    keys = REDIS_CACHES.get(config.get("BACKEND", ""))
    if keys is None:
        return messages
    options = config.get("OPTIONS") or {}
    missing = [key for key in keys if options.get(key) is None]
    if missing:
        ours = "the app's own use of it gets" if "django.core" in config["BACKEND"] else "the app cannot add"
        messages.append(Warning(
            f"Cache alias {settings.CACHE_ALIAS!r} is Redis without {' and '.join(missing)} in OPTIONS: a Redis that "
            f"accepts connections but never answers would hold every request that touches the cache ({ours} "
            "REDIS_CONNECT_TIMEOUT / REDIS_SOCKET_TIMEOUT and a circuit breaker; the rest of the site does not).",
            hint=f"Add sub-second timeouts, e.g. CACHES[{settings.CACHE_ALIAS!r}]['OPTIONS'] = "
                 f"{{{keys[0]!r}: 0.3, {keys[1]!r}: 0.5}}.",
            id="personalization.W009",
        ))
    return messages


# -- what breaks serving at run time: the catalog's field paths and URL names, the middleware's place, template slots

AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


def _catalog_types() -> dict[str, Any]:
    """The item types of the default catalog adapter; {} when another adapter or a broken CATALOG (E002/E003)."""
    from personalization.catalog import ModelCatalogAdapter, get_catalog

    try:
        adapter = get_catalog()
        return dict(adapter.types) if isinstance(adapter, ModelCatalogAdapter) else {}
    except Exception:  # noqa: BLE001 - reported by check_settings
        return {}


def _field_names(model: Any) -> list[str]:
    """The names a path may use on ``model``: its fields and relations (forward and reverse)."""
    return sorted({f.name for f in model._meta.get_fields()} | {f.attname for f in model._meta.concrete_fields})


def _unknown_part(model: Any, path: str, *, attributes: bool) -> tuple[Any, str] | None:
    """(model, part) of the first part of ``path`` that ``model`` (or the related model it leads to) lacks; None
    when every part resolves. ``attributes``: attributes and methods count too (read off objects, not by SQL).
    After a plain field, an attribute or a method the path is not followed (transforms, values' attributes)."""
    from django.core.exceptions import FieldDoesNotExist

    current = model
    for part in path.split("__"):
        try:
            field = current._meta.get_field(part)
        except FieldDoesNotExist:
            if attributes and hasattr(current, part):
                return None
            if part in {f.attname for f in current._meta.concrete_fields}:
                return None
            return current, part
        if not field.is_relation or field.related_model is None:
            return None
        current = field.related_model
    return None


def _path_error(item_type: Any, name: str, path: Any) -> Error | None:
    """E012 when ``fields[name]``'s ``path`` does not resolve on the type's model as the catalog adapter reads it."""
    from django.core.exceptions import FieldError

    model, where = item_type.model, f'PERSONALIZATION["CATALOG"][{item_type.name!r}]["fields"][{name!r}]'
    if not isinstance(path, str) or not path:
        return Error(f"{where} is {path!r}: give a field path of {model._meta.label} as a string.",
                     hint='E.g. "name", "category__slug" (a relation), or for url/image "get_absolute_url".',
                     id="personalization.E012")
    from personalization.catalog import OBJECT_FIELDS

    attributes = name in OBJECT_FIELDS
    missing = _unknown_part(model, path, attributes=attributes)
    if missing is None and not attributes:
        try:  # what serving runs: the adapter reads these fields with values(); no query is made here
            model._default_manager.all().values(path)
        except FieldError as exc:
            return Error(f"{where} = {path!r}: {exc}", hint=f"Fix the path of {model._meta.label}.",
                         id="personalization.E012")
        except Exception:  # noqa: BLE001 - a manager that cannot build a queryset here is not the path's fault
            return None
    if missing is None:
        return None
    owner, part = missing
    choices = _field_names(owner) + ([n for n in dir(owner) if not n.startswith("_")] if attributes else [])
    close = difflib.get_close_matches(part, choices, n=1)
    did_you_mean = f"did you mean {close[0]!r}? " if close else ""
    return Error(
        f"{where} = {path!r}: {owner._meta.label} has no {'attribute' if attributes else 'field'} {part!r}; "
        f"{did_you_mean}its fields: {', '.join(_field_names(owner))}.",
        hint=("Name a field, property or method (url: get_absolute_url), following relations with __."
              if attributes else "Name a field, following relations with __ (brand__name); remove the entry when "
              "the model has no such data (properties and methods are read only for url and image)."),
        id="personalization.E012",
    )


@register(Tags.models)
def check_catalog_fields(app_configs: Any = None, **kwargs: Any) -> list:
    """E012: every path of ``CATALOG[type]["fields"]`` resolves on the type's model; W008: unused field names.

    A wrong path passes start-up and then fails every request that reads the catalog (similar items answer 500,
    recommendations fall back, page views are lost)."""
    from personalization.catalog import DISPLAY_FIELDS, FEATURE_FIELDS

    known = dict.fromkeys((*FEATURE_FIELDS, *DISPLAY_FIELDS))
    messages: list = []
    for item_type in _catalog_types().values():
        for name, spec in item_type.fields.items():
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                messages.append(Warning(
                    f'PERSONALIZATION["CATALOG"][{item_type.name!r}]["fields"] has {name!r}, which nothing reads'
                    + (f"; did you mean {close[0]!r}?" if close else "."),
                    hint=f"Known field names: {', '.join(known)}.", id="personalization.W008"))
                continue
            for path in (spec if isinstance(spec, (list, tuple)) and name == "text" else [spec]):
                error = _path_error(item_type, name, path)
                if error is not None:
                    messages.append(error)
    return messages


def _url_names(resolver: Any, prefix: str = "", outer: frozenset[str] = frozenset()) -> dict[str, list[set[str]]]:
    """Every view name of the URLconf as ``ResolverMatch.view_name`` spells it ("shop:product") -> the keyword
    argument names of each of its patterns (with the enclosing includes' arguments)."""
    names: dict[str, list[set[str]]] = {}
    for key in list(resolver.reverse_dict):
        if not isinstance(key, str):
            continue
        for possibilities, *_ in resolver.reverse_dict.getlist(key):
            for _, params in possibilities:
                names.setdefault(prefix + key, []).append(set(params) | outer)
    for namespace, (pattern, child) in resolver.namespace_dict.items():
        try:
            groups = frozenset(re.compile(pattern).groupindex)
        except re.error:
            groups = frozenset()
        for name, kwargs in _url_names(child, f"{prefix}{namespace}:", outer | groups).items():
            names.setdefault(name, []).extend(kwargs)
    return names


@register(Tags.urls)
def check_catalog_urls(app_configs: Any = None, **kwargs: Any) -> list:
    """E013: every ``url_names`` entry names a URL pattern; W005: one with the type's ``url_kwarg``.

    The middleware recognises an item page by the matched view's name and reads the item id from ``url_kwarg``:
    a wrong name or argument records no page view and raises no error."""
    from django.urls import get_resolver

    types = [t for t in _catalog_types().values() if t.url_names]
    if not types:
        return []
    try:
        names = _url_names(get_resolver())
    except Exception:  # noqa: BLE001 - a broken URLconf is reported by Django's own checks
        return []
    messages: list = []
    for item_type in types:
        where = f'PERSONALIZATION["CATALOG"][{item_type.name!r}]["url_names"]'
        for name in item_type.url_names:
            if name not in names:
                close = difflib.get_close_matches(str(name), names, n=3)
                messages.append(Error(
                    f"{where} has {name!r}, which is not the name of a URL pattern: its pages record no views.",
                    hint=(f"Did you mean {' or '.join(map(repr, close))}? " if close else "")
                    + "Give the name reverse() takes, with its namespace (\"shop:product\" for "
                      "path(\"p/<int:pk>/\", views.product, name=\"product\") in a urls.py with app_name = \"shop\").",
                    id="personalization.E013"))
            elif not any(item_type.url_kwarg in params for params in names[name]):
                found = sorted(set().union(*names[name]))
                messages.append(Warning(
                    f"URL {name!r} ({where}) has no argument {item_type.url_kwarg!r} "
                    f"(url_kwarg of {item_type.name!r}): its pages record no views.",
                    hint=f"Set \"url_kwarg\" to one of its arguments: {', '.join(found) or 'none'}; or name a URL "
                         f"with <{item_type.url_kwarg}> in its path.",
                    id="personalization.W005"))
    return messages


@register(Tags.compatibility)
def check_middleware_order(app_configs: Any = None, **kwargs: Any) -> list:
    """W006: TrackingMiddleware runs after AuthenticationMiddleware, so page views know the signed-in user."""
    middleware = list(getattr(django_settings, "MIDDLEWARE", None) or [])
    ours = [i for i, path in enumerate(middleware) if path in MIDDLEWARE_PATHS]
    if not ours or AUTH_MIDDLEWARE not in middleware or ours[0] > middleware.index(AUTH_MIDDLEWARE):
        return []
    return [Warning(
        f"{middleware[ours[0]]} comes before AuthenticationMiddleware in MIDDLEWARE: it cannot see request.user, so "
        "signed-in customers' page views are recorded as anonymous and their history is not linked to them.",
        hint=f'Move "{middleware[ours[0]]}" after "{AUTH_MIDDLEWARE}".', id="personalization.W006")]


#: ``{% recommended_items ... %}`` / ``{% similar_items ... %}`` and their literal ``slot="..."``.
TAG_RE = re.compile(r"\{%\s*(recommended_items|similar_items)\b(.*?)%\}", re.DOTALL)
SLOT_RE = re.compile(r"""(?:^|\s)slot\s*=\s*(?:"([^"]*)"|'([^']*)'|(\S+))""")
TAG_DEFAULT_SLOT = {"recommended_items": "default", "similar_items": "similar"}
TEMPLATE_SCAN_MAX_FILES = 5000
TEMPLATE_SCAN_MAX_BYTES = 1 << 20


def template_slots() -> dict[str, list[str]]:
    """Literal slot names of the recommendation tags in the host's Django templates -> where ("file:line").

    Best effort: the directories of every DjangoTemplates engine (DIRS and apps' templates/, as Django's template
    autoreloader finds them); a slot given by a variable is skipped; unreadable files are skipped."""
    from django.template.autoreload import get_template_directories

    found: dict[str, list[str]] = {}
    seen = 0
    for directory in sorted(get_template_directories()):
        for path in sorted(directory.rglob("*")):
            if seen >= TEMPLATE_SCAN_MAX_FILES:
                return found
            try:
                if not path.is_file() or path.stat().st_size > TEMPLATE_SCAN_MAX_BYTES:
                    continue
                seen += 1
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if "recommended_items" not in text and "similar_items" not in text:
                continue
            for match in TAG_RE.finditer(text):
                slot = SLOT_RE.search(match.group(2))
                if slot is None:
                    name = TAG_DEFAULT_SLOT[match.group(1)]
                elif slot.group(3) is not None:
                    continue  # a variable: known only at render time
                else:
                    name = slot.group(1) if slot.group(1) is not None else slot.group(2)
                line = text.count("\n", 0, match.start()) + 1
                found.setdefault(name, []).append(f"{path}:{line}")
    return found


@register(Tags.templates)
def check_template_slots(app_configs: Any = None, **kwargs: Any) -> list:
    """W007: the slots the templates' recommendation tags name are configured in ``PERSONALIZATION["SLOTS"]``.

    An unknown slot is served with the default rules (and logged once per process): the tag still renders, but
    the rules the template author meant (length, categories, diversity) are not applied."""
    from personalization.conf import settings

    try:
        slots = settings.SLOTS
        used = template_slots()
    except Exception:  # noqa: BLE001 - a check that cannot read the templates says nothing
        return []
    messages = []
    for name, places in sorted(used.items()):
        if name in slots or (name == "default" and not slots):
            continue
        more = f" and {len(places) - 3} more" if len(places) > 3 else ""
        messages.append(Warning(
            f"Slot {name!r} is used by {', '.join(places[:3])}{more} but is not in PERSONALIZATION[\"SLOTS\"] "
            f"(configured: {', '.join(slots) or 'none'}): it is served with the default rules.",
            hint=f'Add "{name}": {{}} (or its rules, e.g. {{"n": 4}}) to PERSONALIZATION["SLOTS"].',
            id="personalization.W007"))
    return messages


@register(Tags.compatibility)
def check_training_runs(app_configs: Any = None, **kwargs: Any) -> list:
    """Training runs: a valid staleness limit, and a Celery worker seen lately when tasks go through a broker.

    The worker check reads the stamp workers write in the cache (``personalization.workers``) with a one-second
    timeout; it never pings the broker, so ``manage.py check`` stays fast and cannot hang.
    """
    import time

    from celery import current_app

    from personalization import workers
    from personalization.conf import settings

    try:
        limits = {key: settings.TRAINING[key] for key in ("stale_after_seconds", "queued_after_seconds")}
    except ImproperlyConfigured:
        return []  # check_settings reports the broken setting
    bad = [Error(f"TRAINING[{key!r}] must be a positive number of seconds, not {value!r}.",
                 hint="E.g. 120 and 900: a training run silent that long, and a queued one no worker started in that "
                      "time, are marked failed.", id="personalization.E020")
           for key, value in limits.items()
           if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0]
    if bad:
        return bad
    stale = limits["queued_after_seconds"]
    conf = current_app.conf
    if conf.task_always_eager or not conf.broker_url:
        return []  # tasks run in-process: there is no worker to miss
    try:
        seen = workers.last_seen(timeout=1.0)
    except Exception as exc:  # noqa: BLE001 - the cache's own errors, or no answer in time
        return [Warning(f"Could not read whether a Celery worker is running: {exc}.",
                        hint=f"Check the cache {settings.CACHE_ALIAS!r}.", id="personalization.W004")]
    if seen is not None and time.time() - seen <= stale:
        return []
    when = "has ever been seen" if seen is None else f"has been seen for {(time.time() - seen) / 60:.0f} minutes"
    return [Warning(
        f"A Celery broker is configured but no worker {when}: trainings queued now are marked failed after "
        f"{stale / 60:g} minutes, and the precompute after a promotion never runs.",
        hint="Start one (`celery -A <project> worker`), with the same cache as the web processes: workers record "
             "that they are alive in it (a per-process local-memory cache cannot share that). See the README, "
             '"Models and training".',
        id="personalization.W004",
    )]


@register(Tags.compatibility)
def check_impression_feedback(app_configs: Any = None, **kwargs: Any) -> list:
    """``TRAINING['impression_feedback']`` is a bool, and lists are logged when it is on (else it learns nothing)."""
    from personalization.conf import settings

    try:
        value = settings.TRAINING["impression_feedback"]
        log_write = settings.RECOMMENDATION_LOG_WRITE
    except ImproperlyConfigured:
        return []  # check_settings reports the broken setting
    if not isinstance(value, bool):
        return [Error(f"TRAINING['impression_feedback'] must be True or False, not {value!r}.",
                      hint="True: the ranker learns from the served lists' clicks and skips (docs/feedback.md).",
                      id="personalization.E100")]
    if value and log_write == "off":
        return [Warning("TRAINING['impression_feedback'] is on but RECOMMENDATION_LOG_WRITE is 'off': no served "
                        "list is logged, so training has no feedback to learn from.",
                        hint="Set RECOMMENDATION_LOG_WRITE to 'background' (the default) or 'inline'.",
                        id="personalization.W100")]
    return []


@register(Tags.compatibility)
def check_context_features(app_configs: Any = None, **kwargs: Any) -> list:
    """``TRAINING['context_features']`` is a bool (a truthy string would switch the cache keys per context)."""
    from personalization.conf import settings

    try:
        value = settings.TRAINING["context_features"]
    except ImproperlyConfigured:
        return []  # check_settings reports the broken setting
    if not isinstance(value, bool):
        return [Error(f"TRAINING['context_features'] must be True or False, not {value!r}.",
                      hint="True: the ranker reads the request's hour, weekday, device and country (README \"Which "
                           "ranker features stay\").", id="personalization.E120")]
    return []


@register(Tags.compatibility)
def check_session_ranker(app_configs: Any = None, **kwargs: Any) -> list:
    """``TRAINING['session_ranker']`` is a bool."""
    from personalization.conf import settings

    try:
        value = settings.TRAINING["session_ranker"]
    except ImproperlyConfigured:
        return []  # check_settings reports the broken setting
    if not isinstance(value, bool):
        return [Error(f"TRAINING['session_ranker'] must be True or False, not {value!r}.",
                      hint="True (the default): visits without a long-term profile are ordered by a ranker trained "
                           "on next clicks (README \"Session ranker\"); False: one ranker for everyone.",
                      id="personalization.E130")]
    return []


@register(Tags.compatibility)
def check_insights(app_configs: Any = None, **kwargs: Any) -> list:
    """E070: ``INSIGHTS`` sizes are positive integers, the quality ratio is in (0, 1], sentences map strings to
    strings; W070: shap is not installed, so explanations keep their source reason without SHAP sentences."""
    from personalization.conf import settings

    try:
        conf = settings.INSIGHTS
    except ImproperlyConfigured:
        return []  # E001 reports it
    errors: list = []
    for key in ("explain_features", "shap_sample_rows", "bias_k", "bias_max_users", "top_countries",
                "min_segment_users"):
        value = conf[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(Error(f"INSIGHTS[{key!r}] must be a positive integer, not {value!r}.",
                                hint="See docs/insight.md for what each size bounds.", id="personalization.E070"))
    ratio = conf["low_quality_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        errors.append(Error(f"INSIGHTS['low_quality_ratio'] must be a number in (0, 1], not {ratio!r}.",
                            hint="0.5 flags a segment whose NDCG@k is below half the overall.",
                            id="personalization.E070"))
    sentences = conf["sentences"]
    if not isinstance(sentences, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in sentences.items()
    ):
        errors.append(Error("INSIGHTS['sentences'] must map feature-name patterns to sentences (or None).",
                            hint='E.g. {"hour*": "Popular at this hour", "brand_*": "From a brand you like"}.',
                            id="personalization.E070"))
    try:
        import shap  # noqa: F401
    except ImportError:
        errors.append(Warning("shap is not installed: explanations (explain=1, explain_recommendation, the admin's "
                              "why page) give the source reason only, and versions get no SHAP summary.",
                              hint='pip install "django-personalization[explain]"', id="personalization.W070"))
    return errors


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _pair_error(name: str, pair: Any, *, falling: bool = False) -> str | None:
    """Why a [warn, fail] pair of shares is invalid (None: it is valid)."""
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_is_number(v) and 0 <= v <= 1 for v in pair)):
        return f"AUDIT[{name!r}] must be a [warn, fail] pair of shares from 0 to 1, not {pair!r}."
    if (pair[0] < pair[1]) if falling else (pair[0] > pair[1]):
        order = "at least" if falling else "at most"
        return f"AUDIT[{name!r}] = {list(pair)}: the warn share must be {order} the fail share."
    return None


@register(Tags.compatibility)
def check_audit_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """E080: PERSONALIZATION["AUDIT"] thresholds of the data audit (monitoring/audit.py)."""
    from personalization.conf import settings

    try:
        audit = settings.AUDIT
    except ImproperlyConfigured:
        return []  # reported as E001
    problems = []
    for name in ("baseline_days", "min_history_days", "volume_min_change", "context_sample",
                 "max_events_per_minute", "future_tolerance_seconds", "late_seconds"):
        value = audit[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"AUDIT[{name!r}] must be a positive whole number, not {value!r}.")
    for name in ("volume_k_warn", "volume_k_fail"):
        if not _is_number(audit[name]) or audit[name] <= 0:
            problems.append(f"AUDIT[{name!r}] must be a positive number, not {audit[name]!r}.")
    if not problems and audit["volume_k_warn"] > audit["volume_k_fail"]:
        problems.append("AUDIT['volume_k_warn'] must be at most AUDIT['volume_k_fail'].")
    for name in ("duplicate_rate", "bot_share", "rate_limited_share", "unknown_item_share", "unavailable_item_share",
                 "future_share", "late_share", "context_missing_share", "context_malformed_share",
                 "impossible_rate_share"):
        problems.append(_pair_error(name, audit[name]))
    types = audit["attribution_types"]
    if not isinstance(types, (list, tuple)) or not all(isinstance(t, str) for t in types):
        problems.append(f"AUDIT['attribution_types'] must be a list of event types, not {types!r}.")
    shares = audit["attributed_share"]
    if not isinstance(shares, dict):
        problems.append(f"AUDIT['attributed_share'] must map event types to [warn, fail] pairs, not {shares!r}.")
    else:
        problems += [_pair_error(f"attributed_share'][{t!r}", pair, falling=True) for t, pair in shares.items()]
    return [Error(p, hint="See the AUDIT defaults in docs/audit_export.md; [warn, fail] pairs are shares, e.g. "
                          "[0.05, 0.2].", id="personalization.E080") for p in problems if p]


@register(Tags.compatibility)
def check_online_measurement(app_configs: Any = None, **kwargs: Any) -> list:
    """Attribution windows and the A/B test refresh (docs/online_measurement.md)."""
    from personalization.conf import settings

    errors: list = []
    try:
        values = {name: getattr(settings, name) for name in
                  ("ATTRIBUTION_WINDOW_HOURS", "CLICK_SESSION_MINUTES", "EXPERIMENT_REFRESH_SECONDS")}
    except ImproperlyConfigured:
        return []  # reported as E001
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            errors.append(Error(f"{name} must be a positive number, not {value!r}.",
                                hint="E.g. ATTRIBUTION_WINDOW_HOURS 24, CLICK_SESSION_MINUTES 30, "
                                     "EXPERIMENT_REFRESH_SECONDS 5.", id="personalization.E040"))
    if not errors and values["CLICK_SESSION_MINUTES"] > 60 * values["ATTRIBUTION_WINDOW_HOURS"]:
        errors.append(Warning(
            "CLICK_SESSION_MINUTES is longer than ATTRIBUTION_WINDOW_HOURS: clicks would count for lists whose "
            "purchases no longer do.", hint="Keep the click session within the attribution window.",
            id="personalization.W040"))
    return errors


@register(Tags.compatibility)
def check_updates(app_configs: Any = None, **kwargs: Any) -> list:
    """E050-E052: the settings of the updates between retrains (``personalization.update_models``)."""
    from personalization.conf import settings

    try:
        values = {name: getattr(settings, name) for name in
                  ("UPDATE_INTERVAL_SECONDS", "UPDATE_MAX_EVENTS", "UPDATE_LOCK_SECONDS")}
    except Exception:  # noqa: BLE001 - E001 reports broken settings
        return []
    errors = []
    interval = values["UPDATE_INTERVAL_SECONDS"]
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
        errors.append(Error(f"UPDATE_INTERVAL_SECONDS must be a number of seconds >= 0, not {interval!r}.",
                            hint="E.g. 60 folds new events into the live model every minute; 0 turns it off.",
                            id="personalization.E050"))
    limit = values["UPDATE_MAX_EVENTS"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        errors.append(Error(f"UPDATE_MAX_EVENTS must be a positive integer, not {limit!r}.",
                            hint="E.g. 20000 events per run; the rest wait for the next run.",
                            id="personalization.E051"))
    lock = values["UPDATE_LOCK_SECONDS"]
    if isinstance(lock, bool) or not isinstance(lock, int) or lock < 1:
        errors.append(Error(f"UPDATE_LOCK_SECONDS must be a positive integer, not {lock!r}.",
                            hint="E.g. 60: a run whose heartbeat stopped that long ago is taken for dead.",
                            id="personalization.E052"))
    return errors
_DRIFT_NUMBERS = {  # key -> (lowest allowed, highest allowed, whether the lowest itself is allowed)
    "DRIFT_RECENT_HOURS": (0, None, False), "DRIFT_BASELINE_DAYS": (0, None, False),
    "DRIFT_MIN_EVENTS": (0, None, True), "DRIFT_PSI_THRESHOLD": (0, None, False),
    "DRIFT_PSI_TOP_ITEMS": (1, None, True), "DRIFT_KS_THRESHOLD": (0, 1, False),
    "DRIFT_ADWIN_DELTA": (0, 1, False), "DRIFT_ADWIN_MIN_IMPRESSIONS": (0, None, True),
    "DRIFT_CLICK_SECONDS": (0, None, True), "DRIFT_METRIC_DROP": (0, 1, False),
    "DRIFT_RETRAIN_MIN_HOURS": (0, None, True),
}


@register(Tags.compatibility)
def check_drift(app_configs: Any = None, **kwargs: Any) -> list:
    """Drift settings are numbers in range; river is importable; beat's database schedule is not overwritten."""
    from personalization.conf import settings

    messages: list = []
    try:
        for key, (low, high, low_ok) in _DRIFT_NUMBERS.items():
            value = getattr(settings, key)
            bad = isinstance(value, bool) or not isinstance(value, (int, float))
            bad = bad or value < low or (value == low and not low_ok) or (high is not None and value >= high)
            if bad:
                span = f"{'at least' if low_ok else 'above'} {low}" + (f" and below {high}" if high else "")
                messages.append(Error(f"PERSONALIZATION[{key!r}] must be a number {span}, not {value!r}.",
                                      hint="See the README, \"Learning loop: drift and schedules\".",
                                      id="personalization.E060"))
        if not isinstance(settings.DRIFT_RETRAIN, bool):
            messages.append(Error(f"PERSONALIZATION['DRIFT_RETRAIN'] must be True or False, not "
                                  f"{settings.DRIFT_RETRAIN!r}.", id="personalization.E061"))
    except ImproperlyConfigured:
        return []  # check_settings reports the broken setting
    try:
        import river.drift  # noqa: F401
    except ImportError:
        messages.append(Warning("river is not installed: the ADWIN drift detector on click streams is off.",
                                hint='pip install "django-personalization[drift]" (or river).',
                                id="personalization.W060"))
    scheduler = str(getattr(django_settings, "CELERY_BEAT_SCHEDULER", "") or "")
    beat = getattr(django_settings, "CELERY_BEAT_SCHEDULE", None) or {}
    if "DatabaseScheduler" in scheduler and any(str(name).startswith("personalization-") for name in beat):
        messages.append(Warning(
            "CELERY_BEAT_SCHEDULE names the app's entries while beat uses django-celery-beat's DatabaseScheduler: "
            "each time beat starts it writes them over their periodic tasks, undoing what staff changed in the admin.",
            hint="Remove CELERY_BEAT_SCHEDULE: the app creates its entries as periodic tasks after every migrate "
                 "(personalization.periodic_tasks).", id="personalization.W061"))
    return messages


@register(Tags.compatibility)
def check_dashboard_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """E090: training weights of EVENT_TYPES / EXTRA_EVENT_TYPES; E091/W090: the DASHBOARD settings; W091: no
    matplotlib (the dashboard's plots)."""
    from personalization.conf import EVENT_WEIGHT_LIMIT, event_weight_errors, settings

    errors: list = []
    try:
        merged = {**settings.EVENT_TYPES, **settings.EXTRA_EVENT_TYPES}
    except ImproperlyConfigured:
        return []  # reported as E001 by check_settings
    try:
        dashboard = settings.DASHBOARD
    except ImproperlyConfigured as exc:  # an unknown key inside DASHBOARD
        dashboard = {}
        errors.append(Error(str(exc), hint="See docs/dashboard.md for the keys.", id="personalization.E091"))
    specs = {name: spec for name, spec in merged.items() if isinstance(spec, dict)}
    weights = {name: spec.get("weight", 0.0) for name, spec in specs.items()}
    for name, problem in event_weight_errors(weights, specs).items():
        errors.append(Error(
            f"EVENT_TYPES[{name!r}]['weight']: {problem}.",
            hint=f"Give each event type a number within -{EVENT_WEIGHT_LIMIT:g}..{EVENT_WEIGHT_LIMIT:g} "
                 "(weights are relative: a purchase weighing 8 views is 8.0 against 1.0).",
            id="personalization.E090"))
    for key, value in dashboard.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(Error(
                f"DASHBOARD[{key!r}] must be a positive integer, not {value!r}.",
                hint="E.g. {'event_days': 30, 'ctr_days': 14, 'counter_days': 7, 'versions': 20, "
                     "'cache_seconds': 60} (docs/dashboard.md).",
                id="personalization.E091"))
    if dashboard.get("counter_days", 1) > 8 and not errors:
        errors.append(Warning(
            f"DASHBOARD['counter_days'] = {dashboard['counter_days']}: the ingestion counters are kept 8 days, "
            "so older days show 0.", hint="Use at most 8.", id="personalization.W090"))
    if importlib.util.find_spec("matplotlib") is None:
        errors.append(Warning("matplotlib is not installed: the admin dashboard shows no plots.",
                              hint='pip install "django-personalization[dashboard]"', id="personalization.W091"))
    return errors
