"""The frame-to-frame pass: one sparse assignment per frame between active tracks and new detections.

For every frame ``t`` the tracks seen at ``t - 1`` compete for the detections of ``t``. Candidates come from
a KD-tree around each track's predicted position; the cost combines motion, size change and (with frames)
the track's correlation-filter response at the candidate. Responses are measured only in the components
of the candidate graph whose links they can change, all of a frame's in one batched pass.
Tracks missing for up to ``gaps.max_gap`` frames stay active: they are not linked here, but their filter
responses at unclaimed detections are recorded for gap closing in the global pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from celltrack.link.appearance import FrameWindows, TrackFilters
from celltrack.link.costs import Scene
from celltrack.link.lap import solve_robust_assignment, solve_sparse_assignment

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


#: Neighbours asked of the KD-tree per query at first; a query whose neighbours all lie within the radius
#: may have more and is asked again with twice as many. Tracks have under two candidates on average.
_NEIGHBOURS = 8


def _candidate_pairs(
    tree: cKDTree, points: np.ndarray, radius: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query row, tree point) within ``radius`` of each query, as two flat int64 arrays.

    The pairs of ``tree.query_ball_point(points, radius)`` in its order (by row, then point), with the
    ball query's own test (squared distance, summed axis by axis, at most ``radius**2``), from k-nearest
    queries: no Python list per query, which cost more than the search itself (and the garbage collector
    its share) when most queries find nothing.
    """
    points = np.asarray(points, np.float64).reshape(len(points), -1)
    radius = np.broadcast_to(np.asarray(radius, np.float64), (len(points),))
    empty = np.zeros(0, np.int64)
    n = int(tree.n)
    if n == 0 or len(points) == 0:
        return empty, empty.copy()
    # The k-nearest query keeps points strictly inside its bound and prunes on rounded box distances, so
    # the bound sits a little above every radius and the exact test below decides.
    bound = float(np.max(np.abs(radius))) * (1.0 + 1e-6) + 1e-12
    pending = np.arange(len(points))
    row_parts: list[np.ndarray] = []
    col_parts: list[np.ndarray] = []
    k = _NEIGHBOURS
    while len(pending):
        k = min(k, n)
        _, index = tree.query(points[pending], k=k, distance_upper_bound=bound)
        index = index.reshape(len(pending), k)
        # Missing neighbours are reported as index n, which sorts after every real one.
        full = index[:, -1] < n if k < n else np.zeros(len(pending), bool)
        index = np.sort(index[~full], axis=1)
        found_row, slot = np.nonzero(index < n)
        row_parts.append(pending[~full][found_row])
        col_parts.append(index[found_row, slot])
        pending = pending[full]
        k *= 2
    rows = np.concatenate(row_parts).astype(np.int64, copy=False)
    cols = np.concatenate(col_parts).astype(np.int64, copy=False)
    if len(row_parts) > 1:
        order = np.argsort(rows, kind="stable")
        rows, cols = rows[order], cols[order]
    difference = tree.data[cols] - points[rows]
    squared = difference[:, 0] ** 2
    for axis in range(1, difference.shape[1]):
        squared += difference[:, axis] ** 2
    keep = squared <= radius[rows] ** 2
    return rows[keep], cols[keep]


def _assign_with_appearance(
    scene: Scene,
    appearance: TrackFilters,
    windows: FrameWindows,
    predicted: np.ndarray,
    row_node: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    squared: np.ndarray,
    alive: np.ndarray,
    row_alternative: np.ndarray,
    col_alternative: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One frame's assignment, measuring filter responses only where they can change it.

    Most components of the candidate graph are decided by motion and size alone whatever the responses
    (:func:`celltrack.link.lap.solve_robust_assignment`); the others get every candidate of their rows
    measured (the cue shift looks at all of them) and are solved with the measured costs. Pairs between a
    row left without a detection and a detection left without a track are measured too: gap closing in
    the global pass looks their responses up.

    Returns
    -------
    linked_rows, linked_cols : numpy.ndarray of int
        The links, sorted by row.
    measured : numpy.ndarray of bool, shape (P,)
        Pairs whose response was measured.
    response : numpy.ndarray, shape (P,)
        Their responses (NaN elsewhere).
    """
    measured = np.zeros(len(rows), bool)
    response = np.full(len(rows), np.nan)

    def measure(pairs: np.ndarray) -> None:
        pairs = pairs[~measured[pairs]]
        if len(pairs):
            response[pairs] = appearance.responses(windows, predicted, rows[pairs], cols[pairs])
            measured[pairs] = True

    sources, candidates = row_node[rows], targets[cols]
    live = np.flatnonzero(alive)
    lower, upper = scene.link_cost_bounds(sources[live], candidates[live], squared[live], 1)
    linked_rows, linked_cols, undecided = solve_robust_assignment(
        rows[live], cols[live], lower, upper, row_alternative, col_alternative
    )
    if undecided.any():
        contested = live[np.isin(rows[live], rows[live][undecided])]
        measure(contested)
        cost = scene.link_cost(
            sources[contested], candidates[contested], squared[contested], 1, response[contested]
        )
        pick = np.isin(contested, live[undecided])
        more_rows, more_cols = solve_sparse_assignment(
            rows[contested][pick], cols[contested][pick], cost[pick], row_alternative, col_alternative
        )
        linked_rows = np.concatenate([linked_rows, more_rows])
        linked_cols = np.concatenate([linked_cols, more_cols])
        order = np.argsort(linked_rows, kind="stable")
        linked_rows, linked_cols = linked_rows[order], linked_cols[order]
    row_free = np.ones(len(row_node), bool)
    row_free[linked_rows] = False
    col_free = np.ones(len(targets), bool)
    col_free[linked_cols] = False
    measure(np.flatnonzero(row_free[rows] & col_free[cols]))
    return linked_rows, linked_cols, measured, response


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
            alive = steps[rows] == 1
            # No border discount here: a nucleus at the border that is still there is far likelier than
            # one leaving and another entering at the same place, and a nucleus that does leave has no
            # candidate anyway. The border matters in the global pass.
            row_alternative = np.where(steps == 1, 0.5 * scene.gate, np.inf)
            col_alternative = np.full(len(targets), 0.5 * scene.gate)
            sources, candidates = row_node[rows], targets[cols]
            if appearance is not None and windows is not None and len(rows):
                linked_rows, linked_cols, measured, response = _assign_with_appearance(
                    scene,
                    appearance,
                    windows,
                    predicted,
                    row_node,
                    targets,
                    rows,
                    cols,
                    squared,
                    alive,
                    row_alternative,
                    col_alternative,
                )
                pair_source.append(sources[measured])
                pair_target.append(candidates[measured])
                pair_response.append(response[measured])
            else:
                cost = scene.link_cost(sources[alive], candidates[alive], squared[alive], 1)
                linked_rows, linked_cols = solve_sparse_assignment(
                    rows[alive], cols[alive], cost, row_alternative, col_alternative
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
