"""Staff API: ``GET stats/lists/`` and ``GET experiments/<id>/`` (400 on bad parameters, staff only)."""

from __future__ import annotations

from datetime import date

import pytest
from django.contrib.auth.models import Permission

from personalization.models import Experiment, ListDailyStat

BASE = "/api/personalization/"


@pytest.fixture
def staff_client(db, client, django_user_model):
    user = django_user_model.objects.create_user("analyst", "a@example.com", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
    client.force_login(user)
    return client


@pytest.fixture
def stats(db):
    for version, slot, clicks in ((1, "home", 3), (2, "home", 5), (1, "product", 7)):
        ListDailyStat.objects.create(day=date(2026, 3, 1), slot=slot, model_version_id=version, position=0,
                                     lists=10, impressions=10, clicks=clicks)
    ListDailyStat.objects.create(day=date(2026, 1, 1), slot="home", model_version_id=1, position=0, lists=10)


@pytest.mark.parametrize("path", ["stats/lists/", "experiments/1/"])
def test_staff_only(db, client, django_user_model, path):
    assert client.get(BASE + path).status_code == 403
    client.force_login(django_user_model.objects.create_user("customer", "c@example.com", "pw"))
    assert client.get(BASE + path).status_code == 403
    client.force_login(django_user_model.objects.create_user("clerk", "k@example.com", "pw", is_staff=True))
    assert client.get(BASE + path).status_code == 403  # staff without the model-version permission


def test_list_stats_filter_by_since_slot_and_version(staff_client, stats):
    body = staff_client.get(BASE + "stats/lists/", {"since": "2026-02-01", "slot": "home",
                                                    "model_version": 2}).json()
    assert [(r["slot"], r["model_version"], r["clicks"]) for r in body["rows"]] == [("home", 2, 5)]
    assert body["totals"]["clicks"] == 5 and body["totals"]["ctr"] == 0.5 and body["truncated"] is False
    all_rows = staff_client.get(BASE + "stats/lists/", {"since": "2025-12-01"}).json()
    assert len(all_rows["rows"]) == 4 and all_rows["rows"][0]["day"] == "2026-01-01"


@pytest.mark.parametrize("params,field", [
    ({"since": "yesterday"}, "since"), ({"since": "2026-13-01"}, "since"), ({"model_version": "abc"}, "model_version"),
    ({"model_version": "0"}, "model_version"), ({"slot": "nowhere"}, "slot"),
])
def test_bad_parameters_answer_400_with_field_errors(staff_client, params, field):
    response = staff_client.get(BASE + "stats/lists/", params)
    assert response.status_code == 400 and field in response.json()


def test_experiment_results(staff_client, versions):
    a, b = versions
    experiment = Experiment.objects.create(name="e", version_a=a, version_b=b, primary_metric="conversion")
    body = staff_client.get(BASE + f"experiments/{experiment.pk}/").json()
    assert body["experiment"]["version_b"] == b.pk and body["experiment"]["status"] == "running"
    results = body["results"]
    assert set(results["arms"]) == {"A", "B"} and results["primary_metric"] == "conversion"
    assert set(results["tests"]) == {"ctr", "conversion", "revenue"}
    assert results["enough_data"] is False and "do not stop it early" in results["warning"]
    assert staff_client.get(BASE + "experiments/999999/").status_code == 404


def test_the_endpoints_are_in_the_openapi_schema(staff_client):
    schema = staff_client.get(BASE + "schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/personalization/stats/lists/" in schema and "/api/personalization/experiments/{id}/" in schema
