"""Batch runs on Dask: planning, failure isolation, resuming after failures and interruptions, the CLI."""

from __future__ import annotations

import argparse
import json
import logging
import pickle
from pathlib import Path

import pandas as pd
import pytest
import tifffile
import zarr

from celltrack.batch import (
    DONE_NAME,
    SUMMARY_COLUMNS,
    SUMMARY_NAME,
    BatchRunner,
    Position,
    format_summary,
    plan_positions,
    position_names,
    process_position,
    read_done_marker,
)
from celltrack.cli import batch as batch_cli
from celltrack.cli.common import run_command
from celltrack.io import write_ctc_dataset
from celltrack.pipeline.track import TrackingConfig
from celltrack.synthetic import generate_movie

FAST_CLUSTER = {"workers": 2, "threads_per_worker": 1, "dashboard_address": ":0"}


def movie(seed: int):
    return generate_movie(frames=4, height=64, width=64, nuclei=4, seed=seed)


def write_tiff(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, movie(seed).images, photometric="minisblack")
    return path


def write_broken_tiff(path: Path, seed: int) -> Path:
    """A multi-page TIFF cut in the middle, as after a failed copy."""
    data = write_tiff(path, seed).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_zarr(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    zarr.save_array(str(path), movie(seed).images)
    return path


def write_ctc(root: Path, seed: int) -> Path:
    m = movie(seed)
    write_ctc_dataset(m.images, m.labels, m.markers, m.tracks, root)
    return root / "01"


@pytest.fixture
def experiment(tmp_path) -> dict[str, Path]:
    """Four positions of every kind, one of them corrupt."""
    data = tmp_path / "data"
    return {
        "ctc": write_ctc(data / "exp", 0),
        "tiff": write_tiff(data / "tiffs" / "pos1.tif", 1),
        "broken": write_broken_tiff(data / "tiffs" / "broken.tif", 3),
        "zarr": write_zarr(data / "zarrs" / "pos2.zarr", 2),
    }


def by_name(rows):
    return {row["position"]: row for row in rows}


def stamps(out: Path, names) -> dict[str, tuple[int, int]]:
    return {
        n: ((out / n / DONE_NAME).stat().st_mtime_ns, (out / n / "tracks.csv").stat().st_mtime_ns)
        for n in names
    }


def test_plan_expands_globs_and_names_positions_uniquely(tmp_path):
    for parent in ("a", "b"):
        (tmp_path / parent).mkdir()
        (tmp_path / parent / "x.tif").write_bytes(b"")
    (tmp_path / "c" / "01").mkdir(parents=True)
    (tmp_path / "c" / "01" / "t000.tif").write_bytes(b"")
    (tmp_path / "c" / "01_GT" / "TRA").mkdir(parents=True)
    (tmp_path / "c" / "notes.txt").write_text("not a movie")

    assert [p.name for p in plan_positions([tmp_path / "*" / "x.tif"])] == ["a_x", "b_x"]
    (ctc,) = plan_positions([str(tmp_path / "c" / "*")])  # ground truth and text files are no positions
    assert (ctc.name, ctc.kind, ctc.path) == ("c_01", "ctc", tmp_path / "c" / "01")
    (tmp_path / "a" / "out" / "x").mkdir(parents=True)
    (tmp_path / "a" / "out" / "x" / "mask000.tif").write_bytes(b"")
    own_output = plan_positions([str(tmp_path / "**" / "*.tif")], exclude=[tmp_path / "a" / "out"])
    assert [p.name for p in own_output] == ["a_x", "b_x", "t000"]
    same_file_twice = plan_positions([tmp_path / "a" / "x.tif", str(tmp_path / "a" / "*.tif")])
    assert [(p.name, p.kind) for p in same_file_twice] == [("x", "tiff")]

    names = position_names([tmp_path / "x.tif", tmp_path / "x.zarr", tmp_path / "summary.csv.tif"])
    assert len({n.lower() for n in names}) == 3 and SUMMARY_NAME not in names
    assert all("/" not in n and not n.startswith(".") for n in names)

    with pytest.raises(ValueError, match=r"nothing\*\.tif: matches no movie"):
        plan_positions([tmp_path / "a" / "x.tif", str(tmp_path / "nothing*.tif")])
    with pytest.raises(ValueError, match="missing.tif: no such file"):
        plan_positions([tmp_path / "missing.tif"])

    # Dask ships the task and its arguments by pickle; the task must pickle by reference.
    assert pickle.loads(pickle.dumps(process_position)) is process_position
    assert pickle.loads(pickle.dumps(ctc)) == ctc


def test_local_cluster_isolates_a_corrupt_position_and_a_rerun_resumes(experiment, tmp_path):
    positions = plan_positions(
        [experiment["ctc"], str(experiment["tiff"].parent / "*.tif"), experiment["zarr"]]
    )
    names = [p.name for p in positions]
    assert names == ["exp_01", "broken", "pos1", "pos2"]
    good = ["exp_01", "pos1", "pos2"]
    out = tmp_path / "out"
    dashboards, settled = [], []

    result = BatchRunner(**FAST_CLUSTER, processes=True).run(
        positions, out, on_start=dashboards.append, on_result=settled.append
    )

    rows = by_name(result.rows)
    assert [r["position"] for r in result.rows] == names and len(settled) == 4
    assert dashboards and dashboards[0].startswith("http")
    assert [r["position"] for r in result.failed] == ["broken"]
    assert "broken.tif" in rows["broken"]["error"] and rows["broken"]["frames"] is None
    assert not (out / "broken").exists()
    for name in good:
        assert rows[name]["status"] == "done"
        marker = read_done_marker(out / name)
        tracks = pd.read_csv(out / name / "tracks.csv")
        assert marker["frames"] == rows[name]["frames"] == 4
        assert marker["nuclei"] == rows[name]["nuclei"] == len(tracks) > 0
        assert marker["tracks"] == tracks["track_id"].nunique()
        assert len(list((out / name).glob("mask*.tif"))) == 4
    summary = pd.read_csv(out / SUMMARY_NAME, keep_default_na=False)
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert dict(zip(summary["position"], summary["status"], strict=True)) == {
        "exp_01": "done",
        "broken": "failed",
        "pos1": "done",
        "pos2": "done",
    }
    assert "broken.tif" in summary.set_index("position").loc["broken", "error"]

    # The corrupt file gets repaired; a rerun retries it and leaves the done positions alone.
    before = stamps(out, good)
    write_tiff(experiment["broken"], 3)
    rerun = BatchRunner(**FAST_CLUSTER, processes=False).run(positions, out)
    statuses = {r["position"]: r["status"] for r in rerun.rows}
    assert statuses == {"exp_01": "skipped", "broken": "done", "pos1": "skipped", "pos2": "skipped"}
    assert stamps(out, good) == before
    assert by_name(rerun.rows)["pos1"]["nuclei"] == rows["pos1"]["nuclei"]
    assert read_done_marker(out / "broken")["frames"] == 4

    # Nothing left to do: no cluster at all.
    started = []
    third = BatchRunner(**FAST_CLUSTER, processes=False).run(positions, out, on_start=started.append)
    assert not started and {r["status"] for r in third.rows} == {"skipped"}


def test_interrupted_positions_are_recomputed_and_foreign_folders_kept(experiment, tmp_path):
    out = tmp_path / "out"
    tiff = Position("pos1", experiment["tiff"], "tiff")
    zarr_position = Position("pos2", experiment["zarr"], "zarr")
    ctc = Position("exp_01", experiment["ctc"], "ctc")
    config = TrackingConfig().model_dump(mode="json")
    assert process_position(tiff, out, config)["status"] == "done"
    # Killed between writing the result and its marker, and killed while writing another position.
    (out / "pos1" / DONE_NAME).unlink()
    interrupted_at = (out / "pos1" / "tracks.csv").stat().st_mtime_ns
    leftover = out / ".pos2.partial-abc123"
    leftover.mkdir()
    (leftover / "mask000.tif").write_bytes(b"half")
    # A folder celltrack did not write must never be replaced without --overwrite.
    (out / "exp_01").mkdir()
    (out / "exp_01" / "precious.txt").write_text("user data")

    dask_log_level = logging.getLogger("distributed").level
    result = BatchRunner(**FAST_CLUSTER, processes=False).run([tiff, zarr_position, ctc], out)
    assert logging.getLogger("distributed").level == dask_log_level  # muted for the teardown only

    rows = by_name(result.rows)
    assert rows["pos1"]["status"] == rows["pos2"]["status"] == "done"
    assert read_done_marker(out / "pos1") is not None and read_done_marker(out / "pos2") is not None
    assert (out / "pos1" / "tracks.csv").stat().st_mtime_ns != interrupted_at
    assert not leftover.exists()
    assert rows["exp_01"]["status"] == "failed" and "not a celltrack result" in rows["exp_01"]["error"]
    assert (out / "exp_01" / "precious.txt").read_text() == "user data"

    # A marker from another input is no reason to skip: the position is refused, not mixed up.
    moved = Position("pos1", experiment["zarr"], "zarr")
    row = process_position(moved, out, config)
    assert row["status"] == "failed" and "holds the results of" in row["error"]
    assert process_position(moved, out, config, overwrite=True)["status"] == "done"


def test_runs_on_an_existing_cluster_and_leaves_it_running(experiment, tmp_path):
    from distributed import Client, LocalCluster

    position = Position("pos2", experiment["zarr"], "zarr")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        result = BatchRunner(scheduler=cluster.scheduler_address).run([position], tmp_path / "out")
        assert result.rows[0]["status"] == "done" and result.dashboard
        with Client(cluster) as client:
            assert client.submit(sum, [1, 2]).result() == 3
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
        BatchRunner(scheduler="tcp://127.0.0.1:9", connect_timeout=0.5).run([position], tmp_path / "out2")


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="celltrack")
    subparsers = parser.add_subparsers(dest="command")
    batch_cli.register(subparsers)
    return run_command(batch_cli.run, parser.parse_args(["batch", *argv]))


def test_cli_prints_dashboard_and_summary_and_fails_when_a_position_failed(experiment, tmp_path, capsys):
    config = tmp_path / "batch.toml"
    config.write_text("marker_radius = 2.5\n")
    out = tmp_path / "out"
    options = ["--out", str(out), "--workers", "2", "--threads-only", "--dashboard-address", ":0", "-q"]
    tiffs = str(experiment["tiff"].parent / "*.tif")

    assert run_cli([tiffs, "--config", str(config), *options]) == batch_cli.EXIT_POSITIONS_FAILED

    printed = capsys.readouterr().out
    assert "dashboard http://" in printed
    header = next(line for line in printed.splitlines() if line.startswith("position"))
    assert header.split() == ["position", "status", "frames", "nuclei", "tracks", "divisions", "seconds"]
    assert "failed broken:" in printed and "broken.tif" in printed
    assert str(out / SUMMARY_NAME) in printed
    record = json.loads((out / "pos1" / "celltrack.json").read_text())
    assert record["command"] == "batch" and record["config"]["marker_radius"] == 2.5

    assert run_cli([str(experiment["zarr"]), *options]) == 0
    assert "pos2" in capsys.readouterr().out

    assert run_cli([str(tmp_path / "nowhere" / "*.tif"), *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matches no movie" in err[0]


def test_summary_table_lists_every_position_and_the_errors():
    counts = ("frames", "nuclei", "tracks", "divisions")
    done = {
        "position": "a",
        "status": "done",
        **dict(zip(counts, (4, 15, 4, 1), strict=True)),
        "seconds": 2.0,
    }
    failed = {"position": "bb", "status": "failed", **dict.fromkeys(counts), "seconds": 0.1}
    rows = [done, {**failed, "error": "bb.tif: truncated"}]
    lines = format_summary(rows).splitlines()
    assert lines[0].split() == ["position", "status", "frames", "nuclei", "tracks", "divisions", "seconds"]
    assert lines[2].split() == ["a", "done", "4", "15", "4", "1", "2.0"]
    assert lines[3].split()[:3] == ["bb", "failed", "-"]
    assert "1 done" in lines[4] and "1 failed" in lines[4]
    assert lines[5] == "failed bb: bb.tif: truncated"


def test_a_ctc_dataset_folder_is_expanded_into_its_sequences(tmp_path, capsys):
    """``celltrack synth pos1`` writes pos1/01 + pos1/01_GT: batch takes pos1 as the data set it is."""
    write_ctc(tmp_path / "pos1", 0)
    second = movie(1)
    write_ctc_dataset(second.images, second.labels, second.markers, second.tracks, tmp_path / "s", "02")
    (tmp_path / "s" / "02").rename(tmp_path / "pos1" / "02")
    write_ctc(tmp_path / "pos2", 2)
    positions = plan_positions([tmp_path / "pos1", str(tmp_path / "pos[2]")])
    assert [(p.name, p.kind) for p in positions] == [
        ("pos1_01", "ctc"),
        ("pos1_02", "ctc"),
        ("pos2_01", "ctc"),
    ]
    assert [p.path for p in positions[:2]] == [tmp_path / "pos1" / "01", tmp_path / "pos1" / "02"]

    out = tmp_path / "out"
    options = ["--out", str(out), "--workers", "1", "--threads-only", "--dashboard-address", ":0"]
    assert run_cli([str(tmp_path / "pos1"), str(tmp_path / "pos2"), *options]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "CTC data set" in line]
    assert len(notes) == 2 and "pos1_01, pos1_02" in notes[0], captured.err
    summary = pd.read_csv(out / SUMMARY_NAME)
    assert summary["position"].tolist() == ["pos1_01", "pos1_02", "pos2_01"]
    assert (summary["status"] == "done").all()


def test_an_unreachable_scheduler_leaves_no_output_folder(experiment, tmp_path, capsys):
    import dask

    out = tmp_path / "results"
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        code = run_cli([str(experiment["zarr"]), "--out", str(out), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Dask scheduler" in err[0]
    assert not out.exists()
