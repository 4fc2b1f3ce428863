"""Data minimisation of an event's context before it is stored: URLs lose their query strings (but the parameters
in ``CONTEXT_QUERY_PARAMS``) and fragments, so a referrer such as ``/reset?email=...&token=...`` is stored as
``/reset``; search text is kept only with ``STORE_SEARCH_TEXT`` (otherwise a keyed hash of it, which counts repeated
searches but reads as nothing)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings as django_settings

from personalization.conf import settings

URL_KEYS = ("page", "referrer")
SEARCH_KEY = "query"


def strip_query(url: str, keep: frozenset[str] | set[str]) -> str:
    """``url`` without its fragment and without query parameters not in ``keep``."""
    if "?" not in url and "#" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0]
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k in keep])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def search_hash(text: str) -> str:
    """A keyed hash (HMAC-SHA256 with SECRET_KEY, 16 hex digits) of normalised search text."""
    key = f"personalization.search:{django_settings.SECRET_KEY}".encode()
    return hmac.new(key, " ".join(text.lower().split()).encode(), hashlib.sha256).hexdigest()[:16]


def minimise(context: dict[str, Any]) -> dict[str, Any]:
    """Apply the minimisation rules to a merged event context, in place; returns it."""
    keep = set(settings.CONTEXT_QUERY_PARAMS or ())
    for key in URL_KEYS:
        value = context.get(key)
        if isinstance(value, str) and value:
            context[key] = strip_query(value, keep)
    if SEARCH_KEY in context and not settings.STORE_SEARCH_TEXT:
        text = context.pop(SEARCH_KEY)
        if isinstance(text, str) and text.strip():
            context["query_hash"] = search_hash(text)
    return context
