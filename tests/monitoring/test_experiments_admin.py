"""Staff start, read, end and promote A/B tests from the admin (Django test client, real models)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from personalization.models import Event, Experiment, ModelVersion, RecommendationLog

ADD = "admin:personalization_experiment_add"
CHANGELIST = "admin:personalization_experiment_changelist"


@pytest.fixture
def staff(db, django_user_model):
    """Staff with the model-version permissions (not a superuser)."""
    user = django_user_model.objects.create_user("analyst", "a@example.com", "pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["promote_modelversion", "view_modelversion", "view_experiment"]))
    return django_user_model.objects.get(pk=user.pk)


def form(a: ModelVersion, b: ModelVersion, **fields) -> dict:
    return {"name": "knn challenger", "version_a": a.pk, "version_b": b.pk, "share_b": "0.5", "slot": "",
            "minimum_detectable_effect": "0.05", "primary_metric": "ctr", **fields}


def outcomes(experiment: Experiment, arm: str, version: ModelVersion, visitors: int, clicks: int) -> None:
    """``visitors`` lists of two items in ``arm``, every position seen, the first ``clicks`` visitors clicking."""
    now = timezone.now() - timedelta(hours=1)
    logs, events = [], []
    for i in range(visitors):
        rec_id = uuid.uuid4().hex
        visitor = f"{arm}-{i}"
        logs.append(RecommendationLog(id=rec_id, subject=f"v:{visitor}", slot="default", model_version=version,
                                      items=[{"item": "product:1", "score": 1, "reason": "als"},
                                             {"item": "product:2", "score": 0.5, "reason": "als"}],
                                      created_at=now, experiment=experiment, arm=arm))
        for item in ("product:1", "product:2"):
            events.append(Event(event_type="impression", item_key=item, visitor_id=visitor, occurred_at=now,
                                received_at=now, recommendation_id=rec_id))
        if i < clicks:
            events.append(Event(event_type="click", item_key="product:1", visitor_id=visitor,
                                occurred_at=now + timedelta(minutes=1), received_at=now, recommendation_id=rec_id))
    RecommendationLog.objects.bulk_create(logs)
    Event.objects.bulk_create(events)


def test_staff_start_an_experiment_with_the_live_version_as_a(versions, client, staff):
    a, b = versions
    client.force_login(staff)
    page = client.get(reverse(ADD))
    assert page.status_code == 200 and page.context["adminform"].form.initial["version_a"] == a.pk
    response = client.post(reverse(ADD), form(a, b))
    assert response.status_code == 302, response.context["adminform"].form.errors
    experiment = Experiment.objects.get()
    assert (experiment.status, experiment.started_by, experiment.version_b) == ("running", staff, b)


def test_starting_validates_with_clear_errors(versions, client, staff):
    a, b = versions
    client.force_login(staff)
    same = client.post(reverse(ADD), form(a, a))
    assert "Version B must differ from version A." in same.content.decode()
    share = client.post(reverse(ADD), form(a, b, share_b="1.5"))
    assert "between 0 and 1" in share.content.decode()
    slot = client.post(reverse(ADD), form(a, b, slot="nowhere"))
    assert "Unknown slot" in slot.content.decode()
    Experiment.objects.create(name="first", version_a=a, version_b=b, slot="home")
    clash = client.post(reverse(ADD), form(a, b, slot="home"))
    assert clash.status_code == 200 and "is running on home: end it first" in clash.content.decode()
    every = client.post(reverse(ADD), form(a, b))  # one on every slot would overlap the one on "home"
    assert "is running on home" in every.content.decode()
    assert Experiment.objects.count() == 1


def test_a_version_that_cannot_load_cannot_start(versions, client, staff):
    a, b = versions
    ModelVersion.objects.filter(pk=b.pk).update(artifact_sha256="f" * 64)
    client.force_login(staff)
    response = client.post(reverse(ADD), form(a, b))
    assert response.status_code == 200 and f"Version {b.pk} cannot be loaded" in response.content.decode()
    assert not Experiment.objects.exists()


def test_without_the_promote_permission_staff_cannot_start_or_end(versions, client, django_user_model):
    a, b = versions
    viewer = django_user_model.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
    experiment = Experiment.objects.create(name="e", version_a=a, version_b=b)
    client.force_login(viewer)
    assert client.post(reverse(ADD), form(a, b)).status_code == 403
    response = client.post(reverse(CHANGELIST), {"action": "end_experiments", "_selected_action": [experiment.pk]})
    assert response.status_code in (200, 302)
    assert Experiment.objects.get(pk=experiment.pk).status == "running"  # the action is not offered to them
    assert client.get(reverse("admin:personalization_experiment_change", args=[experiment.pk])).status_code == 200


def test_the_experiment_page_shows_results_and_warns_against_stopping_early(versions, client, staff):
    a, b = versions
    experiment = Experiment.objects.create(name="e", version_a=a, version_b=b)
    outcomes(experiment, "A", a, 40, 4)
    outcomes(experiment, "B", b, 40, 8)
    client.force_login(staff)
    page = client.get(reverse("admin:personalization_experiment_change", args=[experiment.pk])).content.decode()
    assert "Sample size per arm" in page and "Do not stop now" in page
    assert "<th>CTR</th><td>5.00%</td>" in page  # 4 clicks / 80 seen positions


def test_end_stops_serving_and_records_who(versions, client, staff):
    a, b = versions
    experiment = Experiment.objects.create(name="e", version_a=a, version_b=b)
    client.force_login(staff)
    client.post(reverse(CHANGELIST), {"action": "end_experiments", "_selected_action": [experiment.pk]})
    experiment.refresh_from_db()
    assert (experiment.status, experiment.ended_by, experiment.promoted) == ("ended", staff, None)
    assert ModelVersion.objects.get(pk=a.pk).status == "live"


def test_end_and_promote_makes_a_significantly_better_b_live(versions, client, staff):
    a, b = versions
    experiment = Experiment.objects.create(name="e", version_a=a, version_b=b)
    outcomes(experiment, "A", a, 300, 30)
    outcomes(experiment, "B", b, 300, 90)  # CTR 5% against 15%: p far below 0.05
    client.force_login(staff)
    client.post(reverse(CHANGELIST), {"action": "end_and_promote", "_selected_action": [experiment.pk]})
    experiment.refresh_from_db()
    assert (experiment.status, experiment.ended_by, experiment.promoted_id) == ("ended", staff, b.pk)
    assert experiment.ended_at is not None and "arm B won" in experiment.outcome
    assert ModelVersion.objects.get(pk=b.pk).status == "live"


def test_end_and_promote_keeps_a_when_b_is_not_significantly_better(versions, client, staff):
    a, b = versions
    experiment = Experiment.objects.create(name="e", version_a=a, version_b=b)
    outcomes(experiment, "A", a, 100, 10)
    outcomes(experiment, "B", b, 100, 11)
    client.force_login(staff)
    client.post(reverse(CHANGELIST), {"action": "end_and_promote", "_selected_action": [experiment.pk]})
    experiment.refresh_from_db()
    assert experiment.promoted_id == a.pk and "arm A won" in experiment.outcome
    assert "no significant difference" in experiment.outcome
    assert ModelVersion.objects.get(pk=a.pk).status == "live" and ModelVersion.objects.get(pk=b.pk).status == "ready"


def test_list_stats_change_list_shows_totals(db, client, staff):
    from datetime import date

    from personalization.models import ListDailyStat

    ListDailyStat.objects.create(day=date(2026, 3, 1), slot="home", position=0, lists=10, impressions=8, clicks=2)
    ListDailyStat.objects.create(day=date(2026, 3, 1), slot="home", position=1, lists=10, impressions=2, clicks=0)
    staff.user_permissions.add(Permission.objects.get(codename="view_listdailystat"))
    client.force_login(type(staff).objects.get(pk=staff.pk))
    page = client.get(reverse("admin:personalization_listdailystat_changelist") + "?slot=home").content.decode()
    assert "10 seen, 2 clicks" in page and "(CTR 20.00%)" in page
