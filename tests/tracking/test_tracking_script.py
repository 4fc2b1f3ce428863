"""{% tracking_script %}: loads tracker.js configured with the endpoint, the page's item and the consent mode."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.template import Context, Template

from tests.tracking.test_middleware import BrokenAdapter

pytestmark = pytest.mark.django_db


def script_tag(html: bytes | str) -> str:
    text = html.decode() if isinstance(html, bytes) else html
    tags = re.findall(r"<script [^>]*personalization/tracker\.js[^>]*></script>", text)
    assert len(tags) == 1, text[:2000]
    return tags[0]


def attr(tag: str, name: str) -> str:
    match = re.search(rf'{name}="([^"]*)"', tag)
    assert match, tag
    return match.group(1)


def test_product_page_script_names_the_endpoint_and_the_item(browser, product):
    tag = script_tag(browser.get(f"/p/{product.pk}/").content)

    assert attr(tag, "src").endswith("personalization/tracker.js")
    assert attr(tag, "data-endpoint") == "/api/personalization/events/"
    assert attr(tag, "data-item") == f"product:{product.pk}"
    assert attr(tag, "data-consent-required") == "0"
    assert attr(tag, "data-consent-cookie") == "personalization_consent"
    assert " defer" in tag


def test_other_pages_have_the_script_without_an_item(browser, product):
    tag = script_tag(browser.get("/").content)

    assert attr(tag, "data-item") == ""
    assert attr(tag, "data-endpoint") == "/api/personalization/events/"


def test_consent_mode_is_passed_to_the_tracker(browser, product, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CONSENT_REQUIRED": True,
                                "CONSENT_COOKIE_NAME": "cookie_ok"}

    tag = script_tag(browser.get(f"/p/{product.pk}/").content)

    assert attr(tag, "data-consent-required") == "1"
    assert attr(tag, "data-consent-cookie") == "cookie_ok"


def test_broken_catalog_adapter_renders_the_script_without_an_item(browser, product, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CATALOG_ADAPTER": BrokenAdapter}

    response = browser.get(f"/p/{product.pk}/")

    assert response.status_code == 200
    assert attr(script_tag(response.content), "data-item") == ""


def test_nothing_is_rendered_when_the_api_urls_are_not_installed(browser, settings):
    settings.ROOT_URLCONF = "tests.tracking.urls_without_api"

    response = browser.get("/tag/")

    assert response.status_code == 200
    assert response.content == b"[]"


def test_tag_renders_without_a_request_in_the_context():
    html = Template("{% load personalization %}{% tracking_script flush_interval=2000 %}").render(Context({}))

    tag = script_tag(html)
    assert attr(tag, "data-item") == ""
    assert attr(tag, "data-flush-interval") == "2000"


def test_the_script_the_tag_points_at_is_shipped():
    path = finders.find("personalization/tracker.js")

    assert path is not None
    source = open(path, encoding="utf-8").read()
    assert "sendBeacon" in source and "event_id" in source
