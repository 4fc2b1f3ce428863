"""The dashboard's learning-loop and insight panels on a trained shop: SHAP, bias, audit, drift, A/B tests and CTR
from the daily list aggregates each draw a plot from what their module stored."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from personalization.models import AuditReport, DriftDetection, Experiment, ListDailyStat
from tests.monitoring.pages import URL, panel_html


def test_each_insight_and_learning_loop_panel_draws_its_data(admin_client, versions):
    live, challenger = versions
    now = timezone.now()
    AuditReport.objects.create(
        created_at=now, days=1, baseline_days=28, period_start=now - timedelta(days=1), period_end=now,
        status="warn", trigger="schedule",
        checks=[{"name": "event volume", "status": "pass", "summary": "as usual"},
                {"name": "duplicates", "status": "warn", "summary": "7% of events were repeats"}])
    DriftDetection.objects.create(detector="psi", subject="category", statistic="psi", value=0.41, threshold=0.2,
                                  detected_at=now, evidence={"bins": 5}, model_version=live)
    Experiment.objects.create(name="knn challenger", version_a=live, version_b=challenger, share_b=0.5)
    ListDailyStat.objects.create(day=timezone.localdate(), slot="home", model_version=live, position=0, lists=40,
                                 impressions=120, clicks=9, purchases=2, revenue=31.5, visitors=30)

    page = admin_client.get(URL).content.decode()

    for key in ("shap", "bias", "audit", "drift", "experiments", "ctr"):
        assert "<svg" in panel_html(page, key), key
    assert "Why these recommendations?" in panel_html(page, "shap")  # the way to one visitor's explanation
    assert "NDCG@10" in panel_html(page, "bias")
    audit = panel_html(page, "audit")
    assert "WARN" in audit and "7% of events were repeats" in audit
    assert "1 not acknowledged" in panel_html(page, "drift")
    experiments = panel_html(page, "experiments")
    assert "knn challenger" in experiments and f"v{challenger.pk}" in experiments
    ctr = panel_html(page, "ctr")
    assert "daily list aggregates" in ctr and "120" in ctr and "31.50" in ctr


def test_without_aggregates_ctr_comes_from_events_joined_to_the_lists(admin_client, versions):
    page = admin_client.get(URL).content.decode()
    assert "daily list aggregates" not in panel_html(page, "ctr")
    for key in ("audit", "drift", "experiments"):
        assert "<svg" not in panel_html(page, key), key  # nothing stored yet: the how-to note
