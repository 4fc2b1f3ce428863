"""``GET recommendations/`` and ``GET items/<key>/similar/``: recommendations for the current visitor.

The visitor is the signed visitor cookie or the session user (a cookie is set when the visitor is new). Staff may
read any visitor's list with ``?visitor=<visitor id | u:<user id> | v:<visitor id>>``; for anyone else that
parameter is refused (403), so nobody can read another person's recommendations. Both endpoints are throttled
per visitor and per IP (``API_RATE_VISITOR``, ``API_RATE_IP``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from django.utils.datastructures import MultiValueDict
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from personalization import serving
from personalization.api.degraded import DegradesOnDatabaseError
from personalization.api.throttling import THROTTLES
from personalization.tracking.identity import apply_cookie, get_visitor
from personalization.tracking.schema import parse_item_key

SUBJECT_RE = re.compile(r"^(u:\d{1,18}|v:[A-Za-z0-9_-]{1,64}|[A-Za-z0-9]{32})$")
ERROR_404 = OpenApiResponse(description="Unknown item: not in the catalog.")


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
                                       help_text="Add per item its reason (how it was produced, in words) and, when "
                                                 "the ranker ordered it, the features that raised its score as "
                                                 "sentences (SHAP). Computed afresh: slower than a cached list.")
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


class FactorSerializer(serializers.Serializer):
    sentence = serializers.CharField(help_text='e.g. "Popular right now", "Goes with Blue mug".')
    contribution = serializers.FloatField(help_text="How much it raised the ranker's score (log-odds, SHAP).")
    features = serializers.ListField(child=serializers.CharField(), help_text="The ranker features behind it.")


class RecommendedItemSerializer(serializers.Serializer):
    key = serializers.CharField(help_text='Item key, e.g. "product:42".')
    score = serializers.FloatField(help_text="Serving score: the model's relevance scaled to 0..1, times boosts.")
    title = serializers.CharField(allow_null=True)
    url = serializers.CharField(allow_null=True)
    image = serializers.CharField(allow_null=True)
    price = serializers.FloatField(allow_null=True)
    category = serializers.CharField(allow_null=True)
    reason = serializers.CharField(required=False, help_text="With explain=1: why this item, in words.")
    source = serializers.CharField(required=False, help_text='With explain=1: how it was produced, e.g. '
                                                             '"itemknn:because product:12", "popularity".')
    factors = FactorSerializer(many=True, required=False,
                               help_text="With explain=1: what raised the ranker's score most (SHAP), largest "
                                         "first; empty when no gradient-boosted ranker ordered the item.")


class RecommendationsSerializer(serializers.Serializer):
    recommendation_id = serializers.CharField(allow_blank=True, help_text="Send it with impressions/clicks/purchases "
                                              "for attribution (empty when serving failed).")
    model_version = serializers.IntegerField(
        allow_null=True, help_text="Live model version that answered; null without a live model or after an error.")
    slot = serializers.CharField()
    fallback = serializers.CharField(help_text='"" when the list was picked for this visitor; "popularity" for '
                                               'popular items (a visitor the model knows nothing about, or no live '
                                               'model); "error" when serving failed.')
    items = RecommendedItemSerializer(many=True)


@lru_cache(maxsize=1024)
def _validated_query(serializer_class: type[serializers.Serializer],
                     params: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, Any]:
    serializer = serializer_class(data=MultiValueDict({k: list(v) for k, v in params}))
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def validated_query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The serializer's validated data for the request's query string (400 with field errors when invalid).

    Valid results are memoized per query string (LRU): pages ask with a handful of distinct query strings, and
    building a DRF serializer (its fields are deep-copied per instance) costs as much as a cached answer. The
    memo is emptied when ``PERSONALIZATION`` changes (slot names are part of validation).
    """
    params = tuple(sorted((k, tuple(v)) for k, v in request.query_params.lists()))
    return dict(_validated_query(serializer_class, params))


def forget_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: slot names are part of validation, so a new PERSONALIZATION empties the memo."""
    if setting == "PERSONALIZATION":
        _validated_query.cache_clear()


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
            row["source"] = rec.reason
            row["factors"] = rec.factors
        items.append(row)
    return {"recommendation_id": result.recommendation_id, "model_version": result.model_version,
            "slot": result.slot, "fallback": result.fallback, "items": items}


def _not_found(key: str) -> Response:
    return Response({"detail": f"Unknown item {key!r}: it is not in the catalog."}, status=404)


def _exists(key: str) -> bool:
    return bool(serving.item_features([key]))  # the catalog, through serving's item table (no query when known)


class JSONFirstNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, with a shortcut for what the tracker and API clients send, giving DRF's own answer:
    no ``Accept`` or ``*/*`` (and no ``?format=``) takes the first renderer, ``application/json`` the first JSON
    renderer, without parsing the header against every renderer (a tenth of a cached answer's time)."""

    def select_renderer(self, request: Request, renderers: list[Any], format_suffix: str | None = None) -> Any:
        accept = request.META.get("HTTP_ACCEPT", "")
        if renderers and not format_suffix and self.settings.URL_FORMAT_OVERRIDE not in request.query_params:
            if accept in ("", "*/*"):
                return renderers[0], renderers[0].media_type
            if accept == "application/json":
                for renderer in renderers:
                    if renderer.media_type == "application/json":
                        return renderer, renderer.media_type
        return super().select_renderer(request, renderers, format_suffix)


class ServingView(DegradesOnDatabaseError, APIView):
    """A view of the serving API: rate-limited per visitor and per IP, open to anyone."""

    throttle_classes = THROTTLES
    permission_classes: list = []
    content_negotiation_class = JSONFirstNegotiation

    def degraded(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The database fails: an empty list marked ``fallback: "error"`` (the page shows its default content)."""
        slot = request.query_params.get("slot", "")
        return Response({"recommendation_id": "", "model_version": None, "slot": slot[:64] or "default",
                         "fallback": "error", "items": []})


class RecommendationsView(ServingView):
    """Recommendations for the current visitor (or, for staff, any visitor)."""

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
        data = validated_query(RecommendationQuerySerializer, request)
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


class SimilarItemsView(ServingView):
    """Items like one item, with the slot's rules for the current visitor."""

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
        data = validated_query(SimilarQuerySerializer, request)
        if not _exists(key):
            return _not_found(key)
        django_request = request._request
        result = serving.recommend(django_request, data.get("n"), slot=data.get("slot", ""), item=key,
                                   explain=data["explain"])
        response = Response(_payload(result, data["explain"]))
        get_visitor(django_request)
        apply_cookie(django_request, response)
        return response
