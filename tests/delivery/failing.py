"""Broken extension points for the fallback tests (set with a settings override of CATALOG_ADAPTER)."""

from personalization.catalog import ModelCatalogAdapter


class FailingCatalog(ModelCatalogAdapter):
    """A catalog whose database is down: every lookup raises."""

    def get_objects(self, keys):
        raise RuntimeError("catalog unavailable")

    def features(self, keys=None):
        raise RuntimeError("catalog unavailable")

    def display(self, keys):
        raise RuntimeError("catalog unavailable")
