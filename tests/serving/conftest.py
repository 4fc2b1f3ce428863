"""Serving tests share one trained shop per module (see ``shop.py``)."""

from tests.serving.shop import live_shop_fixture, shop_fixture  # noqa: F401
