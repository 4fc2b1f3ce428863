"""Settings of the demo storefront, read from the environment (django-environ) with demo-friendly defaults.

Every value can be overridden by an environment variable or a ``.env`` file next to ``manage.py``:

=========================== =========================================================================
DEBUG                       ``True`` by default (it is a demo); set ``False`` to serve compressed static
SECRET_KEY                  a development key by default; set a real one anywhere public
ALLOWED_HOSTS               comma separated; default localhost,127.0.0.1,[::1],testserver
DATABASE_URL                default ``sqlite:///<BASE_DIR>/db.sqlite3``; e.g. ``postgres://u:p@host/db``
CACHE_URL                   default ``locmemcache://``; e.g. ``rediscache://127.0.0.1:6379/1``
CELERY_BROKER_URL           empty by default: tasks run eagerly in-process
REDIS_URL                   for the Redis collector; default ``redis://127.0.0.1:6379/0``
PERSONALIZATION_COLLECTOR   ``database`` (default) or ``redis``
PERSONALIZATION_DATASETS    folder of the public datasets; default ``<BASE_DIR>/../shared/datasets``
=========================== =========================================================================
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-storefront-demo-key-change-me-0f9c2a71d4b8e6")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "personalization",
    "storefront_demo.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "storefront_demo.middleware.drop_cookies_with_nul",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "personalization.middleware.TrackingMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

AUTHENTICATION_BACKENDS = ["storefront_demo.auth.NulSafeModelBackend"]

ROOT_URLCONF = "storefront_demo.urls"
WSGI_APPLICATION = "storefront_demo.wsgi.application"
ASGI_APPLICATION = "storefront_demo.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "storefront_demo.shop.context_processors.shop",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "shop:home"
LOGOUT_REDIRECT_URL = "shop:home"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_URL = "media/"
MEDIA_ROOT = BASE_DIR / "media"

# --- Django REST framework and OpenAPI ---------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "django-personalization demo API",
    "DESCRIPTION": "Events in, recommendations out.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Celery ------------------------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
# No broker configured: run tasks in-process, and let their errors surface like ordinary exceptions.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = CELERY_TASK_ALWAYS_EAGER
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
from personalization.schedules import BEAT_SCHEDULE as CELERY_BEAT_SCHEDULE  # noqa: E402, F401

# Separate queues, e.g. {"personalization.flush_events": {"queue": "ingestion"},
#                        "personalization.train_models": {"queue": "training"}}; workers take them with -Q.
CELERY_TASK_ROUTES = env.json("CELERY_TASK_ROUTES", default={})

# --- django-personalization --------------------------------------------------------------------------------
PERSONALIZATION_DATASETS = env.path("PERSONALIZATION_DATASETS", default=str(BASE_DIR.parent / "shared" / "datasets"))

COLLECTORS = {
    "database": "personalization.tracking.collectors.DatabaseCollector",
    "redis": "personalization.tracking.collectors.RedisCollector",
}
_collector = env.str("PERSONALIZATION_COLLECTOR", default="database").strip().lower()
if _collector not in COLLECTORS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"PERSONALIZATION_COLLECTOR={_collector!r} is not supported; use one of: {', '.join(COLLECTORS)}."
    )

PERSONALIZATION = {
    # Every slot the shop's templates use, with its business rules (README "Serving"). Each slot's n is the limit
    # its template asks for, so the lists precomputed for a slot are the lists its pages show.
    "SLOTS": {
        "default": {},
        "home": {"n": 8, "diversity": "mmr", "max_per_category": 3, "exploration": "epsilon", "exploration_rate": 0.1},
        "hero": {"n": 3},
        "home-candles": {"n": 4, "categories": ["candles"]}, "home-mugs": {"n": 4, "categories": ["mugs"]},
        "home-cushions": {"n": 4, "categories": ["cushions"]}, "home-lanterns": {"n": 4, "categories": ["lanterns"]},
        "product": {"n": 4, "max_per_category": 2},
        "similar": {"n": 4, "exclude_purchased": False, "exclude_in_cart": False},
        "cart": {"n": 4, "diversity": "category"},
        "thanks": {"n": 4, "diversity": "category"},
    },
    # Precomputing lists after a promotion fills the shared (Redis) cache for the web processes; with eager tasks
    # and a local-memory cache it would only warm the training process's own memory.
    "PRECOMPUTE_ON_PROMOTION": bool(CELERY_BROKER_URL),
    "COLLECTOR_BACKEND": COLLECTORS[_collector],
    "REDIS_URL": REDIS_URL,
    "CATALOG": {
        "product": {
            "model": "shop.Product",
            "id_field": "pk",
            "url_names": ["shop:product"],
            "url_kwarg": "pk",
            "fields": {
                "title": "name",
                "category": "category__slug",
                "price": "price",
                "brand": "brand__name",
                "text": ["name", "description", "category__name"],
                "available": "in_stock",
                "url": "get_absolute_url",
                "image": "image_url",
            },
        },
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
    "loggers": {
        "personalization": {"handlers": ["console"], "level": env.str("PERSONALIZATION_LOG_LEVEL", default="INFO"),
                            "propagate": False},
    },
}
