"""The frame-to-frame pass: one sparse assignment per frame between active tracks and new detections.

For every frame ``t`` the tracks seen at ``t - 1`` compete for the detections of ``t``. Candidates come from
a KD-tree around each track's predicted position; the cost combines motion, size change and (with frames)
the track's correlation-filter response at the candidate, all filters evaluated in one batched pass.
Tracks missing for up to ``gaps.max_gap`` frames stay active: they are not linked here, but their filter
responses at unclaimed detections are recorded for gap closing in the global pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from celltrack.link.appearance import TrackFilters
from celltrack.link.costs import Scene
from celltrack.link.lap import solve_sparse_assignment

logger = logging.getLogger(__name__)

__all__ = ["ForwardResult", "forward_pass"]

Progress = Callable[[Iterable[int]], Iterable[int]]


@dataclass(frozen=True)
class ForwardResult:
    """Links and by-products of the frame-to-frame pass.

    Attributes
    ----------
    sources, targets : numpy.ndarray of int
        One-to-one links between consecutive frames (node ids).
    velocity : numpy.ndarray, shape (N, 2)
        Smoothed velocity (px/frame) of the track at every node.
    pair_source, pair_target : numpy.ndarray of int, shape (P,)
        Pairs (last node of a track, candidate detection) whose filter response was measured.
    pair_response : numpy.ndarray, shape (P,)
        Those responses in [0, 1] (empty without frames).
    """

    sources: np.ndarray
    targets: np.ndarray
    velocity: np.ndarray
    pair_source: np.ndarray
    pair_target: np.ndarray
    pair_response: np.ndarray


def _candidate_pairs(
    tree: cKDTree, predicted: np.ndarray, radius: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query row, tree point) within ``radius`` of each query, as two flat int64 arrays."""
    found = tree.query_ball_point(predicted, r=radius)
    rows = np.repeat(np.arange(len(predicted)), [len(f) for f in found])
    cols = np.fromiter((c for f in found for c in f), np.int64, count=len(rows))
    return rows.astype(np.int64), cols


def _linked_whatever_the_response(
    scene: Scene,
    row_node: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    alive: np.ndarray,
    squared: np.ndarray,
) -> np.ndarray:
    """Candidate pairs the assignment links for every filter response in [0, 1].

    A pair qualifies when it is its row's only candidate and its column's only claimant among the tracks
    seen in the previous frame (``alive``), so it forms its own assignment problem, and even the worst
    response (0) leaves its cost below the alternative of a death plus a birth (one gate).

    Returns
    -------
    numpy.ndarray of bool, shape (P,)
    """
    settled = np.zeros(len(rows), bool)
    if not alive.any():
        return settled
    row_count = np.bincount(rows[alive], minlength=int(rows.max()) + 1)
    col_count = np.bincount(cols[alive], minlength=int(cols.max()) + 1)
    alone = np.flatnonzero(alive & (row_count[rows] == 1) & (col_count[cols] == 1))
    if len(alone) == 0:
        return settled
    worst = scene.link_cost(
        row_node[rows[alone]], targets[cols[alone]], squared[alone], 1, np.zeros(len(alone))
    )
    # A margin well above rounding keeps ties (where the solver's choice is arbitrary) measured.
    settled[alone] = worst < scene.gate * (1.0 - 1e-9)
    return settled


def forward_pass(
    scene: Scene,
    frames: Sequence[np.ndarray] | None,
    filters: TrackFilters | None,
    progress: Progress | None = None,
) -> ForwardResult:
    """Link every frame to the next by sparse assignment.

    Parameters
    ----------
    scene : Scene
        Nodes and resolved configuration.
    frames : sequence of numpy.ndarray or None
        Raw frames indexed by frame number; None for linking without appearance.
    filters : TrackFilters or None
        Appearance model (used only with frames); None for linking without appearance.
    progress : callable, optional
        Wraps the iterable of frame numbers (e.g. ``tqdm``).

    Returns
    -------
    ForwardResult
    """
    config = scene.config
    motion = config.motion
    n = len(scene.frame)
    velocity = np.zeros((n, 2), np.float64)
    empty = np.zeros(0, np.int64)
    if n == 0:
        return ForwardResult(empty, empty, velocity, empty, empty, np.zeros(0))
    order = np.argsort(scene.frame, kind="stable")
    sorted_frames = scene.frame[order]
    first, last = int(sorted_frames[0]), int(sorted_frames[-1])
    bounds = np.searchsorted(sorted_frames, np.arange(first, last + 2))

    appearance = filters if frames is not None else None
    reach = float(motion.reach)
    beta = float(motion.velocity_weight)
    alpha = motion.velocity_smoothing
    max_steps = config.gaps.max_gap + 1
    # active rows: last node, frame it was seen, position, velocity
    row_node = empty.copy()
    row_frame = empty.copy()
    row_yx = np.zeros((0, 2))
    row_velocity = np.zeros((0, 2))
    link_sources: list[np.ndarray] = []
    link_targets: list[np.ndarray] = []
    pair_source: list[np.ndarray] = []
    pair_target: list[np.ndarray] = []
    pair_response: list[np.ndarray] = []

    frame_numbers: Iterable[int] = range(first, last + 1)
    if progress is not None:
        frame_numbers = progress(frame_numbers)
    for t in frame_numbers:
        targets = order[bounds[t - first] : bounds[t - first + 1]]
        target_yx = scene.yx[targets]
        steps = t - row_frame
        predicted = row_yx + (beta * steps)[:, None] * row_velocity
        windows = None
        if appearance is not None and frames is not None and len(targets):
            windows = appearance.prepare(frames[t], target_yx)
        linked_rows, linked_cols = empty, empty
        if len(targets) and len(row_node):
            rows, cols = _candidate_pairs(cKDTree(target_yx), predicted, reach * np.sqrt(steps))
            squared = np.sum((target_yx[cols] - predicted[rows]) ** 2, axis=1)
            response = None
            alive = steps[rows] == 1
            if appearance is not None and windows is not None and len(rows):
                # Uncontested links that any response would make are not measured: they cost the CF
                # pass most of its work on sparse movies and change nothing (their source never becomes
                # a segment end, the only place recorded responses are looked up).
                settled = _linked_whatever_the_response(scene, row_node, targets, rows, cols, alive, squared)
                response = np.full(len(rows), np.nan)
                measured = np.flatnonzero(~settled)
                response[measured] = appearance.responses(windows, predicted, rows[measured], cols[measured])
                pair_source.append(row_node[rows[measured]])
                pair_target.append(targets[cols[measured]])
                pair_response.append(response[measured])
            cost = scene.link_cost(row_node[rows], targets[cols], squared, steps[rows], response)
            linked_rows, linked_cols = solve_sparse_assignment(
                rows[alive],
                cols[alive],
                cost[alive],
                # No border discount here: a nucleus at the border that is still there is far likelier
                # than one leaving and another entering at the same place, and a nucleus that does leave
                # has no candidate anyway. The border matters in the global pass.
                np.where(steps == 1, 0.5 * scene.gate, np.inf),
                np.full(len(targets), 0.5 * scene.gate),
            )
        if len(linked_rows):
            link_sources.append(row_node[linked_rows])
            link_targets.append(targets[linked_cols])
        # Carry the rows forward: linked rows move to their detection, the others wait (gap) or end.
        new_yx = target_yx[linked_cols]
        new_velocity = alpha * (new_yx - row_yx[linked_rows]) + (1 - alpha) * row_velocity[linked_rows]
        velocity[targets[linked_cols]] = new_velocity
        unlinked = np.ones(len(row_node), bool)
        unlinked[linked_rows] = False
        kept_rows = np.flatnonzero(unlinked & (t + 1 - row_frame <= max_steps))
        born = np.ones(len(targets), bool)
        born[linked_cols] = False
        born_nodes = targets[born]
        if appearance is not None:
            appearance.advance(windows, linked_rows, linked_cols, kept_rows, np.flatnonzero(born))
        row_node = np.concatenate([targets[linked_cols], row_node[kept_rows], born_nodes])
        row_frame = np.concatenate(
            [np.full(len(linked_rows), t), row_frame[kept_rows], np.full(len(born_nodes), t)]
        )
        row_yx = np.concatenate([new_yx, row_yx[kept_rows], scene.yx[born_nodes]])
        row_velocity = np.concatenate([new_velocity, row_velocity[kept_rows], np.zeros((len(born_nodes), 2))])

    def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return ForwardResult(
        sources=_cat(link_sources, np.int64),
        targets=_cat(link_targets, np.int64),
        velocity=velocity,
        pair_source=_cat(pair_source, np.int64),
        pair_target=_cat(pair_target, np.int64),
        pair_response=_cat(pair_response, np.float64),
    )
