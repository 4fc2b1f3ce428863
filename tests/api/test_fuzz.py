"""Hostile input: every operation of the OpenAPI schema, fuzzed by schemathesis (hypothesis strategies from the
schema, then mutated), anonymously and as staff, against a live model: whatever arrives, never a server error."""

from __future__ import annotations

import base64

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings

STAFF = ("fuzz-staff", "fuzz-password")
STAFF_AUTH = "Basic " + base64.b64encode(":".join(STAFF).encode()).decode()
SLOW_AS_STAFF = ("/models/train/",)  # a valid request trains a model inline on the embedded configuration


@pytest.fixture
def application():
    """The site's WSGI application, keeping the test's database connection open between requests, as Django's test
    client does (a request's end closes connections, which would end the test's transaction)."""
    from django.core import signals
    from django.db import close_old_connections

    from storefront_demo.wsgi import application

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield application
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_no_request_makes_a_server_error(trained, django_user_model, application):
    """One hypothesis run per operation (schemathesis' own pytest plugin does not support pytest 9 yet)."""
    django_user_model.objects.create_user(STAFF[0], password=STAFF[1], is_staff=True)
    schema = schemathesis.openapi.from_wsgi("/api/personalization/schema/?format=json", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14

    for operation in operations:
        _fuzz(operation, [{}] if operation.path.endswith(SLOW_AS_STAFF) else [{}, {"Authorization": STAFF_AUTH}])


def _fuzz(operation, callers: list[dict[str, str]]) -> None:
    @given(case=operation.as_strategy())
    @hypothesis_settings(max_examples=30, deadline=None, database=None, derandomize=True,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def no_server_error(case):
        for headers in callers:
            response = case.call(headers=headers)
            assert response.status_code < 500, f"{case.as_curl_command(headers)}\n-> {response.status_code}: " \
                                                f"{response.text[:1000]}"

    no_server_error()
