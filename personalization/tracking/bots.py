"""Recognise crawlers and headless browsers so their traffic never reaches training data."""

from __future__ import annotations

import re
from functools import lru_cache

import crawleruseragents

# Automation signatures the crawler list does not carry (it lists crawlers, not scripted browsers).
_HEADLESS = re.compile(
    r"HeadlessChrome|PhantomJS|Puppeteer|Playwright|Selenium|webdriver|python-requests|python-urllib|"
    r"aiohttp|Go-http-client|curl/|Wget/|libwww-perl|Java/|okhttp|node-fetch|axios/",
    re.IGNORECASE,
)


@lru_cache(maxsize=8192)
def is_bot(user_agent: str) -> bool:
    """True for empty, crawler (maintained crawler-user-agents list) and automation user agents."""
    if not user_agent or len(user_agent) < 8:
        return True
    return bool(_HEADLESS.search(user_agent)) or crawleruseragents.is_crawler(user_agent)
