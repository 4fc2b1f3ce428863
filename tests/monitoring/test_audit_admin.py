"""The admin of audit reports: list, detail with every check, and *Run audit now* for staff allowed to."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from personalization import background_runs
from personalization.models import AuditReport
from personalization.monitoring.audit import run_audit

CHANGELIST = "/admin/personalization/auditreport/"


@pytest.mark.django_db
def test_list_and_detail_show_each_check_with_its_numbers(admin_client, traffic):
    report = run_audit()
    page = admin_client.get(CHANGELIST).content.decode()
    assert "PASS" in page and "Run audit now" in page
    detail = admin_client.get(f"{CHANGELIST}{report.pk}/change/").content.decode()
    for text in ("event_volume", "impossible_rates", "attribution", "buckets_checked", "k_warn"):
        assert text in detail
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403


@pytest.mark.django_db
def test_staff_without_the_permission_cannot_run_an_audit(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_auditreport"))
    client.force_login(viewer)
    assert "Run audit now" not in client.get(CHANGELIST).content.decode()
    assert client.post(f"{CHANGELIST}run/").status_code == 403
    assert not AuditReport.objects.exists()


def test_run_audit_now_saves_a_report(admin_client, transactional_db, make_product):
    response = admin_client.post(f"{CHANGELIST}run/", follow=True)
    assert "Audit of the last day started" in response.content.decode()
    assert background_runs.wait(60)  # eager Celery: the audit runs in a thread of this process, not in the request
    report = AuditReport.objects.get()
    assert report.trigger == "admin" and report.days == 1
