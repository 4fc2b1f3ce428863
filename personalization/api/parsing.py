"""Request body decoding shared by the ingestion endpoints (JSON, optionally gzip-compressed)."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from typing import Any

from django.http import HttpRequest
from rest_framework.authentication import SessionAuthentication

JSON_TYPES = {"application/json", "text/plain"}  # navigator.sendBeacon sends strings as text/plain
MAX_BODY_BYTES = 5 * 1024 * 1024


class SessionWithoutCsrf(SessionAuthentication):
    """The Django session user, without DRF's CSRF check (``sendBeacon`` cannot send the token; see EventsView)."""

    def enforce_csrf(self, request: Any) -> None:
        return None


class BodyError(ValueError):
    """A body that cannot be read as JSON; ``errors`` is the 400 payload."""

    def __init__(self, errors: dict[str, list[str]], status: int = 400):
        super().__init__(errors)
        self.errors = errors
        self.status = status


def read_json(request: HttpRequest) -> Any:
    """Decode the body as JSON after checking its content type and size."""
    content_type = (request.content_type or "").lower()
    if content_type not in JSON_TYPES:
        raise BodyError({"content_type": [f"Send application/json, not {content_type or 'nothing'}."]})
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > MAX_BODY_BYTES:
        raise BodyError({"non_field_errors": [f"Body larger than {MAX_BODY_BYTES} bytes; send smaller batches."]},
                        status=413)
    body = request.body
    if request.META.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
        try:
            body = gzip.GzipFile(fileobj=io.BytesIO(body)).read(MAX_BODY_BYTES + 1)
        except (OSError, EOFError, zlib.error):
            raise BodyError({"non_field_errors": ["Body is not valid gzip."]}) from None
        if len(body) > MAX_BODY_BYTES:
            raise BodyError({"non_field_errors": ["Decompressed body too large."]}, status=413)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError({"non_field_errors": [f"Body is not valid JSON: {exc}"]}) from None
    except RecursionError:
        raise BodyError({"non_field_errors": ["Body is nested too deeply."]}) from None
