"""``GET bundle/``: the model bundle tracker.js re-ranks slots with (``personalization.delivery.bundle``).

- ``?segment=all|country=GB|device=mobile``: the segment's bundle, identical for everyone in it:
  ``Cache-Control: public`` and no dependence on cookies, so a CDN can cache it per URL.
- no ``segment``: the visitor's own bundle (``Cache-Control: private``) when the model or their events know them,
  else the ``all`` segment's bundle (``public``, but ``Vary: Cookie`` since the same URL is personal for others).

Every answer carries a weak ETag over the content and answers ``If-None-Match`` with 304.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from personalization.api.degraded import DegradesOnDatabaseError
from personalization.delivery import bundle as bundles

logger = logging.getLogger("personalization.api")

_DISPLAY = inline_serializer("BundleDisplay", {
    "title": serializers.ListField(child=serializers.CharField()),
    "url": serializers.ListField(child=serializers.CharField()),
    "price": serializers.ListField(child=serializers.FloatField(allow_null=True)),
    "category": serializers.ListField(child=serializers.CharField()),
})
_USER = inline_serializer("BundleUser", {
    "vector": serializers.CharField(help_text="base64 of int8[dims]"),
    "scale": serializers.FloatField(),
    "source": serializers.ChoiceField(["als", "bpr", "item2vec", "history-mean"]),
}, allow_null=True)
BUNDLE_SCHEMA = inline_serializer("ModelBundle", {
    "format": serializers.IntegerField(help_text="bundle format version (1)"),
    "model_version": serializers.IntegerField(allow_null=True, help_text="null in the stand-in bundle"),
    "recommendation_id": serializers.CharField(),
    "segment": serializers.CharField(allow_null=True, help_text="null for a personal bundle"),
    "family": serializers.CharField(help_text="model family the vectors come from"),
    "dims": serializers.IntegerField(),
    "items": serializers.ListField(child=serializers.CharField()),
    "vectors": serializers.CharField(help_text="base64 of int8[len(items) * dims], row-major"),
    "scales": serializers.CharField(help_text="base64 of little-endian float32[len(items)]: vector = int8 * scale"),
    "user": _USER,
    "display": _DISPLAY,
    "ttl": serializers.IntegerField(help_text="seconds the browser may reuse the bundle"),
    "message": serializers.CharField(),
})


class BundleView(DegradesOnDatabaseError, APIView):
    """Compact model bundle (quantized item vectors, visitor vector, display fields) for on-device re-ranking."""

    # No DRF authentication: a segment bundle must not touch the session (that would add Vary: Cookie); the
    # personal form reads the visitor cookie and Django's user directly.
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        summary="Model bundle for on-device re-ranking",
        parameters=[OpenApiParameter("segment", OpenApiTypes.STR, description=(
            "'all', 'country=<code>' or 'device=<type>': the segment's bundle, the same for everyone (CDN-cacheable). "
            "Omit it for the visitor's own bundle."))],
        responses={
            200: BUNDLE_SCHEMA,
            304: OpenApiResponse(description="If-None-Match matched the bundle's ETag"),
            400: OpenApiResponse(description="Unknown segment"),
            404: OpenApiResponse(description="No live model (or one without item vectors) yet"),
        },
    )
    def get(self, request: Request) -> Response:
        segment = request.query_params.get("segment")
        try:
            if segment is not None:
                if not bundles.valid_segment(segment):
                    return Response({"segment": [f"Unknown segment {segment!r}: use 'all', 'country=<code>' "
                                                 f"(e.g. country=GB) or 'device=<type>' (e.g. device=mobile)."]},
                                    status=400)
                return self._answer(request, bundles.segment_bundle(segment), personal=False, vary_cookie=False)
            return self._for_visitor(request)
        except bundles.NoModel as exc:
            return Response({"detail": str(exc), "message": str(exc), "format": bundles.FORMAT}, status=404)

    def degraded(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The database fails: the segment's bundle of the model in memory, else an empty one."""
        segment = request.query_params.get("segment") or "all"
        try:
            return Response(bundles.segment_bundle(segment if bundles.valid_segment(segment) else "all"))
        except Exception:  # noqa: BLE001 - no model in memory, or the cache fails too
            return Response(bundles.unavailable_bundle(
                request.query_params.get("segment"), "Recommendations are temporarily unavailable (database "
                "error); the page keeps its own order. The bundle is asked for again in a minute."))

    def _for_visitor(self, request: Request) -> Response:
        from personalization.tracking.identity import get_visitor

        django_request = request._request
        visitor = get_visitor(django_request)
        subject = visitor.subject if visitor.trackable else "v:"
        history = bundles.visitor_history(subject)
        _, system = bundles.live_model()
        known = bundles.knows(system, subject)
        if not history and not known:
            return self._answer(request, bundles.segment_bundle("all"), personal=False, vary_cookie=True)
        body = bundles.personal_bundle(django_request, subject, history)
        return self._answer(request, body, personal=True, vary_cookie=True)

    @staticmethod
    def _answer(request: Request, body: dict, *, personal: bool, vary_cookie: bool) -> Response:
        tag = bundles.etag(body)
        wanted = parse_etags(request.headers.get("If-None-Match", ""))
        strip = [t[2:] if t.startswith("W/") else t for t in wanted]
        response = Response(status=304) if (tag[2:] in strip or "*" in wanted) else Response(body)
        response["ETag"] = tag
        if personal:
            patch_cache_control(response, private=True, max_age=bundles.PERSONAL_TTL)
        else:
            patch_cache_control(response, public=True, max_age=bundles.SEGMENT_TTL)
        patch_vary_headers(response, ["Cookie"] if vary_cookie else ["Accept-Encoding"])
        return response
