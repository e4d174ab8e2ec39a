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


class _CountingFilters:
    """Stand-in appearance model: a fixed response for every pair, remembering which pairs were asked."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.asked: list[tuple[int, int]] = []

    def responses(self, windows, predicted, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        self.asked.extend(zip(rows.tolist(), cols.tolist(), strict=True))
        return np.full(len(rows), self.value)


def test_responses_are_measured_only_where_they_can_change_the_links() -> None:
    # Frame 0: four tracks; frame 1: A's detection 2 px away (alone), B and C both near one detection,
    # and a lone detection 28 px from track D (linked or not depending on the response). Track E was
    # missing in frame 0 (a gap) and has the unclaimed detection next to it.
    previous = [(50.0, 50.0), (200.0, 200.0), (200.0, 212.0), (300.0, 100.0), (100.0, 300.0)]
    current = [(52.0, 50.0), (200.0, 206.0), (300.0, 128.0), (100.0, 303.0)]
    scene = _scene(previous + current, [0] * 4 + [-1] + [1] * 4)
    row_node = np.arange(5)
    targets = np.arange(5, 9)
    rows = np.array([0, 1, 2, 3, 4])
    cols = np.array([0, 1, 1, 2, 3])
    squared = np.sum((scene.yx[targets[cols]] - scene.yx[row_node[rows]]) ** 2, axis=1)
    alive = np.array([True, True, True, True, False])
    worst_far = scene.link_cost(np.array([3]), np.array([7]), squared[3:4], 1, np.zeros(1))
    best_far = scene.link_cost(np.array([3]), np.array([7]), squared[3:4], 1, np.ones(1))
    assert best_far[0] < scene.gate < worst_far[0]  # the response decides whether D links
    row_alternative = np.where(alive, 0.5 * scene.gate, np.inf)
    col_alternative = np.full(4, 0.5 * scene.gate)
    for value, d_linked in ((1.0, True), (0.0, False)):
        filters = _CountingFilters(value)
        linked_rows, linked_cols, measured, response = forward_module._assign_with_appearance(
            scene,
            filters,
            None,
            scene.yx[row_node],
            row_node,
            targets,
            rows,
            cols,
            squared,
            alive,
            row_alternative,
            col_alternative,
        )
        links = dict(zip(linked_rows.tolist(), linked_cols.tolist(), strict=True))
        assert links[0] == 0 and (links.get(3) == 2) == d_linked
        assert 1 in links or 2 in links
        # A's certain link is never measured; B, C and D are. The gap row E and the detection left
        # without a track are measured for gap closing.
        assert (0, 0) not in filters.asked
        assert {(1, 1), (2, 1), (3, 2), (4, 3)} <= set(filters.asked)
        assert measured.tolist() == [False, True, True, True, True]
        np.testing.assert_array_equal(response[measured], value)


@pytest.mark.parametrize("seed", [0, 5])
def test_skipping_decided_components_leaves_the_links_unchanged(
    seed: int, monkeypatch, detections_of
) -> None:
    movie = generate_movie(frames=12, height=192, width=192, nuclei=25, seed=seed)
    table = detections_of(movie.labels, movie.images).drop(columns=["mean_intensity"], errors="ignore")
    frames = list(movie.images)
    robust = forward_module.solve_robust_assignment
    counts = {"undecided": 0, "pairs": 0}

    def counting(*args: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        result = robust(*args)
        counts["undecided"] += int(result[2].sum())
        counts["pairs"] += len(result[2])
        return result

    monkeypatch.setattr(forward_module, "solve_robust_assignment", counting)
    skipped = Linker().link(table, frames)
    assert 0 < counts["undecided"] < counts["pairs"]  # some real skips, some real measurements

    def nothing_decided(rows: np.ndarray, *args: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.ones(len(rows), bool)

    monkeypatch.setattr(forward_module, "solve_robust_assignment", nothing_decided)
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


@pytest.mark.parametrize("dims", [2, 3])
def test_candidate_pairs_match_the_ball_query(dims: int) -> None:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(dims)
    # A dense corner (more neighbours than the first k-nearest query asks for), a sparse rest, integer
    # positions at integer radii (points exactly on the sphere) and per-query radii.
    points = np.concatenate(
        [rng.uniform(0, 5, (40, dims)), rng.uniform(0, 200, (200, dims)), rng.integers(0, 20, (60, dims))]
    ).astype(np.float64)
    queries = np.concatenate([rng.uniform(0, 200, (150, dims)), rng.integers(0, 20, (50, dims))])
    radius = rng.choice([0.0, 3.0, 5.0, 12.0], len(queries))
    tree = cKDTree(points)
    rows, cols = forward_module._candidate_pairs(tree, queries, radius)
    found = tree.query_ball_point(queries, r=radius)
    expected = [(q, p) for q, near in enumerate(found) for p in near]
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == expected
    assert max(len(near) for near in found) > forward_module._NEIGHBOURS
    assert rows.dtype == cols.dtype == np.int64
    empty = forward_module._candidate_pairs(cKDTree(points[:0]), queries, 5.0)
    assert len(empty[0]) == len(empty[1]) == 0
