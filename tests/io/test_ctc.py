import numpy as np
import pandas as pd
import pytest
import tifffile

from celltrack.graph import TrackGraph
from celltrack.io import (
    OutputExistsError,
    parse_track_table,
    read_gt,
    validate_ctc_result,
    write_ctc_dataset,
    write_ctc_result,
)


def tiny_lineage():
    """A disc that divides at frame 2 into two daughters, plus one static disc."""
    t, h, w = 4, 32, 32
    labels = np.zeros((t, h, w), np.uint16)
    yy, xx = np.mgrid[:h, :w]
    disc = lambda y, x, r=3: (yy - y) ** 2 + (xx - x) ** 2 <= r * r  # noqa: E731
    for f in range(2):
        labels[f][disc(10, 10 + f)] = 1
    for f in range(2, 4):
        labels[f][disc(6, 11)] = 2
        labels[f][disc(15, 11)] = 3
    for f in range(4):
        labels[f][disc(25, 25)] = 4
    tracks = np.array([[1, 0, 1, 0], [2, 2, 3, 1], [3, 2, 3, 1], [4, 0, 3, 0]])
    images = (labels > 0).astype(np.uint16) * 500 + 100
    return images, labels, tracks


def test_dataset_written_and_gt_read_back(tmp_path):
    images, labels, tracks = tiny_lineage()
    write_ctc_dataset(images, labels, labels, tracks, tmp_path / "movie")
    gt = read_gt(tmp_path / "movie" / "01_GT")
    assert gt.tra.shape == labels.shape and sorted(gt.seg) == [0, 1, 2, 3]
    np.testing.assert_array_equal(gt.tracks.to_numpy(), tracks)
    graph = gt.graph()
    assert len(graph.divisions()) == 1


def test_result_round_trip_passes_validation(tmp_path):
    images, labels, tracks = tiny_lineage()
    write_ctc_dataset(images, labels, labels, tracks, tmp_path / "movie")
    gt = read_gt(tmp_path / "movie" / "01_GT")
    out = write_ctc_result(
        gt.graph(), tmp_path / "01_RES", labels.shape[1:], len(labels), label_source=lambda t: gt.tra[t]
    )
    table = validate_ctc_result(out)
    assert len(table) == 4 and set(table["parent"]) == {0, 1}
    assert sorted(p.name for p in out.iterdir())[:2] == ["mask000.tif", "mask001.tif"]


def test_gap_is_written_as_child_track(tmp_path):
    nodes = pd.DataFrame(
        {"frame": [0, 1, 3], "label": [0, 0, 0], "y": [5.0, 5, 5], "x": [5.0, 6, 8], "area": [1, 1, 1]}
    )
    graph = TrackGraph(nodes, pd.DataFrame({"source": [0, 1], "target": [1, 2]}))
    out = write_ctc_result(graph, tmp_path / "res", (12, 12), 4, marker_radius=1.5)
    table = validate_ctc_result(out)
    assert table.to_numpy().tolist() == [[1, 0, 1, 0], [2, 3, 3, 1]]
    assert tifffile.imread(out / "mask002.tif").max() == 0


def test_existing_output_kept_without_overwrite(tmp_path):
    images, labels, tracks = tiny_lineage()
    target = tmp_path / "movie"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_ctc_dataset(images, labels, labels, tracks, target)
    assert (target / "precious.txt").read_text() == "keep me"
    write_ctc_dataset(images, labels, labels, tracks, target, overwrite=True)
    assert not (target / "precious.txt").exists() and (target / "01").is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["movie"]  # no temporary folders left behind


def test_failed_write_leaves_previous_output(tmp_path):
    images, labels, tracks = tiny_lineage()
    target = write_ctc_dataset(images, labels, labels, tracks, tmp_path / "movie")
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    with pytest.raises(ValueError):
        write_ctc_dataset(images, labels, labels[:2], tracks, target, overwrite=True)
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["movie"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 0 3\n", "3 columns"),
        ("1 0 3 0\n2 4 5 9\n", "parent 9"),
        ("1 0 3 0\n1 4 5 0\n", "listed twice"),
        ("1 0 3 0\n2 2 5 1\n", "before its parent"),
        ("1 5 3 0\n", "begin 5 > end 3"),
        ("1 0 3 x\n", "non-integer"),
        ("1 0 3 1\n", "before its parent|own parent"),
    ],
)
def test_bad_track_tables(text, message):
    with pytest.raises(ValueError, match=message):
        parse_track_table(text, "man_track.txt")


def test_cycle_in_track_table_rejected():
    # 1 -> 2 -> 1 cannot satisfy "child begins after parent ends"
    with pytest.raises(ValueError, match="before its parent"):
        parse_track_table("1 4 5 2\n2 0 3 1\n", "man_track.txt")


def test_result_with_masks_disagreeing_with_table(tmp_path):
    _images, labels, _tracks = tiny_lineage()
    out = tmp_path / "res"
    out.mkdir()
    for t in range(len(labels)):
        tifffile.imwrite(out / f"mask{t:03d}.tif", labels[t])
    (out / "res_track.txt").write_text("1 0 1 0\n2 2 3 1\n3 2 3 1\n4 0 2 0\n")
    with pytest.raises(ValueError, match="track 4 spans frames 0-2"):
        validate_ctc_result(out)


def test_gt_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_gt(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither TRA"):
        read_gt(tmp_path)


@pytest.mark.realdata
def test_real_hela_gt(hela_dir):
    gt = read_gt(hela_dir / "01_GT")
    assert gt.tra.shape == (92, 700, 1100) and len(gt.seg) == 28
    assert len(gt.tracks) == 265
    st = read_gt(hela_dir / "01_ST")
    assert len(st.seg) == 92 and st.tra is None
