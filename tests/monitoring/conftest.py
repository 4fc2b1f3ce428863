"""Monitoring tests: every test starts and ends with no running experiment remembered by this process."""

import pytest

from personalization.serving import arms


@pytest.fixture(autouse=True)
def _fresh_experiments():
    arms.forget_running()
    yield
    arms.forget_running()
