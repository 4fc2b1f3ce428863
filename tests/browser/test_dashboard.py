"""The admin dashboard in Chromium: a staff member logs in, every panel draws its plot, the page logs no error."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from personalization.models import AuditReport, DriftDetection
from personalization.tracking import metrics
from tests.monitoring.pages import URL, served

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PANELS = ("events", "ctr", "offline", "ingestion", "shap", "bias", "audit", "drift")


def test_staff_sees_every_plot_rendered_without_console_errors(trained, django_user_model, new_context):
    django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-for-the-browser")
    served(trained.pk, "home", impressions=30, clicks=3, purchases=1)
    metrics.incr("bot_events", 5)  # the live server runs in this process: same local-memory cache
    now = timezone.now()
    AuditReport.objects.create(created_at=now, days=1, baseline_days=28, period_start=now - timedelta(days=1),
                               period_end=now, status="pass", trigger="schedule",
                               checks=[{"name": "event volume", "status": "pass", "summary": "as usual"}])
    DriftDetection.objects.create(detector="psi", subject="category", statistic="psi", value=0.4, threshold=0.2,
                                  detected_at=now, model_version=trained)

    page = new_context(viewport={"width": 1280, "height": 900}).new_page()
    problems: list[str] = []
    failed: list[str] = []
    # a failed request logs a console error naming no URL: those are checked by URL instead (the admin has no
    # favicon, which the browser asks for by itself)
    page.on("console", lambda msg: problems.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 and "/favicon.ico" not in r.url else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(f"/admin/login/?next={URL}")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-for-the-browser")
    page.click("input[type=submit]")
    page.wait_for_url(f"**{URL}")

    for key in PANELS:
        figure = page.locator(f"#panel-{key} svg[role=img]")
        assert figure.count() == 1, key
        box = figure.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 80, (key, box)
        assert (figure.locator(":scope > title").text_content() or "").strip(), key  # accessible name
        assert page.locator(f"#panel-{key} svg path").count() > 5, key  # something was drawn
    assert page.get_by_role("img", name="CTR and conversion per slot and model version, last 14 days").count() == 1

    page.click("text=Pause exploration")
    page.wait_for_selector("text=Exploration paused")
    assert page.locator("#exploration-state").inner_text() == "paused"
    assert not problems and not failed, (problems, failed)
