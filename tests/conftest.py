"""Shared fixtures: the embedded world, and the shared data folder where it exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def household():
    from hsl_tools.envs.household import Household

    return Household()


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a clean skip on a machine that has none."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is absent on this machine")
    return data
