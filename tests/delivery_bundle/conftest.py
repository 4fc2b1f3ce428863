"""Fixtures of the bundle tests: a category-structured shop with a live ALS model."""

from __future__ import annotations

import pytest

from tests.delivery_bundle.shop import make_shop, train_live


@pytest.fixture
def category_shop(db, settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    # registry unpacks artifacts once per machine by "v<pk>-v<pk>": another test database's version 1 would be
    # loaded instead of this one's.
    monkeypatch.setattr("personalization.registry._LOCAL", tmp_path / "artifacts")
    shop = make_shop()
    shop["version"] = train_live(settings)
    return shop
