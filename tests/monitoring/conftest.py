"""Dashboard tests share the serving tests' trained shop (one per module, see tests/serving/shop.py)."""

from tests.serving.shop import live_shop_fixture, shop_fixture  # noqa: F401
