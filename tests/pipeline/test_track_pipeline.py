"""``celltrack track``: results, provenance, reproducibility, no data loss, and bad input."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from celltrack.cli.main import main
from celltrack.io import validate_ctc_result, write_ctc_dataset
from celltrack.synthetic import generate_movie


@pytest.fixture(scope="module")
def movie_dir(tmp_path_factory):
    movie = generate_movie(frames=8, height=96, width=96, nuclei=6, seed=11)
    root = tmp_path_factory.mktemp("track") / "movie"
    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, root)
    return root


def digest(folder: Path, pattern: str = "*") -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}


def track(movie_dir, out, *extra):
    return main(
        [
            "track",
            str(movie_dir / "01"),
            "--out",
            str(out),
            "--detections",
            str(movie_dir / "01_GT" / "SEG"),
            "-q",
            *extra,
        ]
    )


def test_track_with_detections_writes_result_table_and_record(movie_dir, tmp_path):
    out = tmp_path / "RES"
    before = digest(movie_dir / "01") | digest(movie_dir / "01_GT" / "SEG")
    assert track(movie_dir, out) == 0
    tracks = validate_ctc_result(out)
    assert len(tracks) > 0
    table = (out / "tracks.csv").read_text().splitlines()
    assert table[0].startswith("node_id,frame,label,y,x,area")
    record = json.loads((out / "celltrack.json").read_text())
    assert record["command"] == "track" and record["celltrack_version"]
    assert record["inputs"]["images"]["first_frame"]["checksum"].startswith("sha256:")
    assert record["inputs"]["detections"]["last_frame"]["file"] == "man_seg007.tif"
    assert {"detections", "linking", "writing"} <= set(record["timings_seconds"])
    assert "linker_effective" in record["config"]
    # inputs are never written to
    assert digest(movie_dir / "01") | digest(movie_dir / "01_GT" / "SEG") == before


def test_same_input_gives_byte_identical_ctc_output(movie_dir, tmp_path):
    assert track(movie_dir, tmp_path / "a") == 0
    assert track(movie_dir, tmp_path / "b") == 0
    ctc = lambda d: digest(d, "mask*.tif") | digest(d, "res_track.txt")  # noqa: E731
    assert ctc(tmp_path / "a") == ctc(tmp_path / "b")
    assert digest(tmp_path / "a", "tracks.csv") == digest(tmp_path / "b", "tracks.csv")


def test_output_does_not_depend_on_the_frame_cache(movie_dir, tmp_path):
    config = tmp_path / "no_cache.toml"
    config.write_text("frame_cache_mb = 0\n")
    assert track(movie_dir, tmp_path / "cached") == 0
    assert track(movie_dir, tmp_path / "streamed", "--config", str(config)) == 0
    ctc = lambda d: digest(d, "mask*.tif") | digest(d, "res_track.txt") | digest(d, "tracks.csv")  # noqa: E731
    assert ctc(tmp_path / "cached") == ctc(tmp_path / "streamed")
    record = json.loads((tmp_path / "streamed" / "celltrack.json").read_text())
    assert record["config"]["frame_cache_mb"] == 0


def test_existing_output_kept_unless_overwrite(movie_dir, tmp_path, capsys):
    out = tmp_path / "RES"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    assert track(movie_dir, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "precious"
    assert track(movie_dir, out, "--overwrite") == 0
    assert not (out / "mine.txt").exists()


def test_parquet_table(movie_dir, tmp_path):
    import pandas as pd

    assert track(movie_dir, tmp_path / "RES", "--table", "lineage.parquet") == 0
    table = pd.read_parquet(tmp_path / "RES" / "lineage.parquet")
    assert {"track_id", "parent_track_id"} <= set(table.columns)


def test_segmentation_without_detections(movie_dir, tmp_path):
    out = tmp_path / "seg_RES"
    assert main(["track", str(movie_dir / "01"), "--out", str(out), "-q"]) == 0
    assert len(validate_ctc_result(out)) > 0


def write_labels(folder: Path, frames) -> Path:
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        tifffile.imwrite(folder / f"mask{t:03d}.tif", frame)
    return folder


def test_empty_frames_single_frame_and_sparse_labels_are_valid(tmp_path):
    images = np.full((4, 48, 48), 100, np.uint16)
    labels = np.zeros((4, 48, 48), np.uint16)
    for t in (0, 1, 3):  # frame 2 has no nuclei
        labels[t, 10:18, 10 + t : 18 + t] = 7  # non-consecutive label values
        labels[t, 30:38, 30:38] = 40
    images[labels > 0] = 900
    raw = tmp_path / "raw"
    raw.mkdir()
    for t in range(4):
        tifffile.imwrite(raw / f"t{t:03d}.tif", images[t])
    dets = write_labels(tmp_path / "dets", labels)
    assert main(["track", str(raw), "--out", str(tmp_path / "RES"), "--detections", str(dets), "-q"]) == 0
    assert len(validate_ctc_result(tmp_path / "RES")) >= 2
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, images[:1])
    tifffile.imwrite(tmp_path / "one_labels.tif", labels[:1])
    assert (
        main(
            [
                "track",
                str(one),
                "--out",
                str(tmp_path / "RES1"),
                "--detections",
                str(tmp_path / "one_labels.tif"),
                "-q",
            ]
        )
        == 0
    )
    assert len(validate_ctc_result(tmp_path / "RES1")) == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m, d: write_labels(d, np.zeros((3, 96, 96), np.uint16)), "3 detection frames for 8"),
        (lambda m, d: write_labels(d, np.zeros((8, 50, 96), np.uint16)), "detection frames are (50, 96)"),
        (lambda m, d: write_labels(d, np.zeros((8, 96, 96), np.float32)), "integer label images"),
        (lambda m, d: write_labels(d, np.full((8, 96, 96), -1, np.int16)), "negative"),
    ],
)
def test_bad_detections(movie_dir, tmp_path, capsys, make, message):
    dets = make(movie_dir, tmp_path / "dets")
    code = main(["track", str(movie_dir / "01"), "--out", str(tmp_path / "RES"), "--detections", str(dets)])
    assert code == 2
    assert message in one_line(capsys)
    assert not (tmp_path / "RES").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["dets"]  # no partial output left behind


def one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[linker]\nno_such_key = 1\n", "no_such_key"),
        ("[segmentation.classic]\nnucleus_diameter = 'big'\n", "nucleus_diameter"),
        ("this is = not toml [", "not valid TOML"),
    ],
)
def test_bad_config_files(movie_dir, tmp_path, capsys, toml, message):
    config = tmp_path / "cfg.toml"
    config.write_text(toml)
    assert track(movie_dir, tmp_path / "RES", "--config", str(config)) == 2
    line = one_line(capsys)
    assert "cfg.toml" in line and message in line


def test_config_file_is_applied_and_recorded(movie_dir, tmp_path):
    config = tmp_path / "cfg.toml"
    config.write_text("marker_radius = 4.5\n")
    assert track(movie_dir, tmp_path / "RES", "--config", str(config)) == 0
    record = json.loads((tmp_path / "RES" / "celltrack.json").read_text())
    assert record["config"]["marker_radius"] == 4.5


def test_killed_run_leaves_previous_output_intact(tmp_path):
    movie = generate_movie(frames=40, height=256, width=256, nuclei=40, seed=5)
    root = tmp_path / "movie"
    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, root)
    out = tmp_path / "RES"
    out.mkdir()
    (out / "res_track.txt").write_text("1 0 0 0\n")
    before = digest(out)
    command = [
        sys.executable,
        "-m",
        "celltrack.cli.main",
        "track",
        str(root / "01"),
        "--out",
        str(out),
        "--overwrite",
        "-q",
    ]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    # wait until the run has started writing its temporary folder, then kill it hard
    while time.monotonic() < deadline and not list(tmp_path.glob(".RES.partial-*")):
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed; make the movie larger"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert digest(out) == before


def test_readme_configuration_example_is_valid(tmp_path):
    from celltrack.pipeline.track import load_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "example.toml").write_text(block)
    config = load_config(tmp_path / "example.toml")
    assert config.linker.gaps.max_gap == 2 and config.segmentation.method == "auto"


def test_full_disk_surfaces_clearly_and_keeps_previous_output(movie_dir, tmp_path, capsys, monkeypatch):
    import errno

    out = tmp_path / "RES"
    assert track(movie_dir, out) == 0
    before = digest(out)
    real_imwrite = tifffile.imwrite
    calls = {"n": 0}

    def imwrite_until_full(path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_imwrite(path, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", imwrite_until_full)
    assert track(movie_dir, out, "--overwrite") == 2
    line = one_line(capsys)
    assert "No space left on device" in line
    assert digest(out) == before  # the previous result is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RES"]  # no temporary folder left behind


@pytest.mark.parametrize("enabled", [True, False])
def test_mitosis_scores_join_the_detections_when_enabled(tmp_path, enabled):
    import pandas as pd

    from celltrack.synthetic import dividing_nucleus

    movie = dividing_nucleus(frames=8, division_frame=4, seed=1)
    root = tmp_path / "movie"
    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, root)
    config = tmp_path / "cfg.toml"
    config.write_text(f"[mitosis]\nenabled = {str(enabled).lower()}\n")
    assert track(root, tmp_path / "RES", "--config", str(config)) == 0
    table = pd.read_csv(tmp_path / "RES" / "tracks.csv")
    record = json.loads((tmp_path / "RES" / "celltrack.json").read_text())
    assert record["config"]["mitosis"]["enabled"] is enabled
    if not enabled:
        assert "mitosis_score" not in table.columns and "recognet" not in record["models"]
        return
    assert record["models"]["recognet"].startswith("sha256:") and "mitosis" in record["timings_seconds"]
    scores = table["mitosis_score"].to_numpy()
    assert len(scores) == len(table) and np.all((scores >= 0) & (scores <= 1))
    assert len(validate_ctc_result(tmp_path / "RES")) == 3  # mother and two daughters


def test_own_segmentation_gets_merged_nuclei_split_given_detections_do_not(tmp_path: Path) -> None:
    from celltrack.io import open_sequence
    from celltrack.pipeline.segment import MovieSegmenter, SegmentationConfig
    from celltrack.pipeline.track import _label_frames, no_progress

    yy, xx = np.mgrid[:60, :80]
    apart = ((yy - 30) ** 2 + (xx - 25) ** 2 <= 100).astype(np.uint16)
    apart[(yy - 30) ** 2 + (xx - 50) ** 2 <= 100] = 2
    # One frame later the two nuclei touch and the segmenter returns them as one object.
    merged = ((yy - 30) ** 2 + (xx - 28) ** 2 <= 100) | ((yy - 30) ** 2 + (xx - 46) ** 2 <= 100)
    merged = merged.astype(np.uint16)
    images = np.zeros((2, 60, 80), np.uint16)
    segmented = iter([apart, merged])
    (tmp_path / "own").mkdir()
    segmenter = MovieSegmenter(lambda image: next(segmented), SegmentationConfig())
    own = _label_frames(images, None, segmenter, tmp_path / "own", no_progress)
    assert (own["frame"] == 1).sum() == 2
    tifffile.imwrite(tmp_path / "given.tif", np.stack([apart, merged]))
    (tmp_path / "given").mkdir()
    given = _label_frames(
        images, open_sequence(tmp_path / "given.tif"), None, tmp_path / "given", no_progress
    )
    assert (given["frame"] == 1).sum() == 1


def test_a_label_split_into_far_apart_blobs_is_its_largest_piece(tmp_path, capsys):
    """CTC allows one label in several pieces; a far-off stray piece must not move the nucleus.

    Taken whole, the nucleus' centre lies between the pieces: a one-frame track there, and a gap
    in the nucleus' own track. With a warning naming the file and label, the largest piece is it.
    """
    movie = generate_movie(frames=6, height=96, width=96, nuclei=4, seed=5, division_probability=0.0)
    root = tmp_path / "movie"
    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, root)
    split_frame = root / "01_GT" / "SEG" / "man_seg003.tif"
    labels = tifffile.imread(split_frame)
    label = int(np.bincount(labels.ravel())[1:].argmax()) + 1  # the largest nucleus of frame 3
    ys, xs = np.nonzero(labels == label)
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    free = labels == 0
    for _ in range(10):  # the stray piece keeps clear of every nucleus
        free[1:] &= free[:-1]
        free[:-1] &= free[1:]
        free[:, 1:] &= free[:, :-1]
        free[:, :-1] &= free[:, 1:]
    distance = np.hypot(yy - ys.mean(), xx - xs.mean())
    far = np.unravel_index(np.argmax(np.where(free, distance, -1.0)), labels.shape)
    assert distance[far] > 30
    stray = np.hypot(yy - far[0], xx - far[1]) <= 9  # about the nucleus' size
    labels[stray] = label
    tifffile.imwrite(split_frame, labels)

    out = tmp_path / "RES"
    args = ["track", str(root / "01"), "--out", str(out), "--detections", str(root / "01_GT" / "SEG")]
    assert main(args) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "man_seg003.tif" in line]
    assert len(warnings) == 1 and f"label {label}" in warnings[0], warnings
    table = pd.read_csv(out / "tracks.csv")
    node = table[(table["frame"] == 3) & (table["label"] == label)].iloc[0]
    assert np.hypot(node["y"] - ys.mean(), node["x"] - xs.mean()) < 1.0
    tracks = validate_ctc_result(out)  # the nuclei's tracks as they are: no one-frame track, no gap
    assert sorted(zip(tracks["begin"], tracks["end"], strict=True)) == sorted(
        (begin, end) for _, begin, end, _ in movie.tracks.tolist()
    )
    assert not (tifffile.imread(out / "mask003.tif")[stray]).any()  # the stray piece is not the nucleus
