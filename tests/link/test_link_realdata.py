"""The linker on the first frames of real CTC data, with ground-truth markers as detections."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from celltrack.graph import TrackGraph, measure_detections
from celltrack.io import open_sequence, read_track_table
from celltrack.link import link_tracks

pytestmark = pytest.mark.realdata

FRAMES = 20


def edge_keys(graph: TrackGraph) -> set[tuple[int, int, int, int]]:
    nodes = graph.nodes
    src, dst = nodes.loc[graph.edges["source"]], nodes.loc[graph.edges["target"]]
    return set(
        zip(
            src["frame"].tolist(),
            src["label"].tolist(),
            dst["frame"].tolist(),
            dst["label"].tolist(),
            strict=True,
        )
    )


@pytest.mark.parametrize("dataset", ["hela_dir", "sim_dir"])
def test_ground_truth_markers_are_linked_back(dataset: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(dataset)
    markers = open_sequence(root / "01_GT" / "TRA", prefix="man_track")
    raw = open_sequence(root / "01")
    detections = pd.concat([measure_detections(markers[t], t) for t in range(FRAMES)], ignore_index=True)
    tracks = read_track_table(root / "01_GT" / "TRA" / "man_track.txt")
    tracks = tracks[tracks["begin"] < FRAMES]
    truth = edge_keys(TrackGraph.from_ctc(detections, tracks))
    frames = [raw[t] for t in range(FRAMES)]
    found = edge_keys(link_tracks(detections, frames))
    recall = len(found & truth) / len(truth)
    precision = len(found & truth) / max(len(found), 1)
    assert recall > 0.985 and precision > 0.985, (recall, precision)
