"""The dashboard on a site without the shared trained shop: empty panels, the data queries, a real retrain."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from personalization import background_runs
from personalization.models import Event, ModelVersion
from personalization.monitoring import dashboard
from tests.monitoring.pages import URL, panel_html, served


def test_retrain_button_trains_a_version_and_says_so(client, django_user_model, shop_history, transactional_db):
    user = django_user_model.objects.create_user("trainer", "t@example.com", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="train_modelversion"))
    client.force_login(user)
    page = client.get(URL).content.decode()
    assert "Retrain now" in page and 'name="tune"' in page
    response = client.post(f"{URL}retrain/", follow=True)
    assert response.status_code == 200 and "is training in this web process" in response.content.decode()
    assert background_runs.wait(120)
    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.LIVE and version.created_by == user


def test_an_empty_site_gets_a_how_to_note_per_panel(admin_client):
    page = admin_client.get(URL).content.decode()
    for key in ("events", "ctr", "offline"):
        section = panel_html(page, key)
        assert "No data yet:" in section and "<svg" not in section, key
    assert "personalization_import" in panel_html(page, "events")
    assert "recommendation_id" in panel_html(page, "ctr")
    assert "personalization_train" in panel_html(page, "offline")


def test_events_per_day_counts_by_type_and_day(db):
    now = timezone.now()
    Event.objects.bulk_create(
        [Event(event_type="view", item_key="product:1", occurred_at=now, received_at=now) for _ in range(3)]
        + [Event(event_type="purchase", item_key="product:1", occurred_at=now - timedelta(days=2), received_at=now)]
        + [Event(event_type="view", item_key="product:1", occurred_at=now - timedelta(days=40), received_at=now)]
    )
    axis, series = dashboard.events_per_day(30)
    assert len(axis) == 30 and axis[-1] == timezone.localdate()
    assert series["view"][-1] == 3 and sum(series["view"]) == 3  # the 40-day-old view is outside the window
    assert series["purchase"][axis.index(timezone.localdate(now - timedelta(days=2)))] == 1


def test_outcomes_are_attributed_to_the_slot_and_version_of_their_list(db):
    first = ModelVersion.objects.create(status=ModelVersion.Status.RETIRED)
    second = ModelVersion.objects.create(status=ModelVersion.Status.LIVE)
    served(first.pk, "home", impressions=10, clicks=2, purchases=0)
    served(second.pk, "home", impressions=20, clicks=1, purchases=1)
    served(second.pk, "similar", impressions=5, clicks=0, purchases=0)
    served(second.pk, "home", impressions=9, clicks=9, purchases=9, when=timezone.now() - timedelta(days=30))
    Event.objects.create(event_type="click", item_key="product:1", occurred_at=timezone.now(),
                         received_at=timezone.now(), recommendation_id="unknown-list")  # no log row: not counted
    rows = {(r["slot"], r["version"]): r for r in dashboard.attributed_outcomes(14)}
    assert set(rows) == {("home", first.pk), ("home", second.pk), ("similar", second.pk)}
    assert rows[("home", first.pk)]["ctr"] == pytest.approx(0.2)
    assert rows[("home", second.pk)]["ctr"] == pytest.approx(0.05)
    assert rows[("home", second.pk)]["conversion"] == pytest.approx(0.05)
    assert rows[("similar", second.pk)]["click"] == 0


def test_without_matplotlib_the_page_says_how_to_get_plots(admin_client, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the [dashboard] extra sees
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    response = admin_client.get(URL)
    assert response.status_code == 200
    assert 'django-personalization[dashboard]' in panel_html(response.content.decode(), "ingestion")
