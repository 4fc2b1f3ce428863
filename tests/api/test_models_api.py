"""Staff endpoints over the model registry: list, train, promote (409 when refused), roll back."""

from __future__ import annotations

import pytest

from personalization.models import ModelVersion
from tests.serving.shop import live_shop_fixture, shop_fixture  # noqa: F401

BASE = "/api/personalization/models/"


@pytest.fixture
def staff_client(shop, client, django_user_model):
    client.force_login(django_user_model.objects.get(username="admin"))
    return client


def _copy(version, **fields):
    """Another trained version with the same artifact (training takes seconds; the registry does not care)."""
    return ModelVersion.objects.create(status=ModelVersion.Status.READY, artifact=version.artifact,
                                       artifact_sha256=version.artifact_sha256,
                                       test_metrics=version.test_metrics, **fields)


@pytest.mark.parametrize("method,path", [
    ("get", ""), ("post", "train/"), ("post", "1/promote/"), ("post", "1/rollback/"),
])
def test_staff_only(shop, client, django_user_model, method, path):
    assert getattr(client, method)(BASE + path).status_code == 403  # anonymous
    client.force_login(django_user_model.objects.create_user("customer", "c@example.com", "pw"))
    assert getattr(client, method)(BASE + path).status_code == 403


def test_list_versions_with_metrics(staff_client, shop):
    body = staff_client.get(BASE).json()
    live = next(v for v in body if v["id"] == shop.pk)
    assert live["live"] and live["status"] == "live" and live["metric"] == "ndcg@10"
    assert live["score"] == pytest.approx(shop.score) and "system" in live["test_metrics"]


def test_train_enqueues_a_version(staff_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_client.post(BASE + "train/", {"models": ["popularity", "itemknn"]},
                                     content_type="application/json")
    assert response.status_code == 202
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == "queued" and version.params["requested"]["models"] == ["popularity", "itemknn"]
    assert len(callbacks) == 1  # the task is sent once the transaction commits
    bad = staff_client.post(BASE + "train/", {"models": ["magic"]}, content_type="application/json")
    assert bad.status_code == 400 and "Unknown family ['magic']" in bad.json()["models"][0]


def test_promote_is_refused_with_the_reason_unless_forced(staff_client, shop, settings,
                                                          django_capture_on_commit_callbacks):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "PROMOTION_MARGIN": 1.0, "PRECOMPUTE_ON_PROMOTION": False}
    candidate = _copy(shop)
    refused = staff_client.post(f"{BASE}{candidate.pk}/promote/", {}, content_type="application/json")
    assert refused.status_code == 409 and "does not beat live version" in refused.json()["detail"]
    with django_capture_on_commit_callbacks(execute=True):
        forced = staff_client.post(f"{BASE}{candidate.pk}/promote/", {"force": True},
                                   content_type="application/json")
    assert forced.status_code == 200 and forced.json()["live"] and forced.json()["previous"] == shop.pk
    from personalization import serving

    assert serving.recommend("v:" + "d" * 32, 3).model_version == candidate.pk  # serving switched
    assert staff_client.post(f"{BASE}{shop.pk}/rollback/").status_code == 409  # not the live one
    with django_capture_on_commit_callbacks(execute=True):
        back = staff_client.post(f"{BASE}{candidate.pk}/rollback/")
    assert back.status_code == 200 and back.json()["id"] == shop.pk and back.json()["live"]
    assert serving.recommend("v:" + "d" * 32, 3).model_version == shop.pk
    assert staff_client.post(f"{BASE}999999/promote/").status_code == 404
    empty = ModelVersion.objects.create(status=ModelVersion.Status.READY)
    response = staff_client.post(f"{BASE}{empty.pk}/promote/", {"force": True}, content_type="application/json")
    assert response.status_code == 409 and "has no artifact" in response.json()["detail"]


def test_rollback_without_a_previous_version_is_refused(staff_client, shop):
    response = staff_client.post(f"{BASE}{shop.pk}/rollback/")
    assert response.status_code == 409 and "no previous version" in response.json()["detail"]


@pytest.mark.parametrize("method,path,codename", [
    ("get", "", "view_modelversion"), ("post", "train/", "train_modelversion"),
    ("post", "{pk}/promote/", "promote_modelversion"), ("post", "{pk}/rollback/", "rollback_modelversion"),
])
def test_staff_needs_the_model_version_permission(shop, client, django_user_model, method, path, codename):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("clerk", "c@example.com", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_product"))
    client.force_login(user)
    url = BASE + path.format(pk=shop.pk)
    body = {"force": True} if "promote" in path else {}
    assert getattr(client, method)(url, body, content_type="application/json").status_code == 403
    assert ModelVersion.objects.count() == 1 and ModelVersion.objects.get().status == "live"
    user.user_permissions.add(Permission.objects.get(codename=codename))
    user = django_user_model.objects.get(pk=user.pk)  # drop the permission cache
    client.force_login(user)
    assert getattr(client, method)(url, body, content_type="application/json").status_code != 403
