"""Fixtures of the delivery tests: the simulated shop and a live model from the training tests."""

pytest_plugins = ["tests.training.conftest"]
