"""Shared fixtures: the real CTC data beside the checkout (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

# as in the CLI: passive OpenMP waiting keeps torch fast when the cores are shared
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HELA = SHARED_DATA / "Fluo-N2DL-HeLa"
SIM = SHARED_DATA / "Fluo-N2DH-SIM+"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available at {path}")
    return path


@pytest.fixture(scope="session")
def hela_dir() -> Path:
    """``../shared/data/Fluo-N2DL-HeLa`` (the folder holding 01, 01_GT, 01_ST)."""
    return require(HELA)


@pytest.fixture(scope="session")
def sim_dir() -> Path:
    """``../shared/data/Fluo-N2DH-SIM+``."""
    return require(SIM)
