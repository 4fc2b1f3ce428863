"""Settings of the demo storefront, read from the environment (django-environ) with demo-friendly defaults.

Every value can be overridden by an environment variable or a ``.env`` file next to ``manage.py``:

=========================== =========================================================================
DEBUG                       ``True`` by default (it is a demo); set ``False`` to serve compressed static
SECRET_KEY                  a public development key by default (``manage.py demo`` warns); set a real one anywhere
                            public: with the default anyone can forge visitor cookies
ALLOWED_HOSTS               comma separated; default localhost,127.0.0.1,[::1],testserver
HTTPS                       ``True`` when served over HTTPS: redirect to HTTPS, Secure cookies, HSTS (one hour by
                            default); each can be set alone: SECURE_SSL_REDIRECT, SESSION_COOKIE_SECURE,
                            CSRF_COOKIE_SECURE, SECURE_HSTS_SECONDS, SECURE_HSTS_INCLUDE_SUBDOMAINS,
                            SECURE_HSTS_PRELOAD; behind a TLS proxy SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO
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
#: Public (it is in this repository): ``manage.py demo`` warns while it is in use and ``check --deploy`` flags it.
DEMO_SECRET_KEY = "django-insecure-storefront-demo-key-change-me-0f9c2a71d4b8e6"
SECRET_KEY = env.str("SECRET_KEY", default=DEMO_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS (``check --deploy``): off for the local demo and the benchmarks over plain HTTP, on with HTTPS=True.
HTTPS = env.bool("HTTPS", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=HTTPS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=HTTPS)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=HTTPS)  # the list itself needs a year of HSTS
if env.str("SECURE_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = (env.str("SECURE_PROXY_SSL_HEADER"), "https")

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
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded demo writes from several places at once: runserver's threads (page views after each response),
    # `demo_traffic`'s periodic tasks and training. Django's advice for that: take the write lock when a transaction
    # starts (no deadlocked upgrades), wait for it rather than fail, and let readers go on while one writes (WAL).
    DATABASES["default"].setdefault("OPTIONS", {})
    for option, value in (("transaction_mode", "IMMEDIATE"), ("timeout", 20),
                          ("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL")):
        DATABASES["default"]["OPTIONS"].setdefault(option, value)
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
if CACHES["default"]["BACKEND"].endswith("LocMemCache"):  # Django's 300 entries: a few dozen visitors' lists
    CACHES["default"].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 20_000)
if CACHES["default"]["BACKEND"].endswith("RedisCache"):  # a hung Redis fails within a second (check W009)
    CACHES["default"].setdefault("OPTIONS", {}).update({"socket_connect_timeout": 0.3, "socket_timeout": 0.5})
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
# Beat reads its entries from django-celery-beat's tables, where staff see and change them in the admin. The app's
# entries (personalization.schedules.BEAT_SCHEDULE) are created there after every migrate, never overwriting a
# row staff edited; so no CELERY_BEAT_SCHEDULE here: this scheduler would write it over the rows at each start.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

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
