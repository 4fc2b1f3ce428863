"""Fixtures shared by the whole suite."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from tests.caches import clear_cache


@pytest.fixture(autouse=True)
def _fresh_personalization_state(settings):
    """Each test sees its own settings, collector, catalog and cache."""
    from django.core.cache import caches

    from personalization import circuit
    from personalization.conf import settings as psettings
    from personalization.ratelimit import book

    circuit.reset()  # a Redis failure simulated by an earlier test must not make this one skip Redis
    psettings.reload()  # and with it the collector, the catalog adapter and serving's item table
    book.clear()  # this process's rate-limit counts (after any flush in flight), then the counters themselves
    clear_cache(caches["default"])
    yield
    psettings.reload()


# --- tracking and API tests ---------------------------------------------------------------------------------

EVENTS_URL = "/api/personalization/events/"
DESKTOP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


class Browser:
    """A test client with a real browser's User-Agent whose requests commit like production.

    Each request runs inside ``django_capture_on_commit_callbacks(execute=True)``, so events the collector defers
    to ``transaction.on_commit`` are stored by the time the call returns.
    """

    def __init__(self, capture, **defaults):
        from django.test import Client

        defaults.setdefault("HTTP_USER_AGENT", DESKTOP_UA)
        self.client = Client(**defaults)
        self._capture = capture

    def get(self, path, **extra):
        with self._capture(execute=True):
            return self.client.get(path, **extra)

    def post(self, path, data=None, **extra):
        with self._capture(execute=True):
            return self.client.post(path, data, **extra)

    def send(self, body, **extra):
        """POST JSON (any Python value) to the events endpoint."""
        import json

        payload = body if isinstance(body, (str, bytes)) else json.dumps(body)
        extra.setdefault("content_type", "application/json")
        with self._capture(execute=True):
            return self.client.post(EVENTS_URL, payload, **extra)

    @property
    def cookies(self):
        return self.client.cookies

    @property
    def visitor_id(self):
        """The visitor id in this browser's signed visitor cookie (None without one)."""
        from django.core import signing

        from personalization.conf import settings as psettings

        morsel = self.client.cookies.get(psettings.VISITOR_COOKIE_NAME)
        if morsel is None or not morsel.value:
            return None
        return signing.TimestampSigner(salt=psettings.VISITOR_COOKIE_SALT).unsign(morsel.value)


@pytest.fixture
def browser(db, django_capture_on_commit_callbacks):
    return Browser(django_capture_on_commit_callbacks)


@pytest.fixture
def make_browser(db, django_capture_on_commit_callbacks):
    def make(**defaults):
        return Browser(django_capture_on_commit_callbacks, **defaults)

    return make


@pytest.fixture
def make_product(db):
    """Create a product of the demo shop (with its category); returns the Product."""
    from decimal import Decimal

    from storefront_demo.shop.models import Category, Product

    counter = {"n": 0}

    def make(price="12.50", **fields):
        counter["n"] += 1
        n = counter["n"]
        category = fields.pop("category", None) or Category.objects.get_or_create(
            slug="candles", defaults={"name": "Candles"}
        )[0]
        return Product.objects.create(
            sku=f"SKU-{n}", name=f"Product {n}", price=Decimal(price), category=category, **fields
        )

    return make


@pytest.fixture
def product(make_product):
    return make_product()


@pytest.fixture
def shopper(db, django_user_model):
    return django_user_model.objects.create_user("shopper", "shopper@example.com", "correct-horse-battery")


# --- a small simulated shop with (or without) a live model: training, serving, delivery tests ---------------

SHOP_ARGS = ["--products", "40", "--visitors", "80", "--days", "20", "--seed", "3", "--no-progress", "--no-train"]


@pytest.fixture
def shop_history(db, settings, tmp_path):
    """Catalog + events of a simulated shop; artifacts go to a per-test media folder."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    call_command("demo", *SHOP_ARGS, stdout=StringIO())
    from personalization.models import Event

    assert Event.objects.count() > 500
    return Event.objects.count()


@pytest.fixture
def trained(shop_history):
    """Train one version (it goes live: the first version always does)."""
    from personalization.models import ModelVersion
    from personalization.training import train

    return train(ModelVersion.objects.create())
