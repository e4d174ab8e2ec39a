"""Atomic outputs: written beside the target, moved into place, and known by their final path meanwhile."""

from pathlib import Path

import pytest

from celltrack.io import atomic_output_dir, atomic_output_file, final_path


def test_final_path_inside_nested_temporary_outputs(tmp_path):
    outer_target = tmp_path / "demo"
    with atomic_output_dir(outer_target) as outer:
        assert outer != outer_target and ".demo.partial-" in outer.name
        assert final_path(outer / "data" / "01") == outer_target / "data" / "01"
        with atomic_output_dir(outer / "01_RES") as inner:
            assert final_path(inner / "celltrack.json") == outer_target / "01_RES" / "celltrack.json"
        with atomic_output_file(outer / "plot.png") as tmp_file:
            assert final_path(tmp_file) == outer_target / "plot.png"
    assert (outer_target / "01_RES").is_dir()
    # once moved into place, nothing is translated any more
    assert final_path(outer / "data") == outer / "data"
    assert final_path("relative/path") == Path("relative/path")


def test_a_failed_block_forgets_its_temporary_folder(tmp_path):
    with pytest.raises(RuntimeError), atomic_output_dir(tmp_path / "out") as tmp:
        raise RuntimeError("disk full")
    assert not tmp.exists() and not (tmp_path / "out").exists()
    assert final_path(tmp / "x") == tmp / "x"
