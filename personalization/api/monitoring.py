"""Staff endpoints of the learning loop: ``GET stats/lists/`` (daily outcomes of served lists) and
``GET experiments/<id>/`` (an A/B test between model versions with its per-arm results and tests).

Both need staff with the ``view_modelversion`` permission (the registry's own staff API permission)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Sum
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from personalization.api.model_versions import _StaffView
from personalization.models import Experiment, ListDailyStat
from personalization.monitoring import experiments
from personalization.serving import slot_names

MAX_ROWS = 5000
DEFAULT_DAYS = 30


class ListStatsQuery(serializers.Serializer):
    since = serializers.DateField(required=False, help_text=f"First day (UTC, YYYY-MM-DD); default {DEFAULT_DAYS} "
                                                            "days ago.")
    slot = serializers.CharField(required=False, max_length=64, help_text="Only this slot.")
    model_version = serializers.IntegerField(required=False, min_value=1, help_text="Only this model version.")

    def validate_slot(self, value: str) -> str:
        names = slot_names()
        if names and value not in names:
            raise serializers.ValidationError(f"Unknown slot {value!r}; choose one of {', '.join(names)}.")
        return value


class ListStatSerializer(serializers.ModelSerializer):
    ctr = serializers.FloatField(allow_null=True, read_only=True, help_text="clicks / impressions")
    conversion = serializers.FloatField(allow_null=True, read_only=True, help_text="purchases / lists")

    class Meta:
        model = ListDailyStat
        fields = ["day", "slot", "model_version", "experiment", "arm", "explored", "position", "lists",
                  "impressions", "clicks", "carts", "purchases", "revenue", "visitors", "ctr", "conversion"]
        read_only_fields = fields


class ListStatsView(_StaffView):
    @extend_schema(
        parameters=[ListStatsQuery],
        responses={200: inline_serializer("ListStats", {
            "since": serializers.DateField(), "totals": serializers.DictField(),
            "truncated": serializers.BooleanField(), "rows": ListStatSerializer(many=True)}),
            400: OpenApiResponse(description="Field errors of the query parameters.")},
        summary="Outcomes of served lists per day, slot, model version, A/B arm, exploration and position")
    def get(self, request: Request) -> Response:
        query = ListStatsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        since = params.get("since") or (timezone.now() - timedelta(days=DEFAULT_DAYS)).date()
        rows = ListDailyStat.objects.filter(day__gte=since)
        if "slot" in params:
            rows = rows.filter(slot=params["slot"])
        if "model_version" in params:
            rows = rows.filter(model_version_id=params["model_version"])
        totals: dict[str, Any] = {k: v or 0 for k, v in rows.aggregate(
            lists=Sum("lists"), impressions=Sum("impressions"), clicks=Sum("clicks"), carts=Sum("carts"),
            purchases=Sum("purchases"), revenue=Sum("revenue")).items()}
        totals["ctr"] = totals["clicks"] / totals["impressions"] if totals["impressions"] else None
        page = list(rows.order_by("day", "slot", "model_version_id", "arm", "explored", "position")[:MAX_ROWS + 1])
        return Response({"since": since, "totals": totals, "truncated": len(page) > MAX_ROWS,
                         "rows": ListStatSerializer(page[:MAX_ROWS], many=True).data})


class ExperimentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Experiment
        fields = ["id", "name", "status", "version_a", "version_b", "share_b", "slot", "minimum_detectable_effect",
                  "primary_metric", "started_at", "ended_at", "promoted", "outcome"]
        read_only_fields = fields


class ExperimentView(_StaffView):
    @extend_schema(responses={200: inline_serializer("ExperimentResults", {
        "experiment": ExperimentSerializer(), "results": serializers.DictField(
            help_text="arms (visitors, lists, impressions, clicks, ctr, conversion, revenue per visitor, 95% "
                      "intervals), tests (B - A, 95% interval, p-value), sample_size_per_arm, warning, verdict")}),
        404: OpenApiResponse(description="No such experiment.")},
        summary="An A/B test between model versions with per-arm results and significance tests")
    def get(self, request: Request, pk: int) -> Response:
        experiment = Experiment.objects.filter(pk=pk).first()
        if experiment is None:
            return Response({"detail": f"No experiment {pk}."}, status=404)
        return Response({"experiment": ExperimentSerializer(experiment).data,
                         "results": experiments.results(experiment)})


def _urls() -> list[Any]:
    from django.urls import path

    return [
        path("stats/lists/", ListStatsView.as_view(), name="list-stats"),
        path("experiments/<int:pk>/", ExperimentView.as_view(), name="experiment"),
    ]


urlpatterns = _urls()
