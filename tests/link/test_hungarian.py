import numpy as np
import pandas as pd

from celltrack.link.hungarian import HungarianConfig, HungarianLinker, assign_frame_pair, link_hungarian


def test_assignment_is_globally_optimal_not_greedy():
    # Greedy nearest-first would link a->x (1 px) and leave b far from y; the optimum pairs a->y, b->x.
    sources = np.array([[0.0, 0.0], [0.0, 3.0]])
    targets = np.array([[0.0, 1.5], [0.0, -2.0]])
    rows, cols = assign_frame_pair(sources, targets, max_distance=10)
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 1: 0}


def test_far_points_stay_unlinked():
    rows, cols = assign_frame_pair(np.array([[0.0, 0.0]]), np.array([[50.0, 50.0]]), max_distance=10)
    assert len(rows) == len(cols) == 0
    rows, _ = assign_frame_pair(np.zeros((0, 2)), np.array([[1.0, 1.0]]), max_distance=10)
    assert len(rows) == 0


def test_linker_follows_moving_points_through_an_empty_frame():
    rows = []
    for t in range(6):
        if t == 3:
            continue  # an empty frame ends tracks; the baseline has no gap closing
        rows += [(t, 1, 10 + 2 * t, 10, 20), (t, 2, 40, 40 - 2 * t, 20)]
    detections = pd.DataFrame(rows, columns=["frame", "label", "y", "x", "area"])
    graph = HungarianLinker(HungarianConfig(max_distance=5)).link(detections)
    tracks = graph.tracks().tracks
    assert len(tracks) == 4 and (tracks["parent"] == 0).all()
    assert sorted((tracks["end"] - tracks["begin"] + 1).tolist()) == [2, 2, 3, 3]


def test_no_detections():
    empty = pd.DataFrame(columns=["frame", "label", "y", "x", "area"])
    assert len(link_hungarian(empty)) == 0
