"""personalization.update_models: new events reach the live model between retrains, without a retrain."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from personalization import recommend, similar_items
from personalization.models import Event, ModelVersion
from personalization.serving.live import live_system

pytestmark = pytest.mark.django_db


def _events(rows):
    now = timezone.now()
    Event.objects.bulk_create([
        Event(event_type=kind, item_key=item, visitor_id=visitor, user_id=user, occurred_at=now + timedelta(seconds=i),
              received_at=now)
        for i, (visitor, user, item, kind) in enumerate(rows)])


def _run():
    from personalization.tasks import update_models

    return update_models.apply(kwargs={"force": True}).get()


def _new_product(shop_version):
    from storefront_demo.shop.models import Category, Product

    return Product.objects.create(sku="NEW-1", name="Brand new thing", price=10, category=Category.objects.first())


def _popular_item() -> str:
    from django.db.models import Count

    return (Event.objects.exclude(item_key="").values("item_key").annotate(c=Count("id")).order_by("-c")
            .first()["item_key"])


def test_new_product_gets_similar_items_and_joins_its_neighbours(shop):
    product = _new_product(shop)
    new, neighbour = product.item_key, _popular_item()
    assert similar_items(new) == []  # unknown to the trained model
    assert new not in [r.item for r in similar_items(neighbour, n=100)]
    rows = []
    for v in range(5):
        rows += [(f"fresh{v}", None, neighbour, "view"), (f"fresh{v}", None, new, "view"),
                 (f"fresh{v}", None, neighbour, "click")]
    _events(rows)

    result = _run()

    assert result["status"] == "updated" and result["revision"] == 1
    assert neighbour in [r.item for r in similar_items(new)]
    assert new in [r.item for r in similar_items(neighbour, n=100)]
    version = ModelVersion.objects.get(pk=shop.pk)
    assert version.update_revision == 1 and version.update_artifact and version.update_watermark


def test_known_user_factors_move_and_cached_list_is_invalidated(shop):
    _, system = live_system()
    user_event = Event.objects.filter(user__isnull=False).exclude(item_key="").order_by("id").first()
    assert user_event is not None
    subject = f"u:{user_event.user_id}"
    before = recommend(subject, n=10)
    assert not before.fallback
    assert recommend(subject, n=10).cached  # served from the cache until something changes
    from personalization.subjects import model_subject

    key = model_subject(system, subject)
    als_before = system.recommend_for_model("als", [key], n=10)[0]
    # the user turns to items far from their history: what the other visitors liked least so far
    seen = set(Event.objects.filter(user_id=user_event.user_id).values_list("item_key", flat=True))
    others = [k for k in system.matrix_.item_ids.tolist() if k not in seen][-6:]
    _events([("", user_event.user_id, item, kind) for item in others for kind in ("view", "add_to_cart",
                                                                                   "purchase")])

    assert _run()["status"] == "updated"

    _, updated = live_system()
    assert updated is not system
    assert updated.recommend_for_model("als", [key], n=10)[0] != als_before
    after = recommend(subject, n=10)
    assert not after.cached
    assert [r.item for r in after.items] != [r.item for r in before.items]


def test_rerun_without_new_events_changes_nothing(shop):
    _events([("again", None, _popular_item(), "view")])
    first = _run()
    assert first["status"] == "updated"
    version = ModelVersion.objects.get(pk=shop.pk)
    second = _run()
    assert second["status"] == "idle" and second["revision"] == first["revision"]
    assert ModelVersion.objects.get(pk=shop.pk).update_artifact == version.update_artifact


def test_overlapping_run_is_refused_and_serving_keeps_its_state(shop):
    from personalization import shared_cache
    from personalization.updates import LOCK_KEY, run_update

    _events([("locked", None, _popular_item(), "view")])
    _, before = live_system()
    shared_cache.cache().add(LOCK_KEY, "someone-else@0", timeout=60)
    try:
        result = run_update(force=True)
    finally:
        shared_cache.cache().delete(LOCK_KEY)
    assert result.status == "skipped" and "another update" in result.reason
    assert ModelVersion.objects.get(pk=shop.pk).update_revision == 0
    assert live_system()[1] is before
    assert run_update(force=True).status == "updated"  # the lock released, the next run goes ahead


def test_updates_off_or_not_due(shop, settings):
    from personalization.conf import settings as psettings
    from personalization.updates import run_update

    settings.PERSONALIZATION = {**getattr(settings, "PERSONALIZATION", {}), "UPDATE_INTERVAL_SECONDS": 0}
    psettings.reload()
    assert run_update().reason == "UPDATE_INTERVAL_SECONDS is 0"


@pytest.mark.parametrize(("key", "value", "code"), [
    ("UPDATE_INTERVAL_SECONDS", -1, "personalization.E050"),
    ("UPDATE_MAX_EVENTS", 0, "personalization.E051"),
    ("UPDATE_LOCK_SECONDS", "x", "personalization.E052"),
])
def test_checks_report_bad_update_settings(settings, key, value, code):
    from personalization.checks import check_updates
    from personalization.conf import settings as psettings

    settings.PERSONALIZATION = {**getattr(settings, "PERSONALIZATION", {}), key: value}
    psettings.reload()
    assert code in [m.id for m in check_updates()]


def test_a_delta_serving_cannot_apply_leaves_it_on_the_last_good_state(shop, caplog):
    import time

    from personalization.registry import save_update
    from personalization.serving import live

    _events([("good", None, _popular_item(), "view")])
    assert _run()["status"] == "updated"
    _, good = live_system()
    version = ModelVersion.objects.get(pk=shop.pk)
    broken = save_update(version, 2, b"not a delta")
    ModelVersion.objects.filter(pk=shop.pk).update(update_revision=2, update_artifact=broken)
    live.publish_revision(version_id=shop.pk, revision=2)  # as another process would, without a system

    assert live_system()[1] is good  # the new revision is applied off the request path ...
    deadline = time.monotonic() + 10
    while live._loaded.loading and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_system()[1] is good  # ... and it failed: the last good state keeps serving
    assert "could not apply update 2" in caplog.text
    assert similar_items(_popular_item())  # and serving still answers
