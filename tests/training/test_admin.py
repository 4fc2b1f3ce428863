"""Staff retrain, promote and roll back from the Django admin."""

from __future__ import annotations

import pytest

from personalization import background_runs
from personalization.models import ModelVersion
from personalization.training import train

CHANGELIST = "/admin/personalization/modelversion/"


@pytest.fixture
def staff(admin_client):
    return admin_client


def test_list_shows_metrics_side_by_side(staff, trained):
    page = staff.get(CHANGELIST).content.decode()
    assert f"{trained.test_metrics['system']['ndcg@10']:.4f}" in page
    assert "Retrain now" in page


def test_version_page_shows_metrics_parameters_and_data_quality(staff, trained):
    page = staff.get(f"{CHANGELIST}{trained.pk}/change/").content.decode().lower()
    for text in ("metrics on the test window", "system", "itemknn", "rows_in", "event_weights"):
        assert text in page


def test_retrain_button_queues_and_trains_a_version(staff, shop_history, transactional_db):
    response = staff.post(f"{CHANGELIST}retrain/")
    assert response.status_code == 302
    assert background_runs.wait(120)  # eager tasks: trained in a thread of this process, not inside the request
    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.LIVE and version.created_by.username == "admin"


def test_retrain_with_the_tune_box_tunes(staff, shop_history, transactional_db, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                "TRAINING": {"models": {"popularity": {}, "itemknn": {"k": 50}}}}
    assert 'name="tune"' in staff.get(CHANGELIST).content.decode()
    assert staff.post(f"{CHANGELIST}retrain/", {"tune": "1"}).status_code == 302
    assert background_runs.wait(180)
    version = ModelVersion.objects.get()
    assert set(version.tuning["families"]) == {"itemknn"} and version.tuning["ranker"]["trials"]


def test_promote_and_roll_back_actions(staff, trained, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "PROMOTION_MARGIN": 1.0}
    second = train(ModelVersion.objects.create())
    assert second.status == ModelVersion.Status.READY

    staff.post(CHANGELIST, {"action": "promote_versions", "_selected_action": [second.pk]})
    second.refresh_from_db()
    assert second.status == ModelVersion.Status.LIVE

    staff.post(CHANGELIST, {"action": "rollback_live", "_selected_action": [second.pk]})
    trained.refresh_from_db()
    assert trained.status == ModelVersion.Status.LIVE


def test_non_staff_cannot_retrain(client, shop_history):
    response = client.post(f"{CHANGELIST}retrain/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert ModelVersion.objects.count() == 0


# --- custom permissions: train / promote / rollback / cancel ------------------------------------------------------

@pytest.fixture
def viewer(client, django_user_model):
    """A staff user who may only look at model versions."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
    client.force_login(user)
    return client, user


def test_view_only_staff_is_offered_no_action_and_is_refused(viewer, trained):
    client, _ = viewer
    page = client.get(CHANGELIST).content.decode()
    assert "Retrain now" not in page
    for action in ("retrain_now", "promote_versions", "rollback_live", "cancel_training"):
        assert f'value="{action}"' not in page
        response = client.post(CHANGELIST, {"action": action, "_selected_action": [trained.pk]})
        assert response.status_code == 403, action
    assert client.post(f"{CHANGELIST}retrain/").status_code == 403
    assert list(ModelVersion.objects.values_list("pk", "status")) == [(trained.pk, ModelVersion.Status.LIVE)]


def test_each_action_needs_its_own_permission(viewer, trained):
    from django.contrib.auth.models import Permission

    client, user = viewer
    user.user_permissions.add(Permission.objects.get(codename="cancel_modelversion"))
    page = client.get(CHANGELIST).content.decode()
    assert 'value="cancel_training"' in page and 'value="promote_versions"' not in page
    assert client.post(CHANGELIST, {"action": "promote_versions", "_selected_action": [trained.pk]}).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="train_modelversion"))
    assert "Retrain now" in client.get(CHANGELIST).content.decode()
