"""One page, no item twice, in a real browser: the demo's product page shows each product card once, whether the
server renders its lists or hydrate.js fills them (``PERSONALIZATION["HYDRATE"]``), and both show the same lists.

The shop is tests/browser/test_shop_recommendations.py's: four categories of eight products and a live model whose
"similar" and "product" lists of a product overlap when nothing keeps them apart.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import test_shop_recommendations as shop_pages
from tests.browser.test_shop_recommendations import TALL, slots_on, wait_for_bundle

shop = shop_pages.shop  # the fixture: a trained shop of four categories
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def cards(page: Any) -> list[str]:
    """Item keys of every product card on the page, in page order, repeats kept."""
    return page.eval_on_selector_all("article.tile[data-personalization-item]",
                                     "els => els.map(e => e.dataset.personalizationItem)")


def lists(page: Any) -> list[tuple[str, list[str]]]:
    return [(slot, [item for item, _ in items]) for slot, _, items in slots_on(page)]


def test_the_product_page_shows_no_product_card_twice_with_and_without_hydration(shop, new_context, settings):
    product = shop["products"]["mugs"][0]
    url = f"/p/{product.pk}/"
    context = new_context(viewport=TALL)
    page = context.new_page()
    page.goto(f"/p/{shop['products']['mugs'][1].pk}/")
    wait_for_bundle(page)

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "HYDRATE": False}
    page.goto(url)
    html = page.content()
    assert "data-personalization-hydrate" not in html
    server = lists(page)
    assert [slot for slot, _ in server] == ["similar", "product"]
    assert [len(items) for _, items in server] == [4, 4]
    shown = cards(page)
    assert len(shown) == 8 and len(set(shown)) == 8, f"a product card shows twice: {shown}"
    assert product.item_key not in shown

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "HYDRATE": True}
    page.goto(url)
    page.wait_for_function("() => !document.querySelector('[data-personalization-hydrate]')")
    hydrated = cards(page)
    assert len(hydrated) == 8 and len(set(hydrated)) == 8, f"a product card shows twice: {hydrated}"
    assert lists(page) == server, "the hydrated page differs from the server's rendering"


def test_the_shop_pages_load_without_a_console_error_or_a_failed_request(shop, new_context):
    page = new_context(viewport=TALL).new_page()
    problems: list[str] = []
    failed: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    for url in ("/", f"/p/{shop['products']['mugs'][0].pk}/", "/c/mugs/", "/cart/"):
        page.goto(url)
        wait_for_bundle(page)
    assert not problems and not failed, (problems, failed)  # the browser's own favicon request included
