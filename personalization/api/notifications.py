"""Notification endpoints: the in-app inbox, one-click opt-out, open tracking.

``GET notifications/``                       the signed-in user's in-app notifications, newest first, + unread count
``POST notifications/<id>/read/``            mark one read (404 for someone else's)
``POST notifications/read/``                 mark all read
``GET|POST notifications/unsubscribe/<t>/``  GET: confirm page; POST: opt out (the page's button, RFC 8058)
``GET notifications/open/<t>.gif``           1x1 pixel of the HTML email; sets ``opened_at`` once
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from personalization.api.degraded import RETRY_AFTER, DegradesOnDatabaseError
from personalization.delivery import notifications as service
from personalization.models import Notification

logger = logging.getLogger("personalization.api")
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
MAX_LIMIT = 100


class NotificationSerializer(serializers.ModelSerializer):
    trigger = serializers.SerializerMethodField()
    items = serializers.SerializerMethodField()
    read = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "subject", "body", "trigger", "items", "created_at", "read_at", "read"]

    def get_trigger(self, obj: Notification) -> str:
        return str((obj.payload or {}).get("trigger", ""))

    def get_items(self, obj: Notification) -> list[dict]:
        return list((obj.payload or {}).get("items", []))

    def get_read(self, obj: Notification) -> bool:
        return obj.read_at is not None


class InboxOutSerializer(serializers.Serializer):
    unread = serializers.IntegerField()
    results = NotificationSerializer(many=True)


class InboxView(DegradesOnDatabaseError, APIView):
    """The signed-in user's in-app notifications."""

    def degraded(self, request: Request, *args: Any, **kwargs: Any) -> Response | None:
        """The database fails: an empty inbox (the user's own row was read before the failure, or 503)."""
        if not getattr(request._request, "user", None) or not request._request.user.is_authenticated:
            return None
        return Response({"unread": 0, "results": []})

    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[
            OpenApiParameter("limit", int, description=f"at most this many (1..{MAX_LIMIT}, default 20)"),
            OpenApiParameter("unread", bool, description="only unread ones"),
        ],
        responses={200: InboxOutSerializer}, summary="List my notifications",
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("limit", "20")
        try:
            limit = int(raw)
        except ValueError:
            return Response({"limit": [f"Expected an integer 1..{MAX_LIMIT}, got {raw!r}."]}, status=400)
        if not 1 <= limit <= MAX_LIMIT:
            return Response({"limit": [f"Expected an integer 1..{MAX_LIMIT}, got {limit}."]}, status=400)
        rows = service.inbox(request.user)
        if request.query_params.get("unread") in {"1", "true", "yes"}:
            rows = rows.filter(read_at__isnull=True)
        return Response({
            "unread": service.unread_count(request.user),
            "results": NotificationSerializer(rows.order_by("-created_at", "-pk")[:limit], many=True).data,
        })


class MarkReadView(DegradesOnDatabaseError, APIView):
    """Mark one of my notifications read (also counts as opened)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: NotificationSerializer}, summary="Mark a notification read",
                   operation_id="notifications_mark_read")
    def post(self, request: Request, pk: int) -> Response:
        row = service.mark_read(request.user, pk)
        if row is None:
            return Response({"detail": "No such notification in your inbox."}, status=404)
        return Response(NotificationSerializer(row).data)


class MarkAllReadView(DegradesOnDatabaseError, APIView):
    """Mark all my notifications read."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={200: inline_serializer("MarkedCount", {"marked": serializers.IntegerField()})},
        summary="Mark all notifications read", operation_id="notifications_mark_all_read",
    )
    def post(self, request: Request) -> Response:
        return Response({"marked": service.mark_all_read(request.user)})


@csrf_exempt  # the signed token is the credential; mail clients POST here for one-click unsubscribe (RFC 8058)
@require_http_methods(["GET", "POST"])
@never_cache
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a confirmation page (mail scanners follow links); only a POST with a valid token opts the user
    out of every notification (the page's button, or a mail client's RFC 8058 one-click POST)."""
    template = "personalization/notifications/unsubscribed.html"
    try:
        user_id = service.user_for_opt_out_token(token)
        if user_id is None or not get_user_model()._default_manager.filter(pk=user_id).exists():
            return render(request, template, {"ok": False}, status=400)
        if request.method != "POST":
            return render(request, template, {"ok": True, "confirm": True})
        service.opt_out(user_id)
    except DatabaseError:  # nothing was changed: say so and when to try again, never a 500
        logger.warning("personalization: could not process an unsubscribe", exc_info=True)
        response = HttpResponse("The service is temporarily unavailable; nothing was changed. Please try again in "
                                f"{RETRY_AFTER} seconds.", status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER)
        return response
    return render(request, template, {"ok": True})


@never_cache
def opened(request: HttpRequest, token: str) -> HttpResponse:
    """The tracking pixel: always a GIF; a valid token sets the notification's ``opened_at`` (once)."""
    key = service.key_for_open_token(token)
    if key is not None:
        try:
            service.mark_opened(key)
        except DatabaseError:  # the pixel still answers: an open not counted is no reason for a broken image
            logger.warning("personalization: could not record an open", exc_info=True)
    return HttpResponse(PIXEL, content_type="image/gif")


urlpatterns = [
    path("notifications/", InboxView.as_view(), name="notifications"),
    path("notifications/read/", MarkAllReadView.as_view(), name="notifications-read-all"),
    path("notifications/<int:pk>/read/", MarkReadView.as_view(), name="notifications-read"),
    path("notifications/unsubscribe/<str:token>/", unsubscribe, name="notifications-unsubscribe"),
    path("notifications/open/<str:token>.gif", opened, name="notifications-open"),
]
