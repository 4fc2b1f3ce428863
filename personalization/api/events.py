"""``POST events/``: one event or ``{"events": [...]}``; 202 with counts, 400 with field errors."""

from __future__ import annotations

import logging

from django.db import DatabaseError
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from personalization.api.degraded import DegradesOnDatabaseError, unavailable
from personalization.api.parsing import BodyError, SessionWithoutCsrf, read_json
from personalization.api.serializers import EventBatchInSerializer, EventInSerializer, IngestOutSerializer
from personalization.conf import settings
from personalization.tracking.identity import apply_cookie, get_visitor
from personalization.tracking.origin import cross_site_refusal
from personalization.tracking.service import record, validate_batch

logger = logging.getLogger("personalization.api")


class EventsView(DegradesOnDatabaseError, APIView):
    """Ingest events from the JavaScript tracker, apps and servers.

    No DRF authentication or CSRF: ``navigator.sendBeacon`` cannot send a CSRF header. Instead a request carrying
    cookies must come from this site or an allowed origin (``Origin`` / ``Sec-Fetch-Site``, see
    ``tracking/origin.py``): cross-site ones answer 403 and store nothing. The body is read directly (the
    validation is hand-written for throughput, see ``tracking/schema.py``).
    """

    authentication_classes = [SessionWithoutCsrf]
    permission_classes: list = []
    parser_classes: list = []

    @extend_schema(
        request=PolymorphicProxySerializer("EventPayload", [EventInSerializer, EventBatchInSerializer], None),
        responses={202: IngestOutSerializer, 400: OpenApiResponse(description="Field errors, per event index")},
        summary="Record events",
    )
    def post(self, request: Request) -> Response:
        django_request = request._request
        refusal = cross_site_refusal(django_request)
        if refusal:
            return Response({"detail": refusal}, status=403)
        try:
            body = read_json(django_request)
        except BodyError as exc:
            return Response(exc.errors, status=exc.status)
        single = not (isinstance(body, dict) and "events" in body)
        if single:
            payloads = [body]
        else:
            payloads = body["events"]
            extra = set(body) - {"events"}
            if extra:
                return Response({"non_field_errors": [f"Unknown field(s): {', '.join(sorted(extra))}."]}, status=400)
            if not isinstance(payloads, list) or not payloads:
                return Response({"events": ["Must be a non-empty list of events."]}, status=400)
            if len(payloads) > settings.MAX_BATCH_SIZE:
                return Response(
                    {"events": [f"At most {settings.MAX_BATCH_SIZE} events per request; got {len(payloads)}."]},
                    status=400,
                )
        source = "tracker" if django_request.GET.get("client") == "tracker" else "api"
        events, errors = validate_batch(payloads, source=source)
        if errors:
            if single:
                return Response(errors[0], status=400)
            return Response({"events": {str(i): e for i, e in errors.items()}}, status=400)
        try:
            result = record(django_request, events)
        except DatabaseError:
            logger.exception("Event store unavailable")
            return unavailable(5, " with the same event ids")
        response = Response(result.as_dict(), status=202)
        get_visitor(django_request)
        apply_cookie(django_request, response)
        return response
