"""A catalogue of planted tracking errors: each lowers the scores it should and leaves the rest alone.

Every builder edits the perfect prediction of the tiny movie (see ``conftest.py``: cells A and E
moving along their own rows 35 px apart, cell B dividing into C and D at frame 4) and returns
``(graph, label images)``. The table says which scores the error must lower; every other checked
score must stay exactly at its error-free value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from celltrack.graph import TrackGraph
from celltrack.io import detections_from_sequence, write_ctc_result
from celltrack.metrics import EvaluationResult, evaluate

if TYPE_CHECKING:
    from conftest import Movie, WriteResult

CHECKED = ("TRA", "DET", "LNK", "SEG", "CT", "TF", "BC(0)", "P@5", "P@10", "P@20")
PRECISION = {"P@5", "P@10", "P@20"}
ERROR_FRAME = 4
SHIFT_PX = 15

Prediction = tuple[TrackGraph, np.ndarray]


def node(graph: TrackGraph, label: int, frame: int) -> int:
    """Node id of ``label`` in ``frame`` (the perfect prediction's labels are the GT track labels)."""
    nodes = graph.nodes
    return int(nodes.index[(nodes["label"] == label) & (nodes["frame"] == frame)][0])


def relink(graph: TrackGraph, remove: list[tuple[int, int]], add: list[tuple[int, int]]) -> TrackGraph:
    edges = graph.edges
    drop = pd.Series(list(zip(edges["source"], edges["target"], strict=True))).isin(remove).to_numpy()
    assert drop.sum() == len(remove), "a link to remove is not in the graph"
    kept = edges[~drop]
    extra = pd.DataFrame(add, columns=["source", "target"], dtype=np.int64)
    return TrackGraph(graph.nodes, pd.concat([kept, extra], ignore_index=True))


# ---------------------------------------------------------------------- error builders
def identity_swap(movie: Movie) -> Prediction:
    """A and E exchange identities from ERROR_FRAME on."""
    graph, labels = movie.prediction()
    a0, a1 = node(graph, movie.A, ERROR_FRAME - 1), node(graph, movie.A, ERROR_FRAME)
    e0, e1 = node(graph, movie.E, ERROR_FRAME - 1), node(graph, movie.E, ERROR_FRAME)
    return relink(graph, remove=[(a0, a1), (e0, e1)], add=[(a0, e1), (e0, a1)]), labels


def missed_division(movie: Movie) -> Prediction:
    """B continues into C; D appears as a new cell without a mother."""
    graph, labels = movie.prediction()
    b, d = node(graph, movie.B, movie.DIVISION_FRAME - 1), node(graph, movie.D, movie.DIVISION_FRAME)
    return relink(graph, remove=[(b, d)], add=[]), labels


def false_division(movie: Movie) -> Prediction:
    """A 'divides' into itself and E; E's own track ends the frame before."""
    graph, labels = movie.prediction()
    a0 = node(graph, movie.A, ERROR_FRAME - 1)
    e0, e1 = node(graph, movie.E, ERROR_FRAME - 1), node(graph, movie.E, ERROR_FRAME)
    return relink(graph, remove=[(e0, e1)], add=[(a0, e1)]), labels


def broken_track(movie: Movie) -> Prediction:
    """A's track stops at ERROR_FRAME - 1 and a new, unrelated track takes over."""
    graph, labels = movie.prediction()
    a0, a1 = node(graph, movie.A, ERROR_FRAME - 1), node(graph, movie.A, ERROR_FRAME)
    return relink(graph, remove=[(a0, a1)], add=[]), labels


def gap(movie: Movie) -> Prediction:
    """A is not detected in ERROR_FRAME; the tracker bridges the gap with a link over it."""
    graph, labels = movie.prediction()
    lost = node(graph, movie.A, ERROR_FRAME)
    before, after = node(graph, movie.A, ERROR_FRAME - 1), node(graph, movie.A, ERROR_FRAME + 1)
    edges = graph.edges[(graph.edges["source"] != lost) & (graph.edges["target"] != lost)]
    bridged = TrackGraph(graph.nodes.drop(index=lost), edges).with_edges([before], [after])
    labels[ERROR_FRAME][labels[ERROR_FRAME] == movie.A] = 0
    return bridged, labels


def shifted_centroids(movie: Movie) -> Prediction:
    """A's masks stretched SHIFT_PX * 2 to the right: centroid 15 px off, marker still covered."""
    _, labels = movie.prediction()
    yy, xx = np.indices(movie.SHAPE)
    r = movie.CELL_RADIUS
    for t in range(movie.N_FRAMES):
        ys, xs = np.nonzero(movie.markers[t] == movie.A)
        y, x = ys.mean(), xs.mean()
        near = (yy - y) ** 2 + (xx - x) ** 2 <= r**2
        far = (yy - y) ** 2 + (xx - x - 2 * SHIFT_PX) ** 2 <= r**2
        band = (np.abs(yy - y) <= r) & (xx >= x) & (xx <= x + 2 * SHIFT_PX)
        stadium = near | far | band
        assert not np.any(labels[t][stadium] > movie.A), "the stretched mask would cover another cell"
        labels[t][stadium] = movie.A
    return TrackGraph.from_ctc(detections_from_sequence(labels), movie.tracks), labels


CATALOGUE = [
    pytest.param(identity_swap, {"TRA", "LNK", "CT", "TF", *PRECISION}, id="identity_swap"),
    # Precision and TF survive: the mother's prediction continues into one daughter, the other is found.
    pytest.param(missed_division, {"TRA", "LNK", "CT", "BC(0)"}, id="missed_division"),
    # A false division ends the followed prediction early (Wu) and splits A's and E's tracks.
    pytest.param(false_division, {"TRA", "LNK", "CT", "TF", "BC(0)", *PRECISION}, id="false_division"),
    pytest.param(broken_track, {"TRA", "LNK", "CT", "TF", *PRECISION}, id="broken_track"),
    # One missing detection: a false negative (DET, SEG), two missing links, one missed frame.
    pytest.param(gap, {"DET", "TRA", "LNK", "SEG", "CT", "TF", *PRECISION}, id="gap"),
    # 15 px off: beyond 5 and 10 px, within 20 px; the wider mask lowers SEG's overlap.
    pytest.param(shifted_centroids, {"P@5", "P@10", "SEG"}, id="shifted_centroids"),
]


@pytest.fixture(scope="module")
def error_free(
    tiny_movie: Movie, tiny_gt_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> EvaluationResult:
    graph, labels = tiny_movie.prediction()
    res = write_ctc_result(graph, tmp_path_factory.mktemp("perfect") / "01_RES", labels.shape[1:],
                           labels.shape[0], label_source=lambda t: labels[t])
    return evaluate(res, tiny_gt_dir)


def test_error_free_prediction_is_perfect(error_free: EvaluationResult) -> None:
    for name in CHECKED:
        assert error_free.metrics[name] == pytest.approx(1.0), name


@pytest.mark.parametrize(("plant", "lowered"), CATALOGUE)
def test_planted_error_lowers_exactly_its_scores(
    plant: Callable[[Movie], Prediction],
    lowered: set[str],
    tiny_movie: Movie,
    tiny_gt_dir: Path,
    write_result: WriteResult,
    error_free: EvaluationResult,
) -> None:
    graph, labels = plant(tiny_movie)
    result = evaluate(write_result(graph, labels), tiny_gt_dir)
    wrong = {}
    for name in CHECKED:
        value, reference = result.metrics[name], error_free.metrics[name]
        if name in lowered and not value < reference:
            wrong[name] = f"{value} should be below {reference}"
        elif name not in lowered and value != pytest.approx(reference):
            wrong[name] = f"{value} should equal {reference}"
    assert not wrong, wrong


def test_shift_is_fifteen_pixels_and_keeps_markers_matched(tiny_movie: Movie, tiny_gt_dir: Path,
                                                          write_result: WriteResult) -> None:
    graph, labels = shifted_centroids(tiny_movie)
    result = evaluate(write_result(graph, labels), tiny_gt_dir, metrics=["TRA", "precision"])
    shifted = result.curve.pairs.merge(graph.nodes[["label"]], left_on="pred_node", right_index=True)
    distances = shifted.loc[shifted["label"] == tiny_movie.A, "distance"]
    assert len(distances) == tiny_movie.N_FRAMES
    assert np.allclose(distances, SHIFT_PX)
    assert result.metrics["P@10"] == pytest.approx(1 - tiny_movie.N_FRAMES / tiny_movie.n_gt_nodes)
