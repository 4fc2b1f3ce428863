"""The admin dashboard: who may see it, its panels (data, plots, "no data yet" notes, cache) and its actions."""

from __future__ import annotations

import pytest
from django.utils import timezone

from personalization import runtime
from personalization.models import Event, ModelVersion, RuntimeControl
from personalization.monitoring import dashboard
from personalization.tracking import metrics
from personalization.training import train
from tests.monitoring.pages import URL, login_staff, panel_html, served

PANELS = ("events", "ctr", "offline", "ingestion")


# --- access ----------------------------------------------------------------------------------------------------

def test_anonymous_and_non_staff_users_are_sent_to_the_login(client, django_user_model, db):
    response = client.get(URL)
    assert response.status_code == 302 and "/login/" in response["Location"]
    user = django_user_model.objects.create_user("shopper", "s@example.com", "pw")  # not staff
    client.force_login(user)
    response = client.get(URL)
    assert response.status_code == 302 and "/login/" in response["Location"]
    response = client.post(f"{URL}exploration/", {"paused": "1"})
    assert response.status_code == 302 and not runtime.exploration_paused()


def test_the_admin_index_and_the_version_list_link_to_it(admin_client):
    assert URL in admin_client.get("/admin/").content.decode()
    assert URL in admin_client.get("/admin/personalization/modelversion/").content.decode()


# --- panels ----------------------------------------------------------------------------------------------------

def test_staff_sees_every_panel_with_a_plot(admin_client, shop):
    served(shop.pk, "home", impressions=40, clicks=4, purchases=1)
    metrics.incr("bot_events", 7)
    metrics.incr("rate_limited_events", 3)
    response = admin_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    for key in PANELS:
        section = panel_html(page, key)
        assert "<svg" in section and 'role="img"' in section and "<title" in section, key
        assert "No data yet" not in section, key
    ctr = panel_html(page, "ctr")
    assert f"home · v{shop.pk}" in ctr and "10.00%" in ctr and "2.50%" in ctr  # 4/40 clicks, 1/40 purchases
    offline = panel_html(page, "offline")
    assert "promotion metric" in offline and f"v{shop.pk} is live" in offline
    assert "bots 7" in panel_html(page, "ingestion") and "rate-limited 3" in panel_html(page, "ingestion")


def test_a_figure_is_reused_until_its_data_changes(admin_client, shop):
    calls = []
    original = dashboard.events_per_day

    def counting(days):
        calls.append(days)
        return original(days)

    dashboard.events_per_day = counting
    try:
        admin_client.get(URL)
        admin_client.get(URL)
        assert len(calls) == 1  # cached: nothing changed
        Event.objects.create(event_type="view", item_key="product:1", occurred_at=timezone.now(),
                             received_at=timezone.now())
        page = admin_client.get(URL).content.decode()
        assert len(calls) == 2  # a new event: the key changed
    finally:
        dashboard.events_per_day = original
    assert "<svg" in panel_html(page, "events")


def test_a_registered_panel_appears_and_a_broken_one_does_not_break_the_page(admin_client, db):
    dashboard.register(dashboard.Panel("extra", "Extra panel", 5, lambda request: {"summary": "hello from extra"}))
    dashboard.register(dashboard.Panel("broken", "Broken panel", 6, lambda request: 1 / 0))
    dashboard.register(dashboard.Panel("later", "Later panel", 99, lambda request: None, empty="run the audit"))
    try:
        page = admin_client.get(URL).content.decode()
    finally:
        for key in ("extra", "broken", "later"):
            dashboard.unregister(key)
    assert "hello from extra" in panel_html(page, "extra")
    assert "could not be drawn (ZeroDivisionError" in panel_html(page, "broken")
    assert "No data yet: run the audit" in panel_html(page, "later")
    assert page.index('id="panel-extra"') < page.index('id="panel-events"') < page.index('id="panel-later"')


# --- actions ---------------------------------------------------------------------------------------------------

def test_a_staff_member_without_permissions_sees_no_controls_and_gets_403(client, django_user_model, shop):
    viewer = login_staff(client, django_user_model)
    page = viewer.get(URL).content.decode()
    assert "Retrain now" not in page and "Pause exploration" not in page and "Save weights" not in page
    for action, data in [("retrain", {}), ("promote", {"version": shop.pk}), ("rollback", {}),
                         ("exploration", {"paused": "1"}), ("weights", {"weight_view": "2"})]:
        assert viewer.post(f"{URL}{action}/", data).status_code == 403, action
    assert ModelVersion.objects.count() == 1 and not RuntimeControl.objects.exists()


def test_actions_answer_get_with_405(admin_client, db):
    assert admin_client.get(f"{URL}exploration/").status_code == 405


def test_promote_and_roll_back_from_the_dashboard(client, django_user_model, shop, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "PROMOTION_MARGIN": 1.0}
    second = train(ModelVersion.objects.create())
    assert second.status == ModelVersion.Status.READY
    staff = login_staff(client, django_user_model, "promote_modelversion", "rollback_modelversion")
    page = staff.get(URL).content.decode()
    assert f'<option value="{second.pk}"' in page
    response = staff.post(f"{URL}promote/", {"version": second.pk}, follow=True)
    assert f"Version {second.pk} is live." in response.content.decode()
    second.refresh_from_db()
    assert second.status == ModelVersion.Status.LIVE
    response = staff.post(f"{URL}rollback/", follow=True)
    assert f"Rolled back: version {shop.pk} is live." in response.content.decode()
    shop.refresh_from_db()
    assert shop.status == ModelVersion.Status.LIVE


def test_promoting_an_unknown_or_live_version_is_a_form_error(admin_client, shop):
    for value in ("999999", str(shop.pk), "abc"):
        response = admin_client.post(f"{URL}promote/", {"version": value})
        assert response.status_code == 400, value
        assert "Choose a ready or retired version" in response.content.decode()


def test_pause_and_resume_exploration(client, django_user_model, db):
    staff = login_staff(client, django_user_model, "change_runtimecontrol")
    response = staff.post(f"{URL}exploration/", {"paused": "1"}, follow=True)
    assert "Exploration paused" in response.content.decode()
    assert runtime.exploration_paused() and RuntimeControl.objects.get().updated_by == "staffer"
    assert 'id="exploration-state">paused' in response.content.decode()
    staff.post(f"{URL}exploration/", {"paused": "0"})
    assert not runtime.exploration_paused()


# --- training weights ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "message"), [
    ({"weight_view": "abc"}, "Enter a number."),
    ({"weight_purchase": "1000"}, "out of range"),
    ({"weight_view": "-101"}, "out of range"),
    ({"weight_view": "inf"}, "Enter a number."),
    ({"weight_teleport": "3"}, "Unknown event type(s): teleport"),
    ({"weight_view": ""}, "This field is required."),
])
def test_invalid_weights_are_form_errors(admin_client, db, settings, data, message):
    weights = {f"weight_{k}": str(v) for k, v in runtime.event_weights().items()}
    response = admin_client.post(f"{URL}weights/", {**weights, **data})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not RuntimeControl.objects.exists()


def test_a_training_after_an_edit_uses_the_new_weights(admin_client, shop):
    defaults = runtime.event_weights()
    posted = {f"weight_{k}": str(v) for k, v in defaults.items()} | {"weight_purchase": "3", "weight_view": "0.25"}
    response = admin_client.post(f"{URL}weights/", posted, follow=True)
    assert "Training weights saved; overrides: view 0.25, purchase 3" in response.content.decode()
    assert RuntimeControl.objects.get().event_weights == {"view": 0.25, "purchase": 3.0}

    version = train(ModelVersion.objects.create())
    assert version.params["event_weights"] == {**defaults, "view": 0.25, "purchase": 3.0}
    assert version.params["event_weight_overrides"] == {"view": 0.25, "purchase": 3.0}
    from personalization.registry import load_system

    assert load_system(version).interaction_weights()["purchase"] == 3.0  # what the fitted model was built with

    admin_client.post(f"{URL}weights/", {"reset": "1"})
    again = train(ModelVersion.objects.create())
    assert again.params["event_weights"] == defaults and again.params["event_weight_overrides"] == {}
