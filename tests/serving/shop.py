"""A simulated shop with a live model, built once per test module (training takes seconds, tests milliseconds).

``live_shop`` commits the shop and trains one live version before the module's first test and deletes every row it
added after the last one; each test still runs in its own rolled-back transaction on top of it (``shop``).
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings

SHOP_ARGS = ["--products", "40", "--visitors", "80", "--days", "20", "--seed", "3", "--no-progress", "--no-train"]


@pytest.fixture(scope="module", name="live_shop")
def live_shop_fixture(django_db_setup, django_db_blocker, tmp_path_factory):
    """The live ModelVersion of a committed simulated shop (module scope)."""
    from personalization.conf import settings as psettings
    from personalization.models import ModelVersion
    from personalization.training import train

    media = override_settings(MEDIA_ROOT=str(tmp_path_factory.mktemp("shop") / "media"))  # artifacts beside it
    media.enable()
    psettings.reload()
    models = [m for m in apps.get_models() if not m._meta.proxy and m._meta.managed]
    with django_db_blocker.unblock():
        empty = [m for m in models if not m._base_manager.exists()]
        try:
            call_command("demo", *SHOP_ARGS, stdout=StringIO())
            version = train(ModelVersion.objects.create())
            assert version.status == ModelVersion.Status.LIVE
            yield version
        finally:
            with transaction.atomic():  # foreign keys are deferred: delete in any order
                for model in empty:
                    model._base_manager.all()._raw_delete(model._base_manager.db)
            media.disable()


@pytest.fixture(name="shop")
def shop_fixture(live_shop, db):
    """The live version, inside the test's own transaction."""
    from personalization.models import ModelVersion

    return ModelVersion.objects.get(pk=live_shop.pk)


def counting(system):
    """Install a call counter on the loaded system's recommend/similar_items; returns the counts dict."""
    counts = {"recommend": 0, "similar_items": 0}
    for name in counts:
        original = getattr(type(system), name).__get__(system)

        def wrapper(*args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        setattr(system, name, wrapper)
    return counts


def uncount(system):
    for name in ("recommend", "similar_items"):
        system.__dict__.pop(name, None)


def active_visitor(min_items: int = 3) -> str:
    """A simulated anonymous visitor with several item events (the subject ``v:<id>``)."""
    from django.db.models import Count

    from personalization.models import Event

    row = (Event.objects.filter(user__isnull=True).exclude(visitor_id="").exclude(item_key="")
           .values("visitor_id").annotate(c=Count("item_key", distinct=True)).filter(c__gte=min_items)
           .order_by("-c", "visitor_id").first())
    return f"v:{row['visitor_id']}"


def copy_of(version):
    """A second trained version with the same artifact (and its hash) and metrics, ready to be promoted."""
    from personalization.models import ModelVersion

    return ModelVersion.objects.create(status=ModelVersion.Status.READY, artifact=version.artifact,
                                       artifact_sha256=version.artifact_sha256, test_metrics=version.test_metrics)


def precomputed_and_online(subjects: list[str], slots: list[str]) -> tuple[dict, dict]:
    """Each (subject, slot)'s list as the precompute cached it, then as serving computes it online with an empty
    cache: ``(precomputed, online)``, ``[(item, score)]`` per (subject, slot); only the precomputed (cached) ones."""
    from django.core.cache import caches

    from personalization import serving
    from tests.caches import clear_cache

    precomputed = {}
    for subject in subjects:
        for slot in slots:
            result = serving.recommend(subject, slot=slot)
            if result.cached:
                precomputed[(subject, slot)] = [(r.item, r.score) for r in result.items]
    clear_cache(caches["default"])
    online = {}
    for subject, slot in precomputed:
        result = serving.recommend(subject, slot=slot)
        assert not result.cached
        online[(subject, slot)] = [(r.item, r.score) for r in result.items]
    return precomputed, online


def warm_subjects() -> list[str]:
    """Every simulated visitor and user with an item event, as serving subjects."""
    from personalization.models import Event

    rows = Event.objects.exclude(item_key="").values_list("user_id", "visitor_id").distinct()
    return sorted({f"u:{u}" if u else f"v:{v}" for u, v in rows})
