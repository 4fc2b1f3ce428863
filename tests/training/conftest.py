"""A small simulated shop history in the database, without any trained model."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

SHOP_ARGS = ["--products", "40", "--visitors", "80", "--days", "20", "--seed", "3", "--no-progress", "--no-train"]


@pytest.fixture
def shop_history(db, settings, tmp_path):
    """Catalog + events of a simulated shop; artifacts go to a per-test media folder."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    call_command("demo", *SHOP_ARGS, stdout=StringIO())
    from personalization.models import Event

    assert Event.objects.count() > 500
    return Event.objects.count()


@pytest.fixture
def trained(shop_history):
    """Train one version (it goes live: the first version always does)."""
    from personalization.models import ModelVersion
    from personalization.training import train

    return train(ModelVersion.objects.create())
