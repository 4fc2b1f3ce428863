"""Admin: the event log (read-only), model versions with metrics side by side, retrain / promote / roll back, and
data rights: forget the people behind selected events or links, a *Forget a person* form (by user id or visitor id,
also downloading their data as JSON) and the read-only audit log of forget requests."""

from __future__ import annotations

import json
import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from personalization import privacy, training
from personalization.conf import settings
from personalization.models import DriftDetection, Event, ForgetRequest, ModelVersion, VisitorLink
from personalization.monitoring import insight_admin

logger = logging.getLogger("personalization.admin")


#: The most people one admin action forgets (selecting "all" events must not erase the whole shop by accident).
MAX_PEOPLE_PER_ACTION = 100


def _forget_all(modeladmin: admin.ModelAdmin, request: HttpRequest, people: set[tuple[str, Any]]) -> None:
    if len(people) > MAX_PEOPLE_PER_ACTION:
        modeladmin.message_user(
            request, f"The selection covers {len(people)} people; forget at most {MAX_PEOPLE_PER_ACTION} at once "
                     "(or use manage.py personalization_forget).", messages.ERROR)
        return
    totals = dict.fromkeys(privacy.TABLES, 0)
    for kind, ident in sorted(people, key=str):
        receipt = privacy.forget(**{kind: ident}, channel="admin", requested_by=request.user.get_username())
        for table, count in receipt.counts.items():
            totals[table] += count
    logger.info("%s forgot %d people: %s", request.user, len(people), totals)
    deleted = ", ".join(f"{n} {t.replace('_', ' ')}" for t, n in totals.items())
    modeladmin.message_user(request, f"Forgot {len(people)} people: deleted {deleted}. They get cold-start lists "
                                     "from now on; the audit log lists the requests.")


@admin.action(description="Forget the people behind the selected events", permissions=["delete"])
def forget_event_people(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    rows = queryset.order_by().values_list("user_id", "visitor_id").distinct()
    _forget_all(modeladmin, request, {("user_id", u) if u else ("visitor_id", v) for u, v in rows if u or v})


@admin.action(description="Forget the users of the selected links", permissions=["delete"])
def forget_linked_users(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    _forget_all(modeladmin, request, {("user_id", u) for u in queryset.values_list("user_id", flat=True)})


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "event_type", "item_key", "visitor_short", "user", "value", "source")
    list_filter = ("event_type", "source")
    search_fields = ("item_key", "visitor_id", "recommendation_id")
    date_hierarchy = "occurred_at"
    list_select_related = ("user",)
    show_full_result_count = False
    actions = [forget_event_people]

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
    actions = [forget_linked_users]


class PersonForm(forms.Form):
    """Who to forget or export: a user id or a visitor id."""

    user_id = forms.IntegerField(required=False, min_value=1, label="User id",
                                 help_text="the user's primary key (the number in their admin page's address)")
    visitor_id = forms.CharField(required=False, max_length=privacy.MAX_VISITOR_ID, label="Visitor id",
                                 help_text="Event.visitor_id; a visitor linked to a user at sign-in is that user")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        if (data.get("user_id") is None) == (not data.get("visitor_id")):
            raise forms.ValidationError("Give either a user id or a visitor id.")
        return data

    def identifier(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"user_id": data["user_id"]} if data.get("user_id") is not None else {"visitor_id": data["visitor_id"]}


@admin.register(ForgetRequest)
class ForgetRequestAdmin(admin.ModelAdmin):
    """The audit log of erasures (read-only, kept), and the *Forget a person* form."""

    list_display = ("created_at", "channel", "requested_by", "short_hash", "deleted")
    list_filter = ("channel",)
    search_fields = ("subject_hash",)
    readonly_fields = ("created_at", "channel", "requested_by", "subject_hash", "subject_hashes", "counts")
    change_list_template = "personalization/admin/forgetrequest_change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the audit record outlives the data it describes

    def get_urls(self) -> list:
        return [path("forget/", self.admin_site.admin_view(self.forget_view),
                     name="personalization_forgetrequest_forget"), *super().get_urls()]

    @admin.display(description="subject (keyed hash)")
    def short_hash(self, obj: ForgetRequest) -> str:
        return obj.subject_hash[:16]

    @admin.display(description="rows deleted")
    def deleted(self, obj: ForgetRequest) -> str:
        return ", ".join(f"{n} {t.replace('_', ' ')}" for t, n in (obj.counts or {}).items() if n) or "none"

    def forget_view(self, request: HttpRequest) -> HttpResponse:
        """GET: the form; POST: export the person's data as a JSON download, or forget them and show the receipt."""
        if not request.user.has_perm("personalization.add_forgetrequest"):
            raise PermissionDenied
        form = PersonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            who = form.identifier()
            try:
                if "export" in request.POST:
                    data = privacy.export_person(**who)
                    logger.info("%s exported the data of %s", request.user, next(iter(who)))
                    response = JsonResponse(data, json_dumps_params={"indent": 2})
                    response["Content-Disposition"] = 'attachment; filename="personal-data.json"'
                    return response
                receipt = privacy.forget(**who, channel="admin", requested_by=request.user.get_username())
            except ValueError as exc:
                form.add_error(None, str(exc))
            else:
                deleted = ", ".join(f"{receipt.counts[t]} {t.replace('_', ' ')}" for t in privacy.TABLES)
                self.message_user(request, f"Forget request {receipt.request_id}: deleted {deleted}; "
                                           f"{receipt.subjects} subject id(s) hidden from the live model.")
                for note in receipt.notes:
                    self.message_user(request, note, messages.WARNING)
                return HttpResponseRedirect(reverse("admin:personalization_forgetrequest_changelist"))
        context = {**self.admin_site.each_context(request), "title": "Forget a person", "form": form,
                   "opts": self.model._meta}
        return TemplateResponse(request, "personalization/admin/forget_person.html", context,
                                status=400 if form.errors else 200)


def _pretty(data: Any) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(data, indent=2, sort_keys=True))


def _metric(version: ModelVersion, name: str) -> str:
    value = (version.test_metrics.get("system") or {}).get(name)
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


@admin.action(description="Retrain now (queue a new version)", permissions=["train"])
def retrain_now(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    tune = request.POST.get("tune") in ("1", "on", "true")  # the change list's "tune" box
    with transaction.atomic():  # the hand-over to Celery (or to a thread) happens when this block commits
        version = training.enqueue(user=request.user, tune=tune)
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


@admin.action(description="Promote (make live even if it does not beat the live one)", permissions=["promote"])
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


@admin.action(description="Roll back to the previous live version", permissions=["rollback"])
def rollback_live(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    try:
        version = training.rollback()
    except training.PromotionRefused as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return
    logger.info("%s rolled back to version %s", request.user, version.pk)
    modeladmin.message_user(request, f"Rolled back: version {version.pk} is live.")


@admin.action(description="Cancel training", permissions=["cancel"])
def cancel_training(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    count = training.cancel(queryset)
    modeladmin.message_user(request, f"Cancelled {count} version(s): a queued one at once, a training one at its "
                                     "next stage.")


def _drift_notice(request: HttpRequest) -> None:
    """Tell staff on the model version list about drift no one acknowledged yet, and what it triggered."""
    from personalization.monitoring.drift import unacknowledged

    detections = unacknowledged()
    if not detections:
        return
    retrains = sorted({d.retrain_id for d in detections if d.retrain_id})
    url = reverse("admin:personalization_driftdetection_changelist") + "?acknowledged__exact=0"
    latest = detections[0]
    messages.warning(request, format_html(
        'Drift: {} unacknowledged detection(s) this week, latest {} ({}).{} <a href="{}">Review them</a>.',
        len(detections), latest, latest.detected_at.strftime("%Y-%m-%d %H:%M"),
        f" Retrain queued: version {', '.join(map(str, retrains))}." if retrains else "", url))


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "status_display", "family", "progress_display", "ndcg", "recall", "live_ndcg", "data_end",
                    "created_at", "created_by")
    list_filter = ("status", "family")
    actions = [retrain_now, promote_versions, rollback_live, cancel_training]
    readonly_fields = ("family", "status_display", "load_error_display", "stage", "progress", "created_by",
                       "created_at", "started_at",
                       "finished_at", "promoted_at", "previous", "data_start", "data_end", "cutoff", "artifact",
                       "task_id", "metrics_table", "shap_chart", "bias_display", "params_pretty", "tuning_pretty",
                       "quality_pretty", "error")
    exclude = ("params", "tuning", "metrics", "test_metrics", "data_quality", "cancel_requested", "load_error",
               "load_failed_at", "insights")
    change_list_template = "personalization/admin/modelversion_change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # One permission per action (ModelVersion.Meta.permissions); a superuser has them all.
    def _has_perm(self, request: HttpRequest, action: str) -> bool:
        return request.user.has_perm(f"personalization.{action}_modelversion")

    def has_train_permission(self, request: HttpRequest) -> bool:
        return self._has_perm(request, "train")

    def has_promote_permission(self, request: HttpRequest) -> bool:
        return self._has_perm(request, "promote")

    def has_rollback_permission(self, request: HttpRequest) -> bool:
        return self._has_perm(request, "rollback")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return self._has_perm(request, "cancel")

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        """The list; an action the user may not run is hidden, and posting it anyway answers 403."""
        name = request.POST.get("action") if request.method == "POST" else None
        if name and name not in self.get_actions(request) and any(
            getattr(func, "__name__", "") == name for func in self.actions
        ):
            raise PermissionDenied(f"You may not run {name!r} on model versions.")
        context = {**(extra_context or {}), "can_train": self.has_train_permission(request)}
        if request.method == "GET":
            _drift_notice(request)
        return super().changelist_view(request, extra_context=context)

    def get_urls(self) -> list:
        return [path("retrain/", self.admin_site.admin_view(self.retrain_view),
                     name="personalization_modelversion_retrain"),
                path("why/", self.admin_site.admin_view(self.why_view), name="personalization_modelversion_why"),
                *super().get_urls()]

    def why_view(self, request: HttpRequest) -> HttpResponse:
        """A visitor's list with the features behind each item (staff who may view model versions)."""
        if not self.has_view_permission(request):
            raise PermissionDenied("You may not view model versions.")
        return insight_admin.why_view(self, request)

    @admin.display(description="what the ranker relies on (mean |SHAP|)")
    def shap_chart(self, obj: ModelVersion) -> str:
        return insight_admin.shap_chart_html(obj)

    @admin.display(description="bias report (test window)")
    def bias_display(self, obj: ModelVersion) -> str:
        return insight_admin.bias_html(obj)

    def retrain_view(self, request: HttpRequest) -> HttpResponseRedirect:
        if not self.has_train_permission(request):
            raise PermissionDenied("You may not train model versions.")
        if request.method == "POST":
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
import personalization.monitoring.admin  # noqa: E402,F401  (list statistics, A/B tests between model versions)
from personalization.delivery import notifications_admin  # noqa: E402,F401  (rules + notification log)
from personalization.monitoring import audit_admin  # noqa: E402,F401  (data audits, ingestion counters)


def acknowledge_detections(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    """Mark drift detections as seen: they leave the notice on the model version list."""
    count = queryset.filter(acknowledged=False).update(acknowledged=True, acknowledged_by=request.user.get_username())
    logger.info("%s acknowledged %d drift detection(s)", request.user.get_username(), count)
    modeladmin.message_user(request, f"Acknowledged {count} drift detection(s).")


acknowledge_detections.short_description = "Acknowledge selected detections"  # type: ignore[attr-defined]


@admin.register(DriftDetection)
class DriftDetectionAdmin(admin.ModelAdmin):
    """What the drift detectors found (read-only; written by personalization.detect_drift)."""

    list_display = ("detected_at", "detector", "subject", "statistic", "value_display", "threshold", "model_version",
                    "retrain", "acknowledged")
    list_filter = ("detector", "acknowledged", "statistic")
    search_fields = ("subject",)
    actions = [acknowledge_detections]
    readonly_fields = ("detector", "subject", "statistic", "value", "threshold", "baseline_start", "baseline_end",
                       "recent_start", "recent_end", "evidence_pretty", "model_version", "detected_at", "retrain",
                       "acknowledged", "acknowledged_by")
    exclude = ("evidence",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request)  # the list and its action only

    @admin.display(description="value", ordering="value")
    def value_display(self, obj: DriftDetection) -> str:
        return f"{obj.value:.4g}"

    @admin.display(description="evidence")
    def evidence_pretty(self, obj: DriftDetection) -> str:
        return _pretty(obj.evidence)
