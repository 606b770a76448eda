"""Suite-wide fixtures: no pykka actor outlives the test that started it."""

from __future__ import annotations

import pykka
import pytest


@pytest.fixture(autouse=True)
def _stop_all_actors():
    """Stop every pykka actor a test left running, so threads never leak into the next test."""
    yield
    pykka.ActorRegistry.stop_all()
