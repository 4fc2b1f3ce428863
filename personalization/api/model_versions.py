"""Staff endpoints over the model registry: list versions, train, promote, roll back.

``GET models/``, ``POST models/train/`` (202 with the queued version and who trains it: a Celery worker, or a
background thread of this process when no worker can be reached), ``POST models/<id>/promote/`` (409 with the
reason when the version does not beat the live one, unless ``force``), ``POST models/<id>/rollback/``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from personalization import training
from personalization.api.degraded import DegradesOnDatabaseError
from personalization.api.throttling import THROTTLES
from personalization.conf import settings
from personalization.models import ModelVersion

REFUSED = OpenApiResponse(description='{"detail": reason}: the registry refused (e.g. does not beat the live one).')
NOT_FOUND = OpenApiResponse(description="No such model version.")


class ModelVersionSerializer(serializers.ModelSerializer):
    score = serializers.FloatField(allow_null=True, read_only=True,
                                   help_text="The promotion metric on the version's test window.")
    metric = serializers.SerializerMethodField(help_text="Name of the promotion metric (PROMOTION_METRIC).")
    live = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "family", "status", "live", "metric", "score", "test_metrics", "metrics", "params",
                  "data_start", "data_end", "cutoff", "stage", "progress", "error", "created_at", "started_at",
                  "finished_at", "promoted_at", "previous"]
        read_only_fields = fields

    def get_metric(self, obj: ModelVersion) -> str:
        return settings.PROMOTION_METRIC

    def get_live(self, obj: ModelVersion) -> bool:
        return obj.status == ModelVersion.Status.LIVE


class TrainInSerializer(serializers.Serializer):
    models = serializers.ListField(child=serializers.CharField(), required=False, allow_empty=False,
                                   help_text="Candidate-generator families to train (default: TRAINING['models']).")
    tune = serializers.BooleanField(required=False, default=False, help_text="Tune ALS on a validation window.")

    def validate_models(self, value: list[str]) -> list[str]:
        known = training.families()
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise serializers.ValidationError(f"Unknown famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                                              f"choose from {known}.")
        return value


class PromoteInSerializer(serializers.Serializer):
    force = serializers.BooleanField(required=False, default=False,
                                     help_text="Promote even when it does not beat the live version.")


class QueuedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    runs_in = serializers.ChoiceField(choices=["worker", "web process"], help_text=(
        "Who trains it: a Celery worker, or (no broker reachable, or eager tasks) a background thread of the web "
        "process that answered."))
    detail = serializers.CharField(help_text="Where the run went and why, in words.")


class ModelVersionPermission(BasePermission):
    """Staff with the view's ``personalization.<action>_modelversion`` permission (a superuser has them all)."""

    message = "You do not have the permission this action on model versions needs."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        action = getattr(view, "required_action", "view")
        return bool(user and user.is_active and user.is_staff
                    and user.has_perm(f"personalization.{action}_modelversion"))


class _StaffView(DegradesOnDatabaseError, APIView):
    permission_classes = [ModelVersionPermission]
    throttle_classes = THROTTLES
    required_action = "view"  # the ModelVersion permission this view needs: view, train, promote, rollback


class ModelListView(_StaffView):
    @extend_schema(responses={200: ModelVersionSerializer(many=True)}, summary="Model versions with metrics")
    def get(self, request: Request) -> Response:
        versions = ModelVersion.objects.order_by("-created_at")[:100]
        return Response(ModelVersionSerializer(versions, many=True).data)


class TrainView(_StaffView):
    required_action = "train"

    @extend_schema(request=TrainInSerializer, responses={202: QueuedSerializer, 400: OpenApiResponse(
        description="Field errors.")}, summary="Queue the training of a new version")
    def post(self, request: Request) -> Response:
        body = TrainInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with transaction.atomic():  # the hand-over to Celery (or to a thread) happens when this block commits
            version = training.enqueue(user=request.user, models=body.validated_data.get("models"),
                                       tune=body.validated_data["tune"])
        here = training.runs_here(version)
        if here:
            detail = (f"Training in a background thread of this web process, because {here}. Start a Celery worker "
                      "to train outside the web server.")
        else:
            detail = (f"Queued for a Celery worker; if none starts it within "
                      f"{training.queued_after().total_seconds() / 60:g} minutes it is marked failed.")
        version.refresh_from_db(fields=["status"])
        return Response({"id": version.pk, "status": version.status, "runs_in": "web process" if here else "worker",
                         "detail": detail}, status=202)


def _version(pk: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(pk=pk).first()


class PromoteView(_StaffView):
    required_action = "promote"

    @extend_schema(request=PromoteInSerializer, responses={200: ModelVersionSerializer, 404: NOT_FOUND,
                                                           409: REFUSED}, summary="Make a version live")
    def post(self, request: Request, pk: int) -> Response:
        body = PromoteInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = _version(pk)
        if version is None:
            return Response({"detail": f"No model version {pk}."}, status=404)
        try:
            version = training.promote(version, force=body.validated_data["force"])
        except training.PromotionRefused as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(ModelVersionSerializer(version).data)


class RollbackView(_StaffView):
    required_action = "rollback"

    @extend_schema(request=None, responses={200: ModelVersionSerializer, 404: NOT_FOUND, 409: REFUSED},
                   summary="Return from the live version to the one live before it")
    def post(self, request: Request, pk: int) -> Response:
        version = _version(pk)
        if version is None:
            return Response({"detail": f"No model version {pk}."}, status=404)
        if version.status != ModelVersion.Status.LIVE:
            return Response({"detail": f"Version {pk} is {version.status}, not live; only the live version can be "
                                       "rolled back."}, status=409)
        try:
            restored = training.rollback()
        except training.PromotionRefused as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(ModelVersionSerializer(restored).data)


def _urls() -> list[Any]:
    from django.urls import path

    from personalization.api.recommendations import RecommendationsView, SimilarItemsView

    return [
        path("recommendations/", RecommendationsView.as_view(), name="recommendations"),
        path("items/<str:key>/similar/", SimilarItemsView.as_view(), name="similar-items"),
        path("models/", ModelListView.as_view(), name="models"),
        path("models/train/", TrainView.as_view(), name="models-train"),
        path("models/<int:pk>/promote/", PromoteView.as_view(), name="models-promote"),
        path("models/<int:pk>/rollback/", RollbackView.as_view(), name="models-rollback"),
    ]


urlpatterns = _urls()
