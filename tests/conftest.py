"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_personalization_state(settings):
    """Each test sees its own settings, collector, catalog and cache."""
    from django.core.cache import caches

    from personalization.catalog import reset_catalog
    from personalization.conf import settings as psettings
    from personalization.tracking.collectors import reset_collector

    psettings.reload()
    reset_collector()
    reset_catalog()
    caches["default"].clear()
    yield
    psettings.reload()
    reset_collector()
    reset_catalog()
