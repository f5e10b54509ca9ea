"""Fixtures of the runs tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def model_env(tiny_world) -> dict:
    return {"WORKBENCH_MODEL": str(tiny_world)}
