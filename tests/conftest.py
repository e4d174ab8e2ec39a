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


def write_gt_as_result(root: Path) -> tuple[Path, Path]:
    """A small dividing synthetic movie in CTC layout at ``root``, its GT TRA copied as ``root/01_RES``."""
    import shutil

    from celltrack.io import write_ctc_dataset
    from celltrack.synthetic import generate_movie

    movie = generate_movie(
        frames=6,
        height=96,
        width=96,
        nuclei=6,
        seed=1,
        min_cycle=0,
        division_probability=0.3,
        mitosis_frames=1,
    )
    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, root)
    res = root / "01_RES"
    res.mkdir()
    for path in sorted((root / "01_GT" / "TRA").glob("man_track*.tif")):
        shutil.copy(path, res / path.name.replace("man_track", "mask"))
    shutil.copy(root / "01_GT" / "TRA" / "man_track.txt", res / "res_track.txt")
    return root, res


@pytest.fixture(scope="session")
def gt_as_result():
    """``gt_as_result(root) -> (root, res)``: see :func:`write_gt_as_result`."""
    return write_gt_as_result


def check_geff(path: Path):
    """Check a GEFF with geff's own validators (structure, graph, tracklets, lineages); return it read."""
    import geff
    from geff.core_io import read_to_memory
    from geff.validate.data import ValidationConfig, validate_data

    geff.validate_structure(str(path))
    memory = read_to_memory(str(path))
    validate_data(memory, ValidationConfig(graph=True, tracklet=True, lineage=True))
    return memory


@pytest.fixture(scope="session")
def valid_geff():
    """``valid_geff(path) -> InMemoryGeff``: every GEFF a test writes goes through geff's validators."""
    return check_geff
