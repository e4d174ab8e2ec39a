"""``celltrack cf-track``: outputs, video, subsets, scoring, and errors."""

import json

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile

from celltrack.cli.main import main
from celltrack.io import validate_ctc_result, write_ctc_dataset
from celltrack.synthetic import generate_movie


@pytest.fixture(scope="module")
def movie_dir(tmp_path_factory):
    movie = generate_movie(frames=6, height=96, width=96, nuclei=5, seed=7, division_probability=0.0)
    root = tmp_path_factory.mktemp("cf") / "movie"
    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, root)
    return root


def test_cf_track_writes_ctc_result_trajectories_filters_and_video(movie_dir, tmp_path, capsys):
    out, video = tmp_path / "cf_RES", tmp_path / "view.gif"
    code = main(
        [
            "cf-track",
            str(movie_dir / "01"),
            "--out",
            str(out),
            "--detections",
            str(movie_dir / "01_GT" / "SEG"),
            "--save-video",
            str(video),
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    tracks = validate_ctc_result(out)
    first_frame = tifffile.imread(movie_dir / "01_GT" / "SEG" / "man_seg000.tif")
    assert len(tracks) == len(np.unique(first_frame)) - 1
    trajectories = pd.read_csv(out / "trajectories.csv")
    assert {"cell", "frame", "y", "x", "peak", "psr"} <= set(trajectories.columns)
    with np.load(out / "filters.npz") as filters:
        assert "labels" in filters and len(filters["labels"]) == len(tracks)
    assert json.loads((out / "celltrack.json").read_text())["command"] == "cf-track"
    assert iio.improps(video, index=None).shape[0] == 6  # one video frame per movie frame
    assert (
        main(["evaluate", str(out), str(movie_dir / "01_GT"), "--from-frame", "0", "--metrics", "precision"])
        == 0
    )
    scores = dict(line.split() for line in capsys.readouterr().out.strip().splitlines()[-3:])
    assert float(scores["P@20"]) > 0.8


def test_cf_track_subset_and_init(movie_dir, tmp_path, capsys):
    init = movie_dir / "01_GT" / "SEG" / "man_seg000.tif"
    labels = sorted(set(np.unique(tifffile.imread(init))) - {0})[:2]
    out = tmp_path / "subset"
    assert (
        main(
            [
                "cf-track",
                str(movie_dir / "01"),
                "--out",
                str(out),
                "--init",
                str(init),
                "--cells",
                ",".join(map(str, labels)),
                "--momentum",
                "-q",
            ]
        )
        == 0
    )
    assert len(validate_ctc_result(out)) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cells", "999"], "not labels of the first frame"),
        (["--init", "missing.tif"], "not found"),
        (["--features", "nope"], "unknown features"),
        (["--device", "tpu"], "unknown device"),
    ],
)
def test_cf_track_bad_options(movie_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    assert main(["cf-track", str(movie_dir / "01"), "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.realdata
def test_cf_track_on_hela_evaluates(hela_dir, tmp_path, capsys):
    out = tmp_path / "hela_cf"
    code = main(
        [
            "cf-track",
            str(hela_dir / "01"),
            "--out",
            str(out),
            "--detections",
            str(hela_dir / "01_GT" / "TRA"),
            "--cells",
            "10,12,16,22",
            "-q",
        ]
    )
    assert code == 0
    assert len(validate_ctc_result(out)) == 4
    assert (
        main(["evaluate", str(out), str(hela_dir / "01_GT"), "--metrics", "precision", "--from-frame", "0"])
        == 0
    )
    scores = dict(line.split() for line in capsys.readouterr().out.strip().splitlines()[-3:])
    assert 0.0 < float(scores["P@20"]) <= 1.0
