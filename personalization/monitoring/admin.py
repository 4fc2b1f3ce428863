"""Admin of the learning loop: the daily list statistics (read-only, with totals) and A/B tests between model
versions (start, results with confidence intervals, end, end and promote the winner)."""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join

from personalization.models import Experiment, ListDailyStat, ModelVersion
from personalization.monitoring import experiments
from personalization.read_only_admin import ReadOnlyAdmin
from personalization.registry import PromotionRefused, live_version

logger = logging.getLogger("personalization.admin")


def _rate(num: float, den: float) -> str:
    return f"{num / den:.2%}" if den else "-"


@admin.register(ListDailyStat)
class ListDailyStatAdmin(ReadOnlyAdmin):
    list_display = ("day", "slot", "model_version_id", "experiment_id", "arm", "explored", "position", "lists",
                    "impressions", "clicks", "ctr_display", "carts", "purchases", "conversion_display", "revenue",
                    "visitors")
    list_filter = ("slot", "model_version", "arm", "explored", "experiment", "day")
    date_hierarchy = "day"
    change_list_template = "personalization/admin/listdailystat_change_list.html"
    show_full_result_count = False
    deletable = False  # recomputed by personalization.aggregate_list_stats

    @admin.display(description="CTR")
    def ctr_display(self, obj: ListDailyStat) -> str:
        return _rate(obj.clicks, obj.impressions)

    @admin.display(description="conversion / list")
    def conversion_display(self, obj: ListDailyStat) -> str:
        return _rate(obj.purchases, obj.lists)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        """The list, with totals, CTR and conversion over every filtered row (not only this page)."""
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            totals = context["cl"].queryset.aggregate(
                lists=Sum("lists"), impressions=Sum("impressions"), clicks=Sum("clicks"), carts=Sum("carts"),
                purchases=Sum("purchases"), revenue=Sum("revenue"))
            totals = {k: v or 0 for k, v in totals.items()}
            totals["ctr"] = _rate(totals["clicks"], totals["impressions"])
            totals["conversion"] = _rate(totals["purchases"], totals["lists"])
            context["totals"] = totals
        return response


class ExperimentForm(forms.ModelForm):
    """Start an A/B test: both versions must load; one experiment per slot (one on every slot runs alone)."""

    class Meta:
        model = Experiment
        fields = ("name", "version_a", "version_b", "share_b", "slot", "minimum_detectable_effect",
                  "primary_metric")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        trained = ModelVersion.objects.filter(status__in=experiments.LOADABLE).order_by("-created_at")
        for name in ("version_a", "version_b"):
            if name in self.fields:
                self.fields[name].queryset = trained
        if "version_a" in self.fields and not self.initial.get("version_a"):
            live = live_version()
            self.initial["version_a"] = live.pk if live else None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            experiments.validate_start(version_a=data.get("version_a"), version_b=data.get("version_b"),
                                       share_b=data.get("share_b", 0.0), slot=data.get("slot") or "",
                                       minimum_detectable_effect=data.get("minimum_detectable_effect", 0.0))
        except experiments.ExperimentError as exc:
            for field, errors in exc.errors.items():
                self.add_error(field if field in self.fields else None, errors)
        return data


def _end(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, promote: bool) -> None:
    running = list(queryset.filter(status=Experiment.Status.RUNNING))
    if not running:
        modeladmin.message_user(request, "None of the selected experiments is running.", messages.WARNING)
        return
    if promote and len(running) != 1:
        modeladmin.message_user(request, "Select exactly one running experiment to end and promote its winner.",
                                messages.ERROR)
        return
    for experiment in running:
        try:
            ended = experiments.end(experiment, user=request.user, promote_winner=promote)
        except (experiments.ExperimentError, PromotionRefused) as exc:
            modeladmin.message_user(request, f"Experiment {experiment.pk}: {exc}", messages.ERROR)
            continue
        logger.info("%s ended experiment %s (promote=%s)", request.user, ended.pk, promote)
        modeladmin.message_user(request, f"Experiment {ended.pk}: {ended.outcome}")


@admin.action(description="End the selected experiments (the live version serves everyone)", permissions=["promote"])
def end_experiments(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    _end(modeladmin, request, queryset, promote=False)


@admin.action(description="End and promote the winner (B only if significantly better)", permissions=["promote"])
def end_and_promote(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    _end(modeladmin, request, queryset, promote=True)


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return f"[{_fmt(value[0], pct)}, {_fmt(value[1], pct)}]"
    return f"{value:.2%}" if pct else (f"{value:.4f}" if isinstance(value, float) else str(value))


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    form = ExperimentForm
    list_display = ("id", "name", "status", "version_a", "version_b", "share_b", "slot_display", "primary_metric",
                    "started_at", "started_by", "ended_at", "promoted")
    list_filter = ("status", "slot", "primary_metric")
    actions = [end_experiments, end_and_promote]
    readonly_after = ("name", "version_a", "version_b", "share_b", "slot", "minimum_detectable_effect",
                      "primary_metric", "status", "started_at", "started_by", "ended_at", "ended_by", "promoted",
                      "outcome", "results_display")

    def _may_promote(self, request: HttpRequest) -> bool:
        return request.user.has_perm("personalization.promote_modelversion")

    def has_promote_permission(self, request: HttpRequest) -> bool:
        return self._may_promote(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_promote(request)  # it serves a version that is not live to real visitors

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return (request.user.has_perm("personalization.view_experiment")
                or request.user.has_perm("personalization.view_modelversion"))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and self._may_promote(request)  # the change list's actions; an experiment is not edited

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # served lists point at it

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return self.readonly_after if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_after if obj is not None else ExperimentForm.Meta.fields

    def save_model(self, request: HttpRequest, obj: Experiment, form: Any, change: bool) -> None:
        if not change:
            obj.started_by = request.user
            logger.info("%s started experiment %s: v%s vs v%s", request.user, obj.name, obj.version_a_id,
                        obj.version_b_id)
        super().save_model(request, obj, form, change)

    @admin.display(description="slot", ordering="slot")
    def slot_display(self, obj: Experiment) -> str:
        return obj.slot or "every slot"

    @admin.display(description="results")
    def results_display(self, obj: Experiment) -> str:
        result = experiments.results(obj)
        arms = result["arms"]
        rows = [
            ("Visitors", "visitors", False, None), ("Lists", "lists", False, None),
            ("Seen positions", "impressions", False, None), ("Clicks", "clicks", False, None),
            ("CTR", "ctr", True, "ctr_ci"), ("Conversion", "conversion", True, "conversion_ci"),
            ("Revenue per visitor", "revenue_per_visitor", False, "revenue_per_visitor_ci"),
        ]
        body = format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (label, _fmt(arms["A"][key], pct), _fmt(arms["A"][ci], pct) if ci else "",
             _fmt(arms["B"][key], pct), _fmt(arms["B"][ci], pct) if ci else "") for label, key, pct, ci in rows))
        tests = format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (name, _fmt(t["difference"], name != "revenue"), _fmt((t["ci_low"], t["ci_high"]), name != "revenue"),
             _fmt(t["p_value"])) for name, t in result["tests"].items()))
        warning = format_html('<p style="color:#ba2121"><strong>{}</strong></p>', result["warning"]) if (
            result["warning"]) else ""
        return format_html(
            "{}<p>{}</p><p>Sample size per arm for a {} lift of {}: {} {} (smaller arm: {}).</p>"
            "<table><tr><th></th><th>A</th><th>95% CI</th><th>B</th><th>95% CI</th></tr>{}</table>"
            "<table><tr><th>B - A</th><th>difference</th><th>95% CI</th><th>p-value</th></tr>{}</table>",
            warning, result["verdict"], f"{result['minimum_detectable_effect']:.0%}", result["primary_metric"],
            result["sample_size_per_arm"] or "unknown yet", result["sample_unit"], result["smaller_arm_sample"],
            body, tests)
