"""``GET recommendations/`` and ``GET items/<key>/similar/``: recommendations for the current visitor.

The visitor is the signed visitor cookie or the session user (a cookie is set when the visitor is new). Staff may
read any visitor's list with ``?visitor=<visitor id | u:<user id> | v:<visitor id>>``; for anyone else that
parameter is refused (403), so nobody can read another person's recommendations. Both endpoints are throttled
per visitor and per IP (``API_RATE_VISITOR``, ``API_RATE_IP``).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.cache import caches
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle
from rest_framework.views import APIView

from personalization import serving
from personalization.conf import settings
from personalization.tracking.identity import apply_cookie, get_visitor
from personalization.tracking.schema import parse_item_key

SUBJECT_RE = re.compile(r"^(u:\d{1,18}|v:[A-Za-z0-9_-]{1,64}|[A-Za-z0-9]{32})$")
ERROR_404 = OpenApiResponse(description="Unknown item: not in the catalog.")


# -- throttling ----------------------------------------------------------------------------------------------------
class _Throttle(SimpleRateThrottle):
    setting = ""

    @property
    def cache(self):  # the app's cache alias, not necessarily Django's default cache
        return caches[settings.CACHE_ALIAS]

    def get_rate(self) -> str | None:
        return getattr(settings, self.setting)


class VisitorRateThrottle(_Throttle):
    """``API_RATE_VISITOR`` requests per visitor (the user when signed in, else the visitor cookie)."""

    scope = "personalization_visitor"
    setting = "API_RATE_VISITOR"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        subject = get_visitor(request._request).subject
        return self.cache_format % {"scope": self.scope, "ident": subject}


class IPRateThrottle(_Throttle):
    """``API_RATE_IP`` requests per client IP (behind proxies set DRF's ``NUM_PROXIES``)."""

    scope = "personalization_ip"
    setting = "API_RATE_IP"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class VisitorAndIPRateThrottle(BaseThrottle):
    """:class:`VisitorRateThrottle` and :class:`IPRateThrottle` together, with one cache read and one cache write
    per request instead of one of each per throttle (DRF's sliding-window histories, the same keys and rates).
    A refused request is recorded by neither."""

    parts = (VisitorRateThrottle, IPRateThrottle)

    def __init__(self) -> None:
        self.failed: list[SimpleRateThrottle] = []

    def allow_request(self, request: Request, view: Any) -> bool:
        active = []
        for cls in self.parts:
            throttle = cls()
            if throttle.rate is None:
                continue
            throttle.key = throttle.get_cache_key(request, view)
            if throttle.key is not None:
                active.append(throttle)
        if not active:
            return True
        cache = active[0].cache
        histories = cache.get_many([t.key for t in active])
        self.failed = []
        for throttle in active:
            throttle.now = throttle.timer()
            throttle.history = list(histories.get(throttle.key, []))
            while throttle.history and throttle.history[-1] <= throttle.now - throttle.duration:
                throttle.history.pop()
            if len(throttle.history) >= throttle.num_requests:
                self.failed.append(throttle)
        if self.failed:
            return False
        by_duration: dict[int, dict[str, list[float]]] = {}
        for throttle in active:
            throttle.history.insert(0, throttle.now)
            by_duration.setdefault(throttle.duration, {})[throttle.key] = throttle.history
        for duration, values in by_duration.items():
            cache.set_many(values, duration)
        return True

    def wait(self) -> float | None:
        waits = [w for w in (t.wait() for t in self.failed) if w is not None]
        return max(waits) if waits else None


THROTTLES = [VisitorAndIPRateThrottle]


# -- serializers ---------------------------------------------------------------------------------------------------
class RecommendationQuerySerializer(serializers.Serializer):
    n = serializers.IntegerField(required=False, min_value=1, max_value=100,
                                 help_text="How many items (1..100); default: the slot's n.")
    slot = serializers.CharField(required=False, allow_blank=True, max_length=64,
                                 help_text="A slot of PERSONALIZATION['SLOTS'] (its business rules); default slot "
                                           "when empty.")
    item = serializers.CharField(required=False, max_length=100, help_text='"More like this item": "product:42".')
    category = serializers.CharField(required=False, max_length=100, help_text="Only items of this category.")
    explain = serializers.BooleanField(required=False, default=False,
                                       help_text="Add a short reason per item, from how it was produced.")
    visitor = serializers.CharField(required=False, max_length=80,
                                    help_text="Staff only: whose list (visitor id, u:<user id> or v:<visitor id>).")

    def validate_slot(self, value: str) -> str:
        try:
            return serving.slot_spec(value)["name"]
        except serving.UnknownSlot as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_item(self, value: str) -> str:
        try:
            parse_item_key(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_visitor(self, value: str) -> str:
        if not SUBJECT_RE.match(value):
            raise serializers.ValidationError(
                "Give a visitor id (32 letters and digits), u:<user id> or v:<visitor id>.")
        return value


class SimilarQuerySerializer(serializers.Serializer):
    n = serializers.IntegerField(required=False, min_value=1, max_value=100, help_text="How many items (1..100).")
    slot = serializers.CharField(required=False, allow_blank=True, max_length=64,
                                 help_text="Slot whose rules apply; default slot when empty.")
    explain = serializers.BooleanField(required=False, default=False)

    validate_slot = RecommendationQuerySerializer.validate_slot


class RecommendedItemSerializer(serializers.Serializer):
    key = serializers.CharField(help_text='Item key, e.g. "product:42".')
    score = serializers.FloatField(help_text="Serving score: the model's relevance scaled to 0..1, times boosts.")
    title = serializers.CharField(allow_null=True)
    url = serializers.CharField(allow_null=True)
    image = serializers.CharField(allow_null=True)
    price = serializers.FloatField(allow_null=True)
    category = serializers.CharField(allow_null=True)
    reason = serializers.CharField(required=False, help_text="With explain=1: why this item, in words.")


class RecommendationsSerializer(serializers.Serializer):
    recommendation_id = serializers.CharField(help_text="Send it with impressions/clicks/purchases for attribution.")
    model_version = serializers.IntegerField(allow_null=True, help_text="Live model version; null for fallbacks.")
    slot = serializers.CharField()
    fallback = serializers.CharField(help_text='"" when the live model answered, else the fallback that did.')
    items = RecommendedItemSerializer(many=True)


def _payload(result: serving.Result, explain: bool) -> dict[str, Any]:
    display = serving.item_display(result.keys()) if result.items else {}  # cached: a cache hit makes no query
    items = []
    for rec in result.items:
        shown = display.get(rec.item)
        if shown is None:  # removed from the catalog since it was cached
            continue
        row = {"key": rec.item, "score": rec.score, **{f: shown.get(f) for f in ("title", "url", "image", "price",
                                                                                 "category")}}
        if explain:
            row["reason"] = rec.explanation
        items.append(row)
    return {"recommendation_id": result.recommendation_id, "model_version": result.model_version,
            "slot": result.slot, "fallback": result.fallback, "items": items}


def _not_found(key: str) -> Response:
    return Response({"detail": f"Unknown item {key!r}: it is not in the catalog."}, status=404)


def _exists(key: str) -> bool:
    return bool(serving.item_features([key]))  # the catalog, through serving's item table (no query when known)


class RecommendationsView(APIView):
    """Recommendations for the current visitor (or, for staff, any visitor)."""

    throttle_classes = THROTTLES
    permission_classes: list = []

    @extend_schema(
        parameters=[RecommendationQuerySerializer],
        responses={200: RecommendationsSerializer,
                   400: OpenApiResponse(description="Field errors, e.g. {\"n\": [\"Ensure this value is less than "
                                                    "or equal to 100.\"]}"),
                   403: OpenApiResponse(description="visitor= given by a non-staff caller."),
                   404: ERROR_404,
                   429: OpenApiResponse(description="Too many requests for this visitor or IP.")},
        summary="Recommended items",
    )
    def get(self, request: Request) -> Response:
        query = RecommendationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        django_request = request._request
        if "visitor" in data:
            if not (request.user and request.user.is_staff):
                raise PermissionDenied("Only staff may read another visitor's recommendations.")
            who: Any = data["visitor"]
        else:
            who = django_request
        item = data.get("item")
        if item and not _exists(item):
            return _not_found(item)
        result = serving.recommend(who, data.get("n"), slot=data.get("slot", ""), item=item,
                                   category=data.get("category") or None, explain=data["explain"])
        response = Response(_payload(result, data["explain"]))
        if who is django_request:
            get_visitor(django_request)
            apply_cookie(django_request, response)
        return response


class SimilarItemsView(APIView):
    """Items like one item, with the slot's rules for the current visitor."""

    throttle_classes = THROTTLES
    permission_classes: list = []

    @extend_schema(
        parameters=[SimilarQuerySerializer,
                    OpenApiParameter("key", str, OpenApiParameter.PATH, description='Item key, e.g. "product:42".')],
        responses={200: RecommendationsSerializer, 400: OpenApiResponse(description="Field errors."),
                   404: ERROR_404, 429: OpenApiResponse(description="Too many requests.")},
        summary="Similar items",
    )
    def get(self, request: Request, key: str) -> Response:
        try:
            parse_item_key(key)
        except ValueError as exc:
            return Response({"key": [str(exc)]}, status=400)
        query = SimilarQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        if not _exists(key):
            return _not_found(key)
        django_request = request._request
        result = serving.recommend(django_request, data.get("n"), slot=data.get("slot", ""), item=key,
                                   explain=data["explain"])
        response = Response(_payload(result, data["explain"]))
        get_visitor(django_request)
        apply_cookie(django_request, response)
        return response
