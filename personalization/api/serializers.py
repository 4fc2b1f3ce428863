"""Serializers that document the API's shapes for the OpenAPI schema.

Event payloads are validated by ``personalization.tracking.schema`` (hand-written for throughput); the
serializers here describe the same fields to drf-spectacular and must be kept in step with it.
"""

from __future__ import annotations

from rest_framework import serializers


class EventInSerializer(serializers.Serializer):
    event = serializers.CharField(help_text="Event type, e.g. view, click, add_to_cart, purchase, impression.")
    item = serializers.CharField(required=False, help_text='Item key "<type>:<id>"; required for item events.')
    event_id = serializers.UUIDField(required=False, help_text="Client-made UUID; a retried event is stored once.")
    timestamp = serializers.CharField(required=False, help_text="ISO 8601 or Unix time (s or ms); default now.")
    value = serializers.FloatField(required=False, help_text="Price, quantity, dwell seconds or rating.")
    recommendation_id = serializers.CharField(required=False, help_text="Id of the recommendation shown.")
    context = serializers.DictField(required=False, help_text="page, referrer, slot, tz, screen, position, x_*")


class EventBatchInSerializer(serializers.Serializer):
    events = EventInSerializer(many=True)


class IngestOutSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Events stored (or buffered) now.")
    duplicates = serializers.IntegerField(help_text="Events whose event_id was already stored.")
    dropped = serializers.IntegerField(help_text="Events not recorded on purpose (no consent, bot, rate limit).")
    reason = serializers.CharField(required=False)
