"""Update tests share one trained shop per module (see ``tests/serving/shop.py``)."""

from tests.serving.shop import live_shop_fixture, shop_fixture  # noqa: F401
