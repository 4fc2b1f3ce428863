"""A Segment-compatible ``v1/batch`` endpoint, so sites already sending Segment/RudderStack calls can forward them.

Maps ``track`` calls named in ``SEGMENT_EVENT_MAP`` ("Product Viewed", "Order Completed", ...) to event types,
``page`` calls about a product to views, and ``identify`` calls to visitor links. Forwarded calls carry trusted
user ids, so the write key from settings is required (HTTP Basic, key as user name, as Segment's libraries send it).
"""

from __future__ import annotations

import base64
import hmac
import logging
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from personalization.api.degraded import DegradesOnDatabaseError
from personalization.api.parsing import BodyError, read_json
from personalization.conf import settings
from personalization.tracking.schema import EventData, EventValidationError
from personalization.tracking.service import record, validate_batch

logger = logging.getLogger("personalization.api")
NAMESPACE = uuid.UUID("6f1c3c57-8d1e-4a55-9a34-5d3f0c7b6e21")
MAX_MESSAGES = 2000


def _authorized(request: Any) -> bool:
    key = settings.SEGMENT_WRITE_KEY
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not key or not header.startswith("Basic "):
        return False
    try:
        user, _, _ = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user.encode(), str(key).encode())


def _item(props: dict[str, Any]) -> str | None:
    ident = props.get("product_id") or props.get("sku") or props.get("id")
    if ident in (None, ""):
        return None
    return f"{settings.SEGMENT_ITEM_TYPE}:{ident}"


def _payloads(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Our event payloads for one Segment message (several for an order with several products)."""
    kind = message.get("type")
    props = message.get("properties") or {}
    if not isinstance(props, dict):
        props = {}
    base_id = str(message.get("messageId") or uuid.uuid4())
    timestamp = message.get("timestamp") or message.get("originalTimestamp")
    if kind == "track":
        name = message.get("event")
        event_type = settings.SEGMENT_EVENT_MAP.get(name) if isinstance(name, str) else None
        if event_type is None:
            return []
        if event_type == "purchase" and isinstance(props.get("products"), list):
            lines = [p for p in props["products"] if isinstance(p, dict)]
        else:
            lines = [props]
        out = []
        for index, line in enumerate(lines):
            event_id = str(uuid.uuid5(NAMESPACE, f"{base_id}:{index}"))
            payload: dict[str, Any] = {"event": event_type, "event_id": event_id}
            item = _item(line)
            if item:
                payload["item"] = item
            price, quantity = line.get("price"), line.get("quantity")
            if isinstance(price, (int, float)) and not isinstance(price, bool):
                try:
                    payload["value"] = float(price) * (
                        float(quantity) if isinstance(quantity, (int, float)) and not isinstance(quantity, bool) else 1
                    )
                except OverflowError:
                    payload["value"] = float("inf")  # rejected by validation with a field error
            elif event_type == "search" and isinstance(props.get("query"), str):
                payload["context"] = {"query": props["query"][:200]}
            if timestamp:
                payload["timestamp"] = timestamp
            out.append(payload)
        return out
    if kind == "page":
        item = _item(props)
        if not item:
            return []
        payload = {"event": "view", "item": item, "event_id": str(uuid.uuid5(NAMESPACE, base_id))}
        if timestamp:
            payload["timestamp"] = timestamp
        return [payload]
    return []


class SegmentBatchView(DegradesOnDatabaseError, APIView):
    """``POST segment/v1/batch``: the Segment HTTP tracking API's batch call."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []

    @extend_schema(request=None, responses={200: OpenApiResponse(description="{success: true, counts}")},
                   summary="Segment-compatible batch import")
    def post(self, request: Request) -> Response:
        django_request = request._request
        if not _authorized(django_request):
            return Response({"detail": "Missing or wrong write key (HTTP Basic, key as user name)."}, status=401,
                            headers={"WWW-Authenticate": 'Basic realm="personalization"'})
        try:
            body = read_json(django_request)
        except BodyError as exc:
            return Response(exc.errors, status=exc.status)
        messages = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            return Response({"batch": ["Expected {\"batch\": [messages]}."]}, status=400)
        if len(messages) > MAX_MESSAGES:
            return Response({"batch": [f"At most {MAX_MESSAGES} messages per call."]}, status=400)
        errors: dict[str, Any] = {}
        events: list[EventData] = []
        identifies: list[tuple[str, str]] = []
        ignored = 0
        users = _users_by_id(messages)
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                errors[str(index)] = {"non_field_errors": ["Expected an object."]}
                continue
            anonymous = str(message.get("anonymousId") or "")[:64]
            user_ref = str(message.get("userId") or "")
            if "\x00" in anonymous or "\x00" in user_ref:
                errors[str(index)] = {"non_field_errors": ["userId and anonymousId must not contain NUL characters."]}
                continue
            if message.get("type") == "identify":
                if anonymous and user_ref in users:
                    identifies.append((anonymous, user_ref))
                else:
                    ignored += 1
                continue
            payloads = _payloads(message)
            if not payloads:
                ignored += 1
                continue
            valid, bad = validate_batch(payloads, source="segment")
            if bad:
                errors[str(index)] = next(iter(bad.values()))
                continue
            for event in valid:
                event.user_id = users.get(user_ref)
                event.visitor_id = anonymous or (user_ref[:64] if event.user_id is None else "")
                if not event.visitor_id and event.user_id is None:
                    errors[str(index)] = {"non_field_errors": ["Needs a userId or an anonymousId."]}
                    break
            else:
                events.extend(valid)
        if errors:
            return Response({"batch": errors}, status=400)
        try:
            _link(identifies, users)
            result = record(None, events)
        except (DatabaseError, EventValidationError):
            logger.exception("Segment batch not stored")
            return Response({"detail": "Event store unavailable; retry."}, status=503, headers={"Retry-After": "5"})
        return Response({"success": True, **result.as_dict(), "ignored": ignored}, status=200)


def _users_by_id(messages: list[Any]) -> dict[str, int]:
    refs = {
        ref for m in messages if isinstance(m, dict)
        for ref in [str(m.get("userId") or "")] if ref.isascii() and ref.isdigit() and len(ref) <= 18
    }
    if not refs:
        return {}
    found = get_user_model()._default_manager.filter(pk__in=[int(r) for r in refs]).values_list("pk", flat=True)
    return {str(pk): pk for pk in found}


def _link(identifies: list[tuple[str, str]], users: dict[str, int]) -> None:
    from personalization.models import Event, VisitorLink

    for visitor_id, user_ref in identifies:
        VisitorLink.objects.update_or_create(visitor_id=visitor_id, defaults={"user_id": users[user_ref]})
        Event.objects.filter(visitor_id=visitor_id, user__isnull=True).update(user_id=users[user_ref])
