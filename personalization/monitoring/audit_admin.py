"""Admin of the data audits: the reports (read-only, each check rendered with its numbers), a *Run audit now*
button for staff who may add reports, and the daily ingestion counters (read-only)."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from personalization.models import AuditReport, IngestionCounter
from personalization.monitoring.audit import request_audit
from personalization.read_only_admin import ReadOnlyAdmin

logger = logging.getLogger("personalization.admin")
COLOURS = {"pass": "#2e7d32", "warn": "#b26a00", "fail": "#ba2121"}


def _status(status: str) -> str:
    return format_html('<strong style="color:{}">{}</strong>', COLOURS.get(status, "inherit"), status.upper())


def _compact(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)


@admin.register(AuditReport)
class AuditReportAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "status_display", "days", "period_start", "period_end", "trigger", "flagged")
    list_filter = ("status", "trigger")
    date_hierarchy = "created_at"
    fields = ("created_at", "status_display", "trigger", "period_start", "period_end", "days", "baseline_days",
              "checks_table")
    readonly_fields = fields
    change_list_template = "personalization/admin/auditreport_change_list.html"

    def can_run(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff and request.user.has_perm(
            "personalization.add_auditreport")

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        return super().changelist_view(request, {**(extra_context or {}), "can_run_audit": self.can_run(request)})

    def get_urls(self) -> list:
        return [path("run/", self.admin_site.admin_view(self.run_view), name="personalization_auditreport_run"),
                *super().get_urls()]

    def run_view(self, request: HttpRequest) -> HttpResponseRedirect:
        """POST: start an audit of the last day on a worker (or in a thread of this process)."""
        if not self.can_run(request):
            raise PermissionDenied("You may not run data audits.")
        if request.method == "POST":
            queued = request_audit(days=1, trigger="admin")
            logger.info("%s started a data audit (%s)", request.user, "queued" if queued else "in this process")
            where = "a Celery worker" if queued else "a background thread of this web process"
            self.message_user(request, f"Audit of the last day started on {where}; its report appears here in a "
                                       "moment (reload the page).", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:personalization_auditreport_changelist"))

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: AuditReport) -> str:
        return _status(obj.status)

    @admin.display(description="checks not passed")
    def flagged(self, obj: AuditReport) -> str:
        return ", ".join(f"{c['name']} ({c['status']})" for c in obj.checks if c.get("status") != "pass") or "-"

    @admin.display(description="checks")
    def checks_table(self, obj: AuditReport) -> str:
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td>"
                "<td><code>{}</code></td></tr>",
            ((c.get("name", ""), _status(c.get("status", "")), c.get("summary", ""), _compact(c.get("numbers", {})),
              _compact(c.get("thresholds", {})), _compact(c.get("details", []))) for c in obj.checks),
        )
        return format_html("<table><tr><th>check</th><th>status</th><th>summary</th><th>numbers</th>"
                           "<th>thresholds</th><th>details (first 20)</th></tr>{}</table>", rows)


@admin.register(IngestionCounter)
class IngestionCounterAdmin(ReadOnlyAdmin):
    list_display = ("day", "name", "count", "updated_at")
    list_filter = ("name",)
    date_hierarchy = "day"
