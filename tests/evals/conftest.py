"""Fixtures of the eval tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import synthetic_responses


@pytest.fixture
def responses_file(tmp_path) -> Path:
    """Hand-written saved responses: base, iter_10 (identity learned, facts kept), iter_20 (collapsed)."""
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in synthetic_responses()), encoding="utf-8")
    return path
