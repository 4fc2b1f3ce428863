"""Fixtures of the browser tests: Debian's Chromium driven by Playwright against pytest-django's live server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# A real desktop Chrome: the bot filter drops HeadlessChrome, Playwright and other automation user agents.
DESKTOP_CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One Chromium per test module. A missing browser fails loudly: the suite's setup installs it."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop in the main thread, which makes Django's ORM refuse to run
    # ("SynchronousOnlyOperation"); the tests query the database between browser steps, never concurrently.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                yield browser
            finally:
                browser.close()


@pytest.fixture
def new_context(chromium, live_server) -> Iterator[Callable[..., Any]]:
    """Open a browser context (one device: its own cookies and localStorage) on the live server."""
    contexts = []

    def make(**options: Any) -> Any:
        options.setdefault("user_agent", DESKTOP_CHROME_UA)
        options.setdefault("locale", "en-GB")
        context = chromium.new_context(base_url=live_server.url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        # Closing hides the pages, and tracker.js then beacons a dwell event; offline, it cannot reach the live
        # server (shared by the whole session) and land in the next test's tables.
        context.set_offline(True)
        context.close()

