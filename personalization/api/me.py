"""The signed-in person's own data (README "Privacy and data rights").

``GET me/data/``     everything the app stores about the caller, as JSON (``personalization.privacy.export_person``)
``DELETE me/data/``  forget the caller (``personalization.privacy.forget``): 200 with the receipt

Only the caller's own data: the person is the signed-in user, never a parameter. Session clients send the CSRF
token with ``DELETE``. While the database does not answer: 503 with ``Retry-After``.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from personalization import privacy

logger = logging.getLogger("personalization.api")
RETRY_AFTER_SECONDS = 30
UNAVAILABLE = OpenApiResponse(description="The database does not answer; retry after Retry-After seconds.")

_Export = inline_serializer("PersonalDataExport", {
    "generated_at": serializers.DateTimeField(),
    "user_id": serializers.IntegerField(allow_null=True),
    "visitor_ids": serializers.ListField(child=serializers.CharField()),
    "subjects": serializers.ListField(child=serializers.CharField()),
    "events": serializers.ListField(child=serializers.DictField()),
    "visitor_links": serializers.ListField(child=serializers.DictField()),
    "recommendation_logs": serializers.ListField(child=serializers.DictField()),
    "notifications": serializers.ListField(child=serializers.DictField()),
    "notification_preferences": serializers.ListField(child=serializers.DictField()),
    "live_model": serializers.DictField(help_text="the live model version and the items of the caller's rows"),
})
_Receipt = inline_serializer("ForgetReceipt", {
    "forget_request": serializers.IntegerField(help_text="id of the audit record (it names nobody)"),
    "created_at": serializers.DateTimeField(),
    "deleted": serializers.DictField(child=serializers.IntegerField(), help_text="rows deleted per table"),
    "subjects_hidden_from_models": serializers.IntegerField(),
    "notes": serializers.ListField(child=serializers.CharField()),
})


def _unavailable() -> Response:
    return Response({"detail": "The database is unavailable; try again later."}, status=503,
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class MyDataView(APIView):
    """Export or erase everything the app stores about the signed-in person."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: _Export, 503: UNAVAILABLE}, summary="Export my data",
                   operation_id="me_data_export")
    def get(self, request: Request) -> Response:
        try:
            return Response(privacy.export_person(user_id=request.user.pk))
        except DatabaseError:
            logger.exception("personalization: could not export the data of a user")
            return _unavailable()

    @extend_schema(request=None, responses={200: _Receipt, 503: UNAVAILABLE}, summary="Forget me",
                   operation_id="me_data_forget")
    def delete(self, request: Request) -> Response:
        try:
            receipt = privacy.forget(user_id=request.user.pk, channel="api", requested_by="the person (API)")
        except DatabaseError:
            logger.exception("personalization: could not forget a user")
            return _unavailable()
        return Response(receipt.as_dict())
