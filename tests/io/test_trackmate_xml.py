"""TrackMate XML export, read back by independent readers: pytrackmate and geff's TrackMate converter.

What Fiji's TrackMate reads from the file (``TmXmlReader``) and what these readers take from it is
the same: spots with their features by ``ID``, edges by ``SPOT_SOURCE_ID`` / ``SPOT_TARGET_ID``
inside one ``Track`` per lineage, and the visible tracks.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from celltrack.cli.main import main
from celltrack.graph import TrackGraph
from celltrack.io import read_gt
from celltrack.io.calibration import Calibration, read_calibration
from celltrack.io.export import export_result, lineage_ids, node_intensities, read_result


def read_back(xml: Path, tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spots by pytrackmate (with their TrackMate track), links by geff's TrackMate converter."""
    from geff.convert import from_trackmate_xml_to_geff
    from geff.core_io import read_to_memory
    from pytrackmate import trackmate_peak_import

    spots = trackmate_peak_import(str(xml), get_tracks=True).set_index("spot_id")
    spots.index = spots.index.astype(np.int64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from_trackmate_xml_to_geff(xml, tmp_path / "converted.geff")
    # TrackMate falls back on the user's display settings; nothing else may be missing or unknown
    assert [str(w.message) for w in caught] == [
        "Missing tag(s): ['DisplaySettings']. The associated metadata will not be included in the GEFF file."
    ]
    converted = read_to_memory(str(tmp_path / "converted.geff"))
    links = pd.DataFrame(converted["edge_ids"], columns=["source", "target"]).astype(np.int64)
    return spots, links


def assert_same_graph(
    graph: TrackGraph, spots: pd.DataFrame, links: pd.DataFrame, scale: float = 1.0
) -> None:
    nodes = graph.nodes
    assert sorted(spots.index) == sorted(nodes.index)
    spots = spots.loc[nodes.index]
    np.testing.assert_allclose(spots["x"], nodes["x"] * scale)
    np.testing.assert_allclose(spots["y"], nodes["y"] * scale)
    np.testing.assert_array_equal(spots["t_stamp"], nodes["frame"])
    np.testing.assert_allclose(spots["q"], 1.0)
    assert {tuple(e) for e in links.to_numpy()} == set(
        zip(graph.edges["source"], graph.edges["target"], strict=True)
    )
    assert (links.groupby("source").size() >= 2).sum() == len(graph.divisions())
    # pytrackmate's track label: the same partition of the linked spots into lineages
    linked = nodes.index.isin(pd.concat([graph.edges["source"], graph.edges["target"]]))
    pairs = pd.DataFrame(
        {"ours": lineage_ids(graph).loc[nodes.index][linked], "read": spots["label"][linked]}
    )
    assert pairs.drop_duplicates().shape[0] == pairs["ours"].nunique() == pairs["read"].nunique()


def test_a_dividing_result_round_trips(tmp_path, gt_as_result):
    root, res = gt_as_result(tmp_path / "movie")
    xml = tmp_path / "tracks.xml"
    assert export_result(res, xml, "trackmate-xml", images=root / "01") == [xml]
    graph = read_result(res).graph
    assert len(graph.divisions()) > 0
    spots, links = read_back(xml, tmp_path)
    assert_same_graph(graph, spots, links)
    intensities = node_intensities(read_result(res), root / "01")
    np.testing.assert_allclose(spots.loc[graph.nodes.index, "mean_intensity"], intensities)
    images = tifffile.imread(sorted((root / "01").glob("t*.tif"))[2])
    masks = tifffile.imread(res / "mask002.tif")
    node = graph.nodes[graph.nodes["frame"] == 2].index[0]
    track = graph.tracks().node_track.loc[node]
    assert intensities.loc[node] == pytest.approx(images[masks == track].mean())

    settings = ET.parse(xml).getroot().find("Settings")
    image = settings.find("ImageData").attrib
    assert (image["folder"], image["filename"]) == (str(root), "01")
    assert (image["width"], image["height"], image["nframes"]) == ("96", "96", "6")
    assert image["pixelwidth"] == image["timeinterval"] == "1.0"
    model = ET.parse(xml).getroot().find("Model").attrib
    assert model == {"spatialunits": "pixel", "timeunits": "frame"}


def test_the_demo_result_round_trips_and_the_command_writes_it(tmp_path, capsys):
    from celltrack.pipeline.demo import run_demo
    from celltrack.synthetic import SyntheticConfig

    demo = run_demo(tmp_path / "demo", SyntheticConfig(frames=8, height=96, width=96, nuclei=6, seed=2))
    xml = tmp_path / "demo_tracks.xml"
    assert main(["export", str(demo.res_dir), "--format", "trackmate-xml", "--out", str(xml)]) == 0
    assert capsys.readouterr().out.strip() == str(xml)
    spots, links = read_back(xml, tmp_path)
    assert_same_graph(read_result(demo.res_dir).graph, spots, links)
    assert spots["mean_intensity"].notna().all()  # the movie recorded by the demo is found
    assert main(["export", str(demo.res_dir), "--format", "trackmate-xml", "--out", str(xml)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    export = ["export", str(demo.res_dir), "--format", "trackmate-xml"]
    assert main([*export, "--out", str(tmp_path / "t.txt")]) == 2
    assert ".xml" in capsys.readouterr().err


def test_calibration_from_imagej_and_ome_metadata_scales_the_export(tmp_path, gt_as_result):
    root, res = gt_as_result(tmp_path / "movie")
    frames = np.stack([tifffile.imread(p) for p in sorted((root / "01").glob("t*.tif"))])
    movie = tmp_path / "movie.tif"
    tifffile.imwrite(
        movie,
        frames,
        imagej=True,
        resolution=(1 / 0.65, 1 / 0.65),
        metadata={"unit": "um", "finterval": 300.0},
    )
    calibration = read_calibration(movie)
    assert calibration.pixel_size == pytest.approx(0.65)
    assert (calibration.space_unit, calibration.frame_interval, calibration.time_unit) == (
        "micrometer",
        300.0,
        "second",
    )
    ome = tmp_path / "movie.ome.tif"
    metadata = {"axes": "TYX", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "µm", "TimeIncrement": 2.0}
    tifffile.imwrite(ome, frames, ome=True, metadata=metadata | {"TimeIncrementUnit": "min"})
    assert read_calibration(ome) == Calibration(0.5, "micrometer", 2.0, "minute")
    assert read_calibration(root / "01") == Calibration()  # CTC frames declare nothing

    xml = tmp_path / "tracks.xml"
    export_result(res, xml, "trackmate-xml", images=movie)
    document = ET.parse(xml).getroot()
    assert document.find("Model").attrib == {"spatialunits": "micrometer", "timeunits": "second"}
    image = document.find("Settings/ImageData").attrib
    assert (image["folder"], image["filename"]) == (str(tmp_path), "movie.tif")
    assert float(image["pixelwidth"]) == pytest.approx(0.65) and float(image["timeinterval"]) == 300.0
    spots, links = read_back(xml, tmp_path)
    graph = read_result(res).graph
    assert_same_graph(graph, spots, links, scale=0.65)
    np.testing.assert_allclose(spots.loc[graph.nodes.index, "t"], graph.nodes["frame"] * 300.0)

    export_result(
        res, tmp_path / "manual.xml", "trackmate-xml", images=movie, pixel_size=0.2, frame_interval=10
    )
    image = ET.parse(tmp_path / "manual.xml").getroot().find("Settings/ImageData").attrib
    assert (image["pixelwidth"], image["timeinterval"]) == ("0.2", "10.0")


@pytest.mark.realdata
@pytest.mark.slow
def test_hela_with_gt_markers_round_trips(hela_dir, tmp_path):
    """HeLa 01 tracked from its GT markers: the same spots, links and divisions come back."""
    from celltrack.pipeline.track import run_tracking

    res = tmp_path / "01_RES"
    run_tracking(hela_dir / "01", res, detections=hela_dir / "01_GT" / "TRA")
    xml = tmp_path / "hela.xml"
    export_result(res, xml, "trackmate-xml")
    graph = read_result(res).graph
    spots, links = read_back(xml, tmp_path)
    assert len(spots) == len(graph) == len(read_gt(hela_dir / "01_GT").detections())
    assert len(links) == len(graph.edges) and len(graph.divisions()) > 20
    assert_same_graph(graph, spots, links)
    assert spots["mean_intensity"].gt(0).all()


def test_no_links_no_tracks_and_bad_ids(tmp_path):
    from celltrack.io.trackmate import TrackMateImage, write_trackmate_xml

    nodes = pd.DataFrame({"frame": [0, 1], "label": [1, 1], "y": [3.0, 4.0], "x": [5.0, 6.0], "area": [9, 9]})
    lonely = TrackGraph(nodes)
    path = write_trackmate_xml(lonely, tmp_path / "lonely.xml", TrackMateImage((16, 16), 2))
    root = ET.parse(path).getroot()
    assert len(root.findall("Model/AllSpots/SpotsInFrame/Spot")) == 2
    assert root.find("Model/AllTracks").findall("Track") == []
    huge = TrackGraph(nodes.set_axis(pd.Index([0, 2**31])))
    with pytest.raises(ValueError, match="node ids"):
        write_trackmate_xml(huge, tmp_path / "huge.xml", TrackMateImage((16, 16), 2))
