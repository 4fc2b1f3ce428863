"""The whole API is documented: the OpenAPI schema validates with no warning, and the docs page is served."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command


def test_openapi_schema_validates_without_warnings(db):
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out, stderr=StringIO())
    schema = out.getvalue()
    for path in ("/api/personalization/events/", "/api/personalization/recommendations/",
                 "/api/personalization/items/{key}/similar/", "/api/personalization/bundle/",
                 "/api/personalization/models/", "/api/personalization/notifications/"):
        assert path in schema


def test_schema_and_docs_are_served(client):
    assert client.get("/api/personalization/schema/").status_code == 200
    assert client.get("/api/personalization/docs/").status_code == 200
