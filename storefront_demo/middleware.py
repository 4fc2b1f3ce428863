"""Site-wide middleware of the demo project (not part of the reusable app)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


def drop_cookies_with_nul(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Ignore cookies whose value holds a NUL character.

    Django unquotes cookie values with Python's cookie rules, so ``sessionid="abcdefgh\\000"`` (printable text) arrives
    as a value with a NUL, and the database session backend's lookup then fails on PostgreSQL ("text fields cannot
    contain NUL"): a 500 for any page. No cookie this site sets can hold one, so such a cookie is dropped as if it
    had never been sent. Runs before SessionMiddleware.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        cookies = request.COOKIES
        for name in [name for name, value in cookies.items() if "\x00" in value or "\x00" in name]:
            del cookies[name]
        return get_response(request)

    return middleware
