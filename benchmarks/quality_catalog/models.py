"""``Item``: one row per dataset item (key, title, category, price), the model of the benchmark's CATALOG entry.

Serving returns only items its catalog adapter knows (``serving/items.item_features``), so a site needs a catalog;
this is the smallest one: no migrations (the benchmark creates the table with ``migrate --run-syncdb``).
"""

from django.db import models


class Item(models.Model):
    """A dataset item: its id is the ``<id>`` of the item key ``product:<id>``."""

    key = models.CharField(max_length=64, primary_key=True)
    title = models.CharField(max_length=300, blank=True)
    category = models.CharField(max_length=100, blank=True)
    price = models.FloatField(null=True)

    class Meta:
        app_label = "quality_catalog"
