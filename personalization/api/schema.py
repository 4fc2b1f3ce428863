"""drf-spectacular extensions for the app's own authentication classes (imported by ``api/urls.py``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class SessionWithoutCsrfScheme(OpenApiAuthenticationExtension):
    """Documents ``SessionWithoutCsrf`` as the Django session cookie (the visitor cookie identifies anonymous
    visitors; neither needs a header)."""

    target_class = "personalization.api.parsing.SessionWithoutCsrf"
    name = "sessionCookie"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        from django.conf import settings

        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}
