"""The Wu et al. 2013 precision curve on hand-made graphs and label images (no files)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrack.graph import TrackGraph
from celltrack.io import paint_markers
from celltrack.metrics import PrecisionConfig, WuPrecision, cell_segments, marker_coverage, precision_curve

SHAPE = (40, 80)
N_FRAMES = 6


def scene(objects: list[tuple[int, int, float, float]], edges: list[tuple[int, int]], radius: float,
          n_frames: int = N_FRAMES) -> tuple[TrackGraph, np.ndarray]:
    """A graph and its label images from ``(frame, label, y, x)`` discs; node ids = list positions."""
    nodes = pd.DataFrame(objects, columns=["frame", "label", "y", "x"]).assign(area=1)
    images = np.zeros((n_frames, *SHAPE), np.uint16)
    for t, rows in nodes.groupby("frame"):
        images[t] = paint_markers(SHAPE, rows["y"], rows["x"], rows["label"], radius)
    edge_table = pd.DataFrame(edges, columns=["source", "target"], dtype=np.int64)
    return TrackGraph(nodes, edge_table), images


def chain(label: int, frames: range, y: float, x0: float, first_id: int, dx: float = 2.0,
          ) -> tuple[list[tuple[int, int, float, float]], list[tuple[int, int]]]:
    """One cell moving right by ``dx`` per frame, linked frame to frame."""
    objects = [(t, label, y, x0 + dx * t) for t in frames]
    edges = [(first_id + i, first_id + i + 1) for i in range(len(objects) - 1)]
    return objects, edges


def gt_single_cell() -> tuple[TrackGraph, np.ndarray]:
    objects, edges = chain(1, range(N_FRAMES), 20, 10, 0)
    return scene(objects, edges, radius=2)


def test_perfect_prediction_scores_one_everywhere() -> None:
    gt, markers = gt_single_cell()
    objects, edges = chain(7, range(N_FRAMES), 20, 10, 0)
    pred, labels = scene(objects, edges, radius=5)
    curve = precision_curve(gt, markers, pred, labels)
    assert curve.n_cells == 1 and curve.n_compared == N_FRAMES
    np.testing.assert_array_equal(curve.thresholds, np.arange(51.0))
    np.testing.assert_array_equal(curve.precision, np.ones(51))


def test_prediction_that_ends_early_counts_the_rest_as_misses() -> None:
    gt, markers = gt_single_cell()
    objects, edges = chain(7, range(3), 20, 10, 0)
    pred, labels = scene(objects, edges, radius=5)
    curve = precision_curve(gt, markers, pred, labels)
    assert curve.n_compared == N_FRAMES
    assert curve.at(50) == pytest.approx(3 / N_FRAMES)
    missed = curve.pairs[curve.pairs["frame"] >= 3]
    assert (missed["pred_node"] == -1).all() and np.isinf(missed["distance"]).all()


def test_gap_links_are_followed_and_only_the_gap_frame_is_missed() -> None:
    gt, markers = gt_single_cell()
    objects, _ = chain(7, range(N_FRAMES), 20, 10, 0)
    del objects[3]  # the object is lost in frame 3 ...
    linked = [(0, 1), (1, 2), (2, 3), (3, 4)]  # ... and the tracker bridges 2 -> 4 with a gap link
    pred, labels = scene(objects, linked, radius=5)
    assert cell_segments(pred).nunique() == 1
    assert pred.tracks().tracks.shape[0] == 2  # CTC splits the gap into parent and child tracks
    with_gap = precision_curve(gt, markers, pred, labels)
    assert with_gap.at(20) == pytest.approx((N_FRAMES - 1) / N_FRAMES)

    unlinked = [(0, 1), (1, 2), (3, 4)]
    broken, _ = scene(objects, unlinked, radius=5)
    assert precision_curve(gt, markers, broken, labels).at(20) == pytest.approx(3 / N_FRAMES)


def test_prediction_that_divides_early_stops_being_followed() -> None:
    gt, markers = gt_single_cell()
    objects, edges = chain(7, range(3), 20, 10, 0)
    objects += [(t, 8, 20, 10 + 2 * t) for t in range(3, N_FRAMES)]  # continues the cell ...
    objects += [(t, 9, 30, 60) for t in range(3, N_FRAMES)]  # ... but a false sister splits off
    edges += [(2, 3), (3, 4), (4, 5), (2, 6), (6, 7), (7, 8)]  # node 2 divides
    pred, labels = scene(objects, edges, radius=4)
    assert len(pred.divisions()) == 1
    assert precision_curve(gt, markers, pred, labels).at(50) == pytest.approx(3 / N_FRAMES)


def test_distances_are_centroid_to_centroid() -> None:
    gt, markers = gt_single_cell()
    # Predicted objects 7 px right of the markers (still covering them: radius 10).
    objects, edges = chain(7, range(N_FRAMES), 20, 17, 0)
    pred, labels = scene(objects, edges, radius=10)
    curve = WuPrecision(report_at=(5, 10)).curve(gt, markers, pred, labels)
    assert np.allclose(curve.pairs["distance"], 7.0)
    assert WuPrecision(report_at=(5, 10)).scores(curve) == {"P@5": 0.0, "P@10": 1.0}
    assert curve.precision[6] == 0.0 and curve.precision[7] == 1.0
    assert np.all(np.diff(curve.precision) >= 0)


def test_gt_division_ends_the_mother_and_daughters_are_followed_from_their_start() -> None:
    mother, edges = chain(1, range(3), 20, 30, 0, dx=0)
    left = [(t, 2, 20, 20) for t in range(3, N_FRAMES)]
    right = [(t, 3, 20, 40) for t in range(3, N_FRAMES)]
    objects = mother + left + right
    edges += [(2, 3), (3, 4), (4, 5), (2, 6), (6, 7), (7, 8)]
    gt, markers = scene(objects, edges, radius=2)
    # The prediction misses the division: it follows the mother into the left daughter only,
    # and finds the right daughter as a new cell.
    pred, labels = scene(objects, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (6, 7), (7, 8)], radius=5)
    curve = precision_curve(gt, markers, pred, labels)
    assert curve.n_cells == 3
    assert curve.at(0) == 1.0


def test_coverage_must_exceed_half_of_the_marker() -> None:
    markers = np.zeros((1, 4, 4), np.uint16)
    markers[0, 0, :] = 5  # a 4-pixel marker
    half = np.zeros_like(markers)
    half[0, 0, :2] = 9
    most = half.copy()
    most[0, 0, 2] = 9
    assert marker_coverage(markers[0], half[0]).to_dict() == {5: 0}
    assert marker_coverage(markers[0], most[0]).to_dict() == {5: 9}

    gt = TrackGraph(pd.DataFrame({"frame": [0], "label": [5], "y": [0.0], "x": [1.5], "area": [4]}))
    pred = TrackGraph(pd.DataFrame({"frame": [0], "label": [9], "y": [0.0], "x": [1.0], "area": [3]}))
    assert precision_curve(gt, markers, pred, half).at(50) == 0.0
    assert precision_curve(gt, markers, pred, most).at(50) == 1.0


def test_from_frame_restricts_to_cells_present_in_that_frame() -> None:
    early, edges_early = chain(1, range(3), 8, 10, 0)  # cell 1: frames 0-2 only
    long, edges_long = chain(2, range(N_FRAMES), 20, 10, 3)  # cell 2: frames 0-5
    late, edges_late = chain(3, range(3, N_FRAMES), 32, 10, 9)  # cell 3: frames 3-5
    gt, markers = scene(early + long + late, edges_early + edges_long + edges_late, radius=2)

    # The prediction loses cell 2 between frames 2 and 3 and picks it up as a new track.
    pred_edges = [(0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11)]
    pred, labels = scene(early + long + late, pred_edges, radius=5)

    full = precision_curve(gt, markers, pred, labels)
    assert full.n_cells == 3 and full.n_compared == 3 + 6 + 3
    assert full.at(20) == pytest.approx((3 + 3 + 3) / 12)

    from_3 = precision_curve(gt, markers, pred, labels, from_frame=3)
    assert from_3.n_cells == 2  # cell 1 ended before frame 3
    assert from_3.n_compared == 3 + 3
    assert (from_3.pairs["frame"] >= 3).all()
    assert from_3.at(20) == 1.0  # cell 2 is followed by the track that covers it in frame 3
    assert from_3.from_frame == 3


def test_from_frame_without_gt_cells_raises() -> None:
    gt, markers = scene(*chain(1, range(3), 20, 10, 0), radius=2)
    pred, labels = scene(*chain(7, range(N_FRAMES), 20, 10, 0), radius=5)
    with pytest.raises(ValueError, match=r"from_frame=4: the ground truth has no cell in that frame"):
        precision_curve(gt, markers, pred, labels, from_frame=4)


def test_each_start_frame_is_read_once() -> None:
    gt, markers = gt_single_cell()
    pred, labels = scene(*chain(7, range(N_FRAMES), 20, 10, 0), radius=5)
    reads: list[tuple[str, int]] = []

    def counted(name: str, frames: np.ndarray):
        def read(t: int) -> np.ndarray:
            reads.append((name, t))
            return frames[t]
        return read

    precision_curve(gt, counted("gt", markers), pred, counted("pred", labels))
    assert sorted(reads) == [("gt", 0), ("pred", 0)]


def test_invalid_inputs_raise() -> None:
    gt, markers = gt_single_cell()
    pred, labels = scene(*chain(7, range(N_FRAMES), 20, 10, 0), radius=5)
    with pytest.raises(TypeError, match="integer"):
        precision_curve(gt, markers, pred, labels.astype(float))
    with pytest.raises(ValueError, match="differ"):
        precision_curve(gt, markers, pred, labels[:, :20])
    twice = TrackGraph(pd.concat([pred.nodes, pred.nodes.iloc[:1]], ignore_index=True))
    with pytest.raises(ValueError, match="two nodes with label 7 in frame 0"):
        precision_curve(gt, markers, twice, labels)
    with pytest.raises(ValueError):
        PrecisionConfig(min_coverage=0.3)
    with pytest.raises(ValueError):
        WuPrecision(no_such_option=1)


def test_empty_prediction_misses_every_frame() -> None:
    gt, markers = gt_single_cell()
    nothing = TrackGraph(pd.DataFrame({"frame": [], "label": [], "y": [], "x": [], "area": []}))
    curve = precision_curve(gt, markers, nothing, np.zeros_like(markers))
    assert curve.n_compared == N_FRAMES
    np.testing.assert_array_equal(curve.precision, np.zeros(51))
