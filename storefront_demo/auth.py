"""Authentication of the demo project (not part of the reusable app)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest


class NulSafeModelBackend(ModelBackend):
    """Django's ModelBackend, refusing credentials that hold a NUL character instead of querying with them.

    DRF's Basic authentication hands any decoded ``Authorization`` header to ``authenticate()``; a username with a NUL
    makes the user lookup fail on PostgreSQL ("text fields cannot contain NUL"): a 500 where a 401/403 belongs.
    """

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> Any:
        if any("\x00" in str(value) for value in (username, password, *kwargs.values()) if value is not None):
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
