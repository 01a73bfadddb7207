"""Shared fixtures. Nothing here reads from the network: data is generated, seeded."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)
