"""Result folders read back; TrackMate CSV, GEFF and table export; the ``export`` command."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from celltrack.cli import main as cli_main
from celltrack.graph import TrackGraph
from celltrack.io import OutputExistsError, read_track_table, write_table
from celltrack.io.calibration import Calibration
from celltrack.io.export import (
    export_tracks,
    lineage_ids,
    read_result,
    tracklet_ids,
    write_geff,
)
from celltrack.io.trackmate import trackmate_edges_path, write_trackmate_csv

SPOT_KEYS = ["LABEL", "ID", "TRACK_ID", "QUALITY", "POSITION_X", "POSITION_Y", "POSITION_Z", "POSITION_T"]
EDGE_KEYS = ["LABEL", "TRACK_ID", "SPOT_SOURCE_ID", "SPOT_TARGET_ID", "LINK_COST"]


@pytest.fixture(scope="module")
def result_dir(tmp_path_factory, gt_as_result):
    """The ground truth of a small dividing movie copied as a CTC result folder (no tracks.csv)."""
    _, res = gt_as_result(tmp_path_factory.mktemp("export") / "movie")
    return res


@pytest.fixture
def cli(monkeypatch):
    """``celltrack`` with the export command registered (the lead registers it in main.COMMANDS)."""
    monkeypatch.setitem(cli_main.COMMANDS, "export", "export")
    return cli_main.main


def gap_graph() -> TrackGraph:
    """Track A (frames 0-1) divides into B and C; C skips frame 3 (a gap link); D is a lone detection."""
    nodes = pd.DataFrame(
        {
            "frame": [0, 1, 2, 2, 3, 4, 0],
            "label": [1, 1, 2, 3, 2, 3, 4],
            "y": [10.0, 11.0, 14.0, 8.0, 15.0, 6.0, 50.0],
            "x": [10.0, 10.0, 12.0, 9.0, 13.0, 8.0, 50.0],
            "area": [30, 30, 20, 20, 20, 20, 25],
        },
        index=pd.Index([10, 11, 12, 13, 14, 15, 16]),
    )
    edges = pd.DataFrame({"source": [10, 11, 11, 12, 13], "target": [11, 12, 13, 14, 15]})
    return TrackGraph(nodes, edges)


def read_trackmate(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    header = [line.split(",") for line in lines[:4]]
    table = pd.read_csv(path, skiprows=[1, 2, 3])
    return header, table


# ---------------------------------------------------------------------- reading results
def test_read_result_rebuilds_the_graph_from_masks(result_dir):
    result = read_result(result_dir)
    truth = read_track_table(result_dir / "res_track.txt")
    tracks = result.graph.tracks().tracks
    assert len(tracks) == len(truth)
    assert sorted(tracks["end"] - tracks["begin"]) == sorted(truth["end"] - truth["begin"])
    assert len(result.graph.divisions()) == int(
        (truth.loc[truth["parent"] > 0, "parent"].value_counts() == 2).sum()
    )
    assert result.n_frames == 6 and result.frame_shape == (96, 96) and result.record is None


def test_read_result_prefers_the_track_table_and_reads_the_record(result_dir, tmp_path):
    res = tmp_path / "RES"
    shutil.copytree(result_dir, res)
    graph = read_result(res).graph
    table = graph.to_table().assign(confidence=0.5)
    write_table(table, res / "tracks.csv")
    (res / "celltrack.json").write_text('{"command": "track", "inputs": {}}', encoding="utf-8")
    again = read_result(res)
    assert again.record == {"command": "track", "inputs": {}}
    assert "confidence" in again.graph.nodes.columns
    pd.testing.assert_frame_equal(
        again.graph.to_table()[["node_id", "frame", "track_id", "parent_track_id"]],
        table[["node_id", "frame", "track_id", "parent_track_id"]],
    )
    (res / "celltrack.json").write_text("{not json", encoding="utf-8")
    assert read_result(res).record is None


def test_read_result_rejects_folders_without_tracks(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_result(tmp_path / "missing")
    with pytest.raises(ValueError, match="no tracks.csv and no maskTTT.tif"):
        read_result(tmp_path)


def test_tracklets_split_at_divisions_only_and_lineages_are_components():
    graph = gap_graph()
    tracklet = tracklet_ids(graph)
    lineage = lineage_ids(graph)
    # CTC splits the gap link 13 -> 15 into two tracks; GEFF tracklets do not.
    assert tracklet[13] == tracklet[15] and graph.tracks().node_track[13] != graph.tracks().node_track[15]
    assert tracklet[10] == tracklet[11] and len({tracklet[11], tracklet[12], tracklet[13]}) == 3
    assert lineage[[10, 11, 12, 13, 14, 15]].nunique() == 1 and lineage[16] != lineage[10]


# ---------------------------------------------------------------------- TrackMate
def test_trackmate_tables_have_four_header_rows_and_the_graph(result_dir, tmp_path):
    graph = read_result(result_dir).graph
    spots_path, edges_path = write_trackmate_csv(graph, tmp_path / "run_spots.csv")
    assert edges_path == tmp_path / "run_edges.csv"

    header, spots = read_trackmate(spots_path)
    assert header[0][: len(SPOT_KEYS)] == SPOT_KEYS and "FRAME" in header[0] and "RADIUS" in header[0]
    assert all(len(row) == len(header[0]) for row in header)
    units = dict(zip(header[0], header[3], strict=True))
    assert units["POSITION_X"] == "(pixel)" and units["POSITION_T"] == "(frame)" and units["ID"] == ""
    assert len(spots) == len(graph.nodes) and set(spots["ID"]) == set(graph.nodes.index)
    by_id = spots.set_index("ID")
    np.testing.assert_allclose(by_id.loc[graph.nodes.index, "POSITION_X"], graph.nodes["x"])
    np.testing.assert_allclose(by_id.loc[graph.nodes.index, "POSITION_Y"], graph.nodes["y"])
    assert (by_id.loc[graph.nodes.index, "FRAME"].to_numpy() == graph.nodes["frame"].to_numpy()).all()
    # TrackMate tracks are whole lineages: one TRACK_ID per connected component.
    lineage = lineage_ids(graph)
    assert by_id["TRACK_ID"].nunique() == lineage.nunique()
    assert (spots.groupby("TRACK_ID")["ID"].apply(lambda ids: lineage[ids].nunique()) == 1).all()

    header, edges = read_trackmate(edges_path)
    assert header[0][: len(EDGE_KEYS)] == EDGE_KEYS
    assert set(zip(edges["SPOT_SOURCE_ID"], edges["SPOT_TARGET_ID"], strict=True)) == set(
        zip(graph.edges["source"], graph.edges["target"], strict=True)
    )
    assert (edges["TRACK_ID"].to_numpy() == by_id.loc[edges["SPOT_SOURCE_ID"], "TRACK_ID"].to_numpy()).all()
    dt = by_id.loc[edges["SPOT_TARGET_ID"], "FRAME"].to_numpy() - by_id.loc[edges["SPOT_SOURCE_ID"], "FRAME"]
    np.testing.assert_allclose(edges["SPEED"] * dt.to_numpy(), edges["DISPLACEMENT"])


def test_trackmate_leaves_unlinked_spots_without_track(tmp_path):
    spots_path, edges_path = write_trackmate_csv(gap_graph(), tmp_path / "tm.csv")
    assert edges_path.name == "tm_edges.csv"
    _, spots = read_trackmate(spots_path)
    by_id = spots.set_index("ID")
    assert pd.isna(by_id.at[16, "TRACK_ID"]) and by_id.drop(16)["TRACK_ID"].nunique() == 1
    assert by_id.at[15, "CTC_PARENT_ID"] == by_id.at[13, "CTC_TRACK_ID"]  # the gap starts a CTC track
    np.testing.assert_allclose(by_id.at[16, "RADIUS"], np.sqrt(25 / np.pi))


def test_trackmate_refuses_to_overwrite_either_table(tmp_path):
    graph = gap_graph()
    spots_path, edges_path = write_trackmate_csv(graph, tmp_path / "spots.csv")
    edges_path.write_text("keep me", encoding="utf-8")
    spots_path.unlink()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_trackmate_csv(graph, tmp_path / "spots.csv")
    assert not spots_path.exists() and edges_path.read_text(encoding="utf-8") == "keep me"
    write_trackmate_csv(graph, tmp_path / "spots.csv", overwrite=True)
    assert edges_path.read_text(encoding="utf-8").startswith("LABEL,TRACK_ID")
    assert trackmate_edges_path("a/Spots.csv").name == "edges.csv"
    with pytest.raises(ValueError, match=r"\.csv"):
        write_trackmate_csv(graph, tmp_path / "spots.txt")


# ---------------------------------------------------------------------- GEFF
def test_geff_round_trip_validates(tmp_path, valid_geff):
    graph = gap_graph()
    path = write_geff(graph, tmp_path / "tracks.geff")
    memory = valid_geff(path)
    ids = memory["node_ids"]
    assert sorted(ids.tolist()) == sorted(graph.nodes.index.tolist())
    assert {tuple(e) for e in memory["edge_ids"].tolist()} == set(
        zip(graph.edges["source"], graph.edges["target"], strict=True)
    )
    props = {name: prop["values"] for name, prop in memory["node_props"].items()}
    order = graph.nodes.loc[ids]
    np.testing.assert_allclose(props["x"], order["x"])
    assert (props["t"] == order["frame"].to_numpy()).all()
    assert (props["track_id"] == graph.tracks().node_track.loc[ids].to_numpy()).all()
    meta = memory["metadata"]
    assert [(a.name, a.type, a.unit, a.scale) for a in meta.axes] == [
        ("t", "time", "frame", None),
        ("y", "space", "pixel", None),
        ("x", "space", "pixel", None),
    ]
    assert meta.track_node_props == {"tracklet": "tracklet_id", "lineage": "lineage_id"}
    assert meta.node_props_metadata["area"].unit == "pixel^2" and meta.node_props_metadata["x"].description
    with pytest.raises(OutputExistsError):
        write_geff(graph, path)
    write_geff(graph, path, overwrite=True, calibration=Calibration(0.65, "micrometer", 300.0, "second"))
    scaled = valid_geff(path)["metadata"].axes
    assert [(a.name, a.scale, a.scaled_unit) for a in scaled] == [
        ("t", 300.0, "second"),
        ("y", 0.65, "micrometer"),
        ("x", 0.65, "micrometer"),
    ]


def test_geff_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "geff", None)  # makes "import geff" fail
    with pytest.raises(ValueError, match="'geff' package"):
        write_geff(gap_graph(), tmp_path / "t.geff")
    assert not (tmp_path / "t.geff").exists()


# ---------------------------------------------------------------------- tables and the command
def test_export_tables_need_a_matching_suffix(tmp_path):
    graph = gap_graph()
    (path,) = export_tracks(graph, tmp_path / "t.parquet", "parquet")
    assert len(pd.read_parquet(path)) == len(graph)
    with pytest.raises(ValueError, match=r"\.csv file name"):
        export_tracks(graph, tmp_path / "t.parquet", "csv")
    with pytest.raises(ValueError, match="unknown export format"):
        export_tracks(graph, tmp_path / "t.xml", "xml")


def test_export_command(cli, result_dir, tmp_path, capsys):
    out = tmp_path / "tracks.csv"
    assert cli(["export", str(result_dir), "--format", "csv", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert table["track_id"].nunique() == len(read_track_table(result_dir / "res_track.txt"))
    assert (
        cli(["export", str(result_dir), "--format", "trackmate", "--out", str(tmp_path / "spots.csv")]) == 0
    )
    printed = capsys.readouterr().out.split()
    assert printed[-2:] == [str(tmp_path / "spots.csv"), str(tmp_path / "edges.csv")]
    assert cli(["export", str(result_dir), "--format", "csv", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--overwrite" in error[0]
    assert cli(["export", str(result_dir), "--format", "parquet", "--out", str(tmp_path / "x.csv")]) == 2
    assert ".parquet" in capsys.readouterr().err
