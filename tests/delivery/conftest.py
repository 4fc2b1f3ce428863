"""Delivery tests use ``shop_history`` and ``trained`` from tests/conftest.py."""
