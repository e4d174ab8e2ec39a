"""Which candidate pairs the filters are asked about, and that skipping the others changes nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrack.link import Linker, LinkerConfig
from celltrack.link import forward as forward_module
from celltrack.link.costs import Scene
from celltrack.synthetic import generate_movie


def _scene(yx: list[tuple[float, float]], frames: list[int]) -> Scene:
    table = pd.DataFrame(
        {
            "frame": frames,
            "label": np.arange(1, len(frames) + 1),
            "y": [p[0] for p in yx],
            "x": [p[1] for p in yx],
            "area": np.full(len(frames), 300.0),
        }
    )
    config = LinkerConfig(diameter=20.0, motion={"reach": 30.0, "sigma": 5.0}).resolve(table)
    return Scene.build(table, config, frame_shape=(400, 400))


def test_only_uncontested_certain_links_skip_the_filters() -> None:
    # Frame 0: three tracks; frame 1: A's detection 2 px away (alone), B and C both near one detection,
    # and a lone detection 28 px from track D (linked or not depending on the response).
    previous = [(50.0, 50.0), (200.0, 200.0), (200.0, 212.0), (300.0, 100.0)]
    current = [(52.0, 50.0), (200.0, 206.0), (300.0, 128.0)]
    scene = _scene(previous + current, [0] * 4 + [1] * 3)
    row_node = np.arange(4)
    targets = np.arange(4, 7)
    rows = np.array([0, 1, 2, 3])
    cols = np.array([0, 1, 1, 2])
    squared = np.sum((scene.yx[targets[cols]] - scene.yx[row_node[rows]]) ** 2, axis=1)
    alive = np.ones(4, bool)
    settled = forward_module._linked_whatever_the_response(
        scene, row_node, targets, rows, cols, alive, squared
    )
    worst_far = scene.link_cost(np.array([3]), np.array([6]), squared[3:], 1, np.zeros(1))
    assert worst_far[0] > scene.gate  # the far pair would not be linked with a poor response
    assert settled.tolist() == [True, False, False, False]
    # A track that was missing (gap) never settles: its response is kept for gap closing.
    assert not forward_module._linked_whatever_the_response(
        scene, row_node, targets, rows, cols, np.array([False, True, True, True]), squared
    )[0]


@pytest.mark.parametrize("seed", [0, 5])
def test_skipping_settled_pairs_leaves_the_links_unchanged(seed: int, monkeypatch, detections_of) -> None:
    movie = generate_movie(frames=12, height=192, width=192, nuclei=25, seed=seed)
    table = detections_of(movie.labels, movie.images).drop(columns=["mean_intensity"], errors="ignore")
    frames = list(movie.images)
    measured_everywhere = forward_module._linked_whatever_the_response
    settled_counts: list[int] = []

    def counting(*args: object) -> np.ndarray:
        settled = measured_everywhere(*args)
        settled_counts.append(int(settled.sum()))
        return settled

    monkeypatch.setattr(forward_module, "_linked_whatever_the_response", counting)
    skipped = Linker().link(table, frames)
    assert sum(settled_counts) > 0  # the comparison below is about real skips

    monkeypatch.setattr(
        forward_module,
        "_linked_whatever_the_response",
        lambda *args: np.zeros_like(measured_everywhere(*args)),
    )
    full = Linker().link(table, frames)
    pd.testing.assert_frame_equal(
        skipped.edges.sort_values(["source", "target"]).reset_index(drop=True),
        full.edges.sort_values(["source", "target"]).reset_index(drop=True),
    )


def test_same_frame_pairs_reach_only_the_queried_frame() -> None:
    from celltrack.link.global_pass import _same_frame_pairs

    points = np.array([[0.0, 0.0], [0.0, 3.0], [0.0, 0.5], [10.0, 10.0]])
    points_frame = np.array([1, 1, 2, 1])
    queries = np.array([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]])
    query, point = _same_frame_pairs(
        points, points_frame, queries, np.array([1, 2, 3]), np.array([4.0, 4.0, 4.0])
    )
    assert sorted(zip(query.tolist(), point.tolist(), strict=True)) == [(0, 0), (0, 1), (1, 2)]
    empty = _same_frame_pairs(points[:0], points_frame[:0], queries, np.array([1, 2, 3]), 4.0)
    assert len(empty[0]) == len(empty[1]) == 0
