"""Admin: the event log (read-only), model versions with metrics side by side, retrain / promote / roll back."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from personalization import training
from personalization.conf import settings
from personalization.models import Event, ModelVersion, VisitorLink

logger = logging.getLogger("personalization.admin")


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "event_type", "item_key", "visitor_short", "user", "value", "source")
    list_filter = ("event_type", "source")
    search_fields = ("item_key", "visitor_id", "recommendation_id")
    date_hierarchy = "occurred_at"
    list_select_related = ("user",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="visitor")
    def visitor_short(self, obj: Event) -> str:
        return obj.visitor_id[:8]


@admin.register(VisitorLink)
class VisitorLinkAdmin(admin.ModelAdmin):
    list_display = ("visitor_id", "user", "linked_at")
    search_fields = ("visitor_id",)
    raw_id_fields = ("user",)


def _pretty(data: Any) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(data, indent=2, sort_keys=True))


def _metric(version: ModelVersion, name: str) -> str:
    value = (version.test_metrics.get("system") or {}).get(name)
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


@admin.action(description="Retrain now (queue a new version)")
def retrain_now(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    with transaction.atomic():  # the hand-over to Celery (or to a thread) happens when this block commits
        version = training.enqueue(user=request.user)
    logger.info("%s queued training of version %s", request.user, version.pk)
    here = training.runs_here(version)
    if here:
        modeladmin.message_user(
            request, f"Version {version.pk} is training in this web process, because {here}. Its progress shows "
                     "in the list; start a Celery worker to train outside the web server (README, \"Models and "
                     "training\").", messages.WARNING)
        return
    minutes = training.queued_after().total_seconds() / 60
    modeladmin.message_user(request, f"Queued version {version.pk} for a Celery worker; its progress shows in the "
                                     f"list (if no worker starts it within {minutes:g} minutes, it is marked failed).")


@admin.action(description="Promote (make live even if it does not beat the live one)")
def promote_versions(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    if queryset.count() != 1:
        modeladmin.message_user(request, "Select exactly one version to promote.", messages.ERROR)
        return
    version = queryset.get()
    try:
        training.promote(version, force=True)
    except training.PromotionRefused as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return
    logger.info("%s promoted version %s", request.user, version.pk)
    modeladmin.message_user(request, f"Version {version.pk} is live.")


@admin.action(description="Roll back to the previous live version")
def rollback_live(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    try:
        version = training.rollback()
    except training.PromotionRefused as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return
    logger.info("%s rolled back to version %s", request.user, version.pk)
    modeladmin.message_user(request, f"Rolled back: version {version.pk} is live.")


@admin.action(description="Cancel training")
def cancel_training(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    count = training.cancel(queryset)
    modeladmin.message_user(request, f"Cancelled {count} version(s): a queued one at once, a training one at its "
                                     "next stage.")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "status_display", "family", "progress_display", "ndcg", "recall", "live_ndcg", "data_end",
                    "created_at", "created_by")
    list_filter = ("status", "family")
    actions = [retrain_now, promote_versions, rollback_live, cancel_training]
    readonly_fields = ("family", "status_display", "load_error_display", "stage", "progress", "created_by",
                       "created_at", "started_at",
                       "finished_at", "promoted_at", "previous", "data_start", "data_end", "cutoff", "artifact",
                       "task_id", "metrics_table", "params_pretty", "tuning_pretty", "quality_pretty", "error")
    exclude = ("params", "tuning", "metrics", "test_metrics", "data_quality", "cancel_requested", "load_error",
               "load_failed_at")
    change_list_template = "personalization/admin/modelversion_change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self) -> list:
        return [path("retrain/", self.admin_site.admin_view(self.retrain_view),
                     name="personalization_modelversion_retrain"), *super().get_urls()]

    def retrain_view(self, request: HttpRequest) -> HttpResponseRedirect:
        if request.method == "POST" and self.has_change_permission(request):
            retrain_now(self, request, ModelVersion.objects.none())
        return HttpResponseRedirect(reverse("admin:personalization_modelversion_changelist"))

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: ModelVersion) -> str:
        if obj.load_error and obj.status in {ModelVersion.Status.LIVE, ModelVersion.Status.READY,
                                             ModelVersion.Status.RETIRED}:
            return format_html('<strong style="color:#ba2121" title="{}">{}, not loadable</strong>',
                               obj.load_error, obj.get_status_display().lower())
        return obj.get_status_display()

    @admin.display(description="serving")
    def load_error_display(self, obj: ModelVersion) -> str:
        if not obj.load_error:
            return "-"
        when = f" (at {obj.load_failed_at:%Y-%m-%d %H:%M:%S %Z})" if obj.load_failed_at else ""
        return format_html(
            '<strong style="color:#ba2121">Not loadable{}:</strong> {}<br>Serving keeps the model it had loaded '
            "before, or popular items. Retrain, or roll back to the previous version.", when, obj.load_error)

    @admin.display(description="progress")
    def progress_display(self, obj: ModelVersion) -> str:
        if obj.status in {ModelVersion.Status.QUEUED, ModelVersion.Status.TRAINING}:
            return f"{obj.stage or 'queued'} {obj.progress:.0f}%"
        return obj.stage or "-"

    @admin.display(description=f"{settings.PROMOTION_METRIC} (test)")
    def ndcg(self, obj: ModelVersion) -> str:
        return _metric(obj, "ndcg@10")

    @admin.display(description="recall@20 (test)")
    def recall(self, obj: ModelVersion) -> str:
        return _metric(obj, "recall@20")

    @admin.display(description="live on same window")
    def live_ndcg(self, obj: ModelVersion) -> str:
        value = (obj.test_metrics.get("live") or {}).get("ndcg@10")
        return f"{value:.4f}" if isinstance(value, (int, float)) else "-"

    @admin.display(description="metrics on the test window")
    def metrics_table(self, obj: ModelVersion) -> str:
        rows = {k: v for k, v in obj.test_metrics.items() if isinstance(v, dict)}
        if not rows:
            return "-"
        columns = sorted({c for r in rows.values() for c in r if isinstance(r[c], (int, float))})
        head = format_html_join("", "<th>{}</th>", ((c,) for c in columns))
        body = format_html_join(
            "", "<tr><th>{}</th>{}</tr>",
            (
                (name, format_html_join("", "<td>{}</td>", (
                    (f"{row[c]:.4f}" if isinstance(row.get(c), (int, float)) else "-",) for c in columns
                )))
                for name, row in sorted(rows.items(), key=lambda kv: (kv[0] != "system", kv[0]))
            ),
        )
        return format_html("<table><tr><th>model</th>{}</tr>{}</table>", head, body)

    @admin.display(description="parameters")
    def params_pretty(self, obj: ModelVersion) -> str:
        return _pretty(obj.params)

    @admin.display(description="tuning")
    def tuning_pretty(self, obj: ModelVersion) -> str:
        return _pretty(obj.tuning)

    @admin.display(description="data quality")
    def quality_pretty(self, obj: ModelVersion) -> str:
        return _pretty(obj.data_quality)


import personalization.delivery.admin  # noqa: E402,F401  (content blocks, variants, stats)
from personalization.delivery import notifications_admin  # noqa: E402,F401  (rules + notification log)
