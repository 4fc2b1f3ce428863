"""Fixtures: the planted data set and one fitted model per candidate-generator family."""

from __future__ import annotations

import pytest

from tests.recommenders.planted import SPECS, Planted, Spec, make_planted


@pytest.fixture(scope="session")
def planted() -> Planted:
    return make_planted()


@pytest.fixture(scope="session", params=sorted(SPECS))
def spec(request) -> Spec:
    return SPECS[request.param]


@pytest.fixture(scope="session")
def fitted(spec, planted):
    return spec.fit(spec.make(42), planted)
