"""The command line: outputs, --overwrite, and one-line errors with a non-zero exit code."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from celltrack.cli.main import main
from celltrack.io import write_ctc_dataset
from celltrack.synthetic import generate_movie


@pytest.fixture(scope="module")
def small_movie(tmp_path_factory):
    movie = generate_movie(frames=6, height=96, width=96, nuclei=6, seed=3)
    root = tmp_path_factory.mktemp("movie") / "movie"
    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, root)
    return root


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_help_has_examples(capsys):
    for command in ("demo", "synth", "info", "evaluate"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "example:" in capsys.readouterr().out


def test_console_script_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "celltrack.cli.main", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("celltrack ")


def test_demo_writes_results_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "8", "--size", "96", "--nuclei", "6", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "TRA" in printed and str(out / "01_RES") in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.5 < metrics["metrics"]["TRA"] <= 1.0
    assert (out / "precision.png").stat().st_size > 0
    assert len(list((out / "01_RES").glob("mask*.tif"))) == 8
    record = json.loads((out / "01_RES" / "celltrack.json").read_text())
    assert record["command"] == "demo" and "linking" in record["timings_seconds"]
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert main(["demo", "--out", str(out), "--frames", "8", "--size", "96", "--nuclei", "6"]) == 2
    assert "--overwrite" in one_error_line(capsys)
    assert (out / "metrics.json").stat().st_mtime_ns == stamp


def test_synth_then_info(tmp_path, capsys):
    out = tmp_path / "syn"
    assert (
        main(["synth", str(out), "--frames", "5", "--size", "64", "80", "--nuclei", "4", "--seed", "2"]) == 0
    )
    capsys.readouterr()
    assert main(["info", str(out / "01"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 5 and info["shape"] == [64, 80] and len(info["nuclei_per_frame"]) == 5


def test_evaluate_gt_against_itself(small_movie, tmp_path, capsys):
    res = tmp_path / "01_RES"
    res.mkdir()
    for path in sorted((small_movie / "01_GT" / "TRA").glob("man_track*.tif")):
        shutil.copy(path, res / path.name.replace("man_track", "mask"))
    shutil.copy(small_movie / "01_GT" / "TRA" / "man_track.txt", res / "res_track.txt")
    code = main(
        [
            "evaluate",
            str(res),
            str(small_movie / "01_GT"),
            "--json",
            str(tmp_path / "s.json"),
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    assert code == 0
    scores = json.loads((tmp_path / "s.json").read_text())["metrics"]
    assert scores["TRA"] == pytest.approx(1.0) and scores["P@20"] == pytest.approx(1.0)
    assert (tmp_path / "p.png").exists()


@pytest.mark.realdata
def test_evaluate_hela_gt_copied_as_result(hela_dir, tmp_path, capsys):
    res = tmp_path / "01_RES"
    res.mkdir()
    for path in sorted((hela_dir / "01_GT" / "TRA").glob("man_track*.tif")):
        shutil.copy(path, res / path.name.replace("man_track", "mask"))
    shutil.copy(hela_dir / "01_GT" / "TRA" / "man_track.txt", res / "res_track.txt")
    assert main(["evaluate", str(res), str(hela_dir / "01_GT"), "--metrics", "TRA", "precision"]) == 0
    lines = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    assert float(lines["TRA"]) == pytest.approx(1.0) and float(lines["P@20"]) == pytest.approx(1.0)


def test_bad_inputs_give_one_line(tmp_path, small_movie, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in one_error_line(capsys)

    (tmp_path / "notes.txt").write_text("not a movie")
    assert main(["info", str(tmp_path / "notes.txt")]) == 2
    assert "not a TIFF" in one_error_line(capsys)

    # a result with fewer masks than the ground truth has frames
    res = tmp_path / "short_RES"
    res.mkdir()
    tifffile.imwrite(res / "mask000.tif", np.zeros((96, 96), np.uint16))
    (res / "res_track.txt").write_text("")
    assert main(["evaluate", str(res), str(small_movie / "01_GT")]) == 2
    line = one_error_line(capsys)
    assert "short_RES" in line

    # empty label images: no crash, one line naming the folder
    empty = tmp_path / "empty_RES"
    empty.mkdir()
    for t in range(6):
        tifffile.imwrite(empty / f"mask{t:03d}.tif", np.zeros((96, 96), np.uint16))
    (empty / "res_track.txt").write_text("")
    assert main(["evaluate", str(empty), str(small_movie / "01_GT"), "--metrics", "DET"]) == 2
    assert "empty_RES" in one_error_line(capsys)


def test_unknown_parent_in_man_track(tmp_path, small_movie, capsys):
    gt = tmp_path / "gt"
    shutil.copytree(small_movie / "01_GT", gt)
    with open(gt / "TRA" / "man_track.txt", "a") as handle:
        handle.write("999 2 3 555\n")
    assert main(["info", str(small_movie / "01")]) == 0
    capsys.readouterr()
    res = tmp_path / "RES"
    shutil.copytree(gt / "TRA", res)
    assert main(["evaluate", str(res), str(gt)]) == 2
    assert "parent 555" in one_error_line(capsys)


def test_verbose_errors_raise_with_traceback(tmp_path):
    with pytest.raises(ValueError):
        main(["info", str(tmp_path / "missing"), "-vv"])


def test_segment_writes_masks_and_record_and_keeps_outputs(small_movie, tmp_path, capsys):
    out = tmp_path / "seg"
    assert main(["segment", str(small_movie / "01"), "--out", str(out), "--method", "classic", "-q"]) == 0
    masks = sorted(out.glob("mask*.tif"))
    assert len(masks) == 6 and tifffile.imread(masks[0]).max() > 0
    record = json.loads((out / "celltrack.json").read_text())
    assert record["config"]["merge_split"]["enabled"] is True
    assert record["config"]["nucleus_diameter"] == "auto"
    # An existing output is kept unless --overwrite is given.
    assert main(["segment", str(small_movie / "01"), "--out", str(out), "--method", "classic"]) == 2
    assert "--overwrite" in one_error_line(capsys)
    args = ["segment", str(small_movie / "01"), "--out", str(out), "--method", "classic", "--no-merge-split"]
    assert main([*args, "--overwrite", "-q"]) == 0
    assert json.loads((out / "celltrack.json").read_text())["config"]["merge_split"]["enabled"] is False


def test_a_ctc_dataset_is_taken_where_a_sequence_is_expected(small_movie, tmp_path, capsys):
    """``celltrack synth pos1`` writes pos1/01 + pos1/01_GT; commands take pos1 for its sequence."""
    out = tmp_path / "RES"
    args = ["track", str(small_movie), "--out", str(out), "--detections", str(small_movie / "01_GT" / "TRA")]
    assert main(args) == 0
    assert "CTC data set" in capsys.readouterr().err
    record = json.loads((out / "celltrack.json").read_text())
    assert record["inputs"]["images"]["path"] == str(small_movie / "01")

    two = tmp_path / "two"
    shutil.copytree(small_movie, two)
    shutil.copytree(small_movie / "01", two / "02")
    assert main(["info", str(two), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert [Path(info["source"]).name for info in described] == ["01", "02"]
    assert main(["track", str(two), "--out", str(tmp_path / "R2")]) == 2
    line = one_error_line(capsys)
    assert "2 sequences (01, 02)" in line and "celltrack batch" in line
