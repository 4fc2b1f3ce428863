"""Monitoring tests: every test starts and ends with no running experiment (nor experiment version) remembered by
this process; the serving ones share a trained shop with a second, not live, version per module."""

import pytest

from personalization.serving import arms, live
from tests.monitoring.shop import challenger_shop_fixture, versions_fixture  # noqa: F401
from tests.serving.shop import live_shop_fixture, shop_fixture  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_experiments():
    arms.forget_running()
    live._extra.systems.clear()
    live._extra.failed.clear()
    yield
    arms.forget_running()
    live._extra.systems.clear()
    live._extra.failed.clear()
