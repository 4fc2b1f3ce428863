"""A trained shop with a second, not live, version (the A/B tests' challenger), and visitors per arm."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", name="challenger_shop")
def challenger_shop_fixture(live_shop, django_db_blocker):
    """A second trained version (item-kNN only, not promoted) beside the live one; removed with the shop."""
    from personalization.models import ModelVersion
    from personalization.training import train

    with django_db_blocker.unblock():
        version = train(ModelVersion.objects.create(), models=["itemknn"], promote_if_better=False)
        assert version.status == ModelVersion.Status.READY, version.error
    return live_shop, version


@pytest.fixture(name="versions")
def versions_fixture(challenger_shop, db):
    """(live version A, ready version B) inside the test's own transaction."""
    from personalization.models import ModelVersion

    a, b = challenger_shop
    return ModelVersion.objects.get(pk=a.pk), ModelVersion.objects.get(pk=b.pk)


def subjects_in_arms(experiment, count: int = 1) -> dict[str, list[str]]:
    """Simulated visitors with item history, ``count`` per arm of ``experiment``."""
    from django.db.models import Count

    from personalization.models import Event
    from personalization.serving.arms import arm_of

    found: dict[str, list[str]] = {"A": [], "B": []}
    rows = (Event.objects.filter(user__isnull=True).exclude(visitor_id="").exclude(item_key="")
            .values("visitor_id").annotate(c=Count("item_key", distinct=True)).filter(c__gte=3)
            .order_by("-c", "visitor_id"))
    for row in rows:
        subject = f"v:{row['visitor_id']}"
        arm = arm_of(subject, experiment.pk, experiment.share_b)
        if len(found[arm]) < count:
            found[arm].append(subject)
        if all(len(v) >= count for v in found.values()):
            return found
    raise AssertionError(f"not enough visitors per arm: {found}")
