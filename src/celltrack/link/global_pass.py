"""Temporally global second pass over track segments (after Jaqaman et al. 2008).

The frame-to-frame pass leaves segments: chains of one-to-one links. This pass joins them:

1. A segment *end* with two new segment *starts* in the next frame that the division classifier finds
   likelier daughters than not (a mother whose appearance changed too much for the frame-to-frame link)
   becomes a division (:mod:`celltrack.link.divisions`).
2. One assignment problem over all segment starts (columns) against segment ends (gap closing over up to
   ``gaps.max_gap`` missing frames, judged by the join classifier: :mod:`celltrack.link.joins`) and
   mid-segment nodes (a division: the start is a second daughter of a node that already has one
   successor). Each start may instead be a birth, each end a death; the classifiers' log-odds are costs
   on the scale of births and deaths.
3. Daughter branches that live only ``global_pass.min_branch_length`` frames or fewer and then end are
   false divisions (over-segmented nuclei): they are cut off from their mother. The classifier sees how
   long daughters live, but learned from ground truths without over-segmentation; on given detections
   the rule changes nothing (docs/linking-defaults.md), on segmented ones it removes fragments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from celltrack.link.costs import Scene
from celltrack.link.divisions import division_cost, division_logit
from celltrack.link.forward import ForwardResult, _candidate_pairs
from celltrack.link.joins import join_logit
from celltrack.link.lap import solve_sparse_assignment
from celltrack.link.state import LinkState
from celltrack.models.events import EventClassifier, load_join_model

logger = logging.getLogger(__name__)

__all__ = ["EventModels", "LinkState", "global_pass"]


@dataclass(frozen=True)
class EventModels:
    """The classifiers of the global pass; None stands for the shipped one."""

    division: EventClassifier | None = None
    join: EventClassifier | None = None

def _lookup_response(forward: ForwardResult, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Recorded filter responses for (source, target) pairs; NaN where none was recorded."""
    if len(forward.pair_source) == 0 or len(sources) == 0:
        return np.full(len(sources), np.nan)
    n = int(max(forward.pair_target.max(), targets.max())) + 1
    recorded = forward.pair_source * n + forward.pair_target
    order = np.argsort(recorded, kind="stable")
    recorded = recorded[order]
    wanted = sources * n + targets
    position = np.clip(np.searchsorted(recorded, wanted), 0, len(recorded) - 1)
    found = recorded[position] == wanted
    return np.where(found, forward.pair_response[order][position], np.nan)


def _same_frame_pairs(
    points_yx: np.ndarray,
    points_frame: np.ndarray,
    query_yx: np.ndarray,
    query_frame: np.ndarray,
    radius: float | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query q, point p) with p in frame ``query_frame[q]`` within ``radius`` (px) of ``query_yx[q]``.

    The frame is a third KD-tree coordinate spaced wider than any radius, so a ball query reaches only
    points of the queried frame: the work grows with the pairs found, not with all frames' points.

    Returns
    -------
    query_index, point_index : numpy.ndarray of int, shape (P,)
    """
    radius = np.broadcast_to(np.asarray(radius, np.float64), (len(query_yx),))
    if len(points_yx) == 0 or len(query_yx) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    spacing = 2.0 * float(radius.max()) + 1.0
    tree = cKDTree(np.column_stack([points_yx, spacing * points_frame.astype(np.float64)]))
    return _candidate_pairs(
        tree, np.column_stack([query_yx, spacing * query_frame.astype(np.float64)]), radius
    )


def _predicted(scene: Scene, forward: ForwardResult, nodes: np.ndarray, steps: np.ndarray) -> np.ndarray:
    beta = float(scene.config.motion.velocity_weight)
    return scene.yx[nodes] + (beta * steps)[:, None] * forward.velocity[nodes]


def gap_pairs(
    scene: Scene, forward: ForwardResult, ends: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Join candidates: end ``ends[r]`` at frame t and start ``starts[c]`` at t + g, g in 1 .. max_gap + 1.

    A start is a candidate within ``motion.reach * sqrt(g)`` of the end's predicted position.

    Returns
    -------
    rows, cols : numpy.ndarray of int, shape (P,)
        Positions in ``ends`` and ``starts``.
    steps : numpy.ndarray of int, shape (P,)
        Frames from end to start.
    squared : numpy.ndarray, shape (P,)
        Squared distance (px**2) from the end's predicted position to the start.
    """
    config = scene.config
    reach = float(config.motion.reach)
    parts: list[tuple[np.ndarray, ...]] = []
    if len(ends) and len(starts):
        start_yx, start_frame = scene.yx[starts], scene.frame[starts]
        for steps in range(1, config.gaps.max_gap + 2):
            predicted = _predicted(scene, forward, ends, np.full(len(ends), float(steps)))
            r, c = _same_frame_pairs(
                start_yx, start_frame, predicted, scene.frame[ends] + steps, reach * np.sqrt(steps)
            )
            squared = np.sum((scene.yx[starts[c]] - predicted[r]) ** 2, axis=1)
            parts.append((r, c, np.full(len(r), steps, np.int64), squared))
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), empty.copy(), np.zeros(0)
    rows, cols, steps_all, squared_all = (np.concatenate(column) for column in zip(*parts, strict=True))
    return rows, cols, steps_all, squared_all


def _gap_candidates(
    scene: Scene,
    state: LinkState,
    forward: ForwardResult,
    ends: np.ndarray,
    starts: np.ndarray,
    use_appearance: bool,
    model: EventClassifier | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Join candidates (:func:`gap_pairs`), their log-odds and their cost before the log-odds.

    A join costs ending a segment plus starting one in the interior (plus the appearance term where a filter
    response was recorded) minus ``gaps.weight`` times its log-odds (:mod:`celltrack.link.joins`).

    Returns
    -------
    rows, cols : numpy.ndarray of int, shape (P,)
        Positions in ``ends`` and ``starts``.
    apart : numpy.ndarray, shape (P,)
        Interior end plus start cost (plus the appearance term).
    logit : numpy.ndarray, shape (P,)
        Join log-odds under the classifier's training rate of joins.
    """
    rows, cols, steps, squared = gap_pairs(scene, forward, ends, starts)
    if len(rows) == 0:
        return rows, cols, np.zeros(0), np.zeros(0)
    end, start = ends[rows], starts[cols]
    logit = join_logit(scene, state, end, start, steps, squared, model)
    # Ending a segment and starting one in the interior cost one gate. Near the border, where tracks end and
    # start cheaply (cells leave and enter there), a join therefore needs that much more evidence.
    apart = np.full(len(rows), scene.gate)
    if use_appearance:
        apart = apart + scene.appearance_cost(_lookup_response(forward, end, start))
    return rows, cols, apart, logit


@dataclass(frozen=True)
class _Reroutes:
    """Re-routings: ``node`` trades its successor ``old`` for start ``new``; end ``end_rows`` takes ``old``.

    ``end_rows`` index the ends and ``start_cols`` (where ``new`` sits) the starts of the assignment.
    """

    end_rows: np.ndarray
    start_cols: np.ndarray
    cost: np.ndarray
    node: np.ndarray
    old: np.ndarray
    new: np.ndarray

    @classmethod
    def none(cls) -> _Reroutes:
        empty = np.zeros(0, np.int64)
        return cls(empty, empty, np.zeros(0), empty, empty, empty)


def _reroute_candidates(
    scene: Scene,
    state: LinkState,
    forward: ForwardResult,
    models: EventModels,
    ends: np.ndarray,
    starts: np.ndarray,
    nodes: np.ndarray,
    successors: np.ndarray,
    start_cols: np.ndarray,
    use_appearance: bool,
    join_shift: float,
) -> _Reroutes:
    """The alternative to each division hypothesis (node -> successor, + start) that an ended track offers.

    Two nuclei that segmentation merged into one object and that come apart again read as a division of the
    object: the forward pass linked the object to one of them, and the other's track ended at the merge.
    The re-routing links the object to the start instead and closes the ended track's gap to the successor.
    Its cost, ``gap(end -> successor) + link(node -> start) - link(node -> successor)``, enters the same
    assignment as the division (which also takes the start) and the end's death.

    Parameters
    ----------
    nodes, successors : numpy.ndarray of int, shape (H,)
        Each hypothesis' node and its one successor (next frame).
    start_cols : numpy.ndarray of int, shape (H,)
        Its candidate start, as a position in ``starts``.
    join_shift : float
        Log-odds added to every join (the movie's rate of joins against the training rate).

    Returns
    -------
    _Reroutes
    """
    targets, target_of = np.unique(successors, return_inverse=True)
    end_rows, target_cols, apart, logit = _gap_candidates(
        scene, state, forward, ends, targets, use_appearance, models.join
    )
    gap_cost = apart - scene.config.gaps.weight * (logit + join_shift)
    if len(end_rows) == 0:
        return _Reroutes.none()
    order = np.argsort(target_cols, kind="stable")
    end_rows, target_cols, gap_cost = end_rows[order], target_cols[order], gap_cost[order]
    low = np.searchsorted(target_cols, target_of, "left")
    count = np.searchsorted(target_cols, target_of, "right") - low
    hypothesis = np.repeat(np.arange(len(nodes)), count)
    gap = _concatenated_ranges(low, count)
    node, old, new = nodes[hypothesis], successors[hypothesis], starts[start_cols[hypothesis]]
    predicted = _predicted(scene, forward, node, np.ones(len(node)))
    sources, targets_both = np.r_[node, node], np.r_[new, old]
    squared = np.sum((scene.yx[targets_both] - np.r_[predicted, predicted]) ** 2, axis=1)
    response = _lookup_response(forward, sources, targets_both) if use_appearance else None
    link = scene.link_cost(sources, targets_both, squared, 1, response)
    # Like the division it competes with, a re-routing explains the start without a birth: it gets the same
    # ``division.bias`` (which weighs daughters against births), so that between the two only the
    # classifiers' evidence decides.
    division = scene.config.division
    cost = gap_cost[gap] + link[: len(node)] - link[len(node) :] - division.weight * division.bias
    return _Reroutes(end_rows[gap], start_cols[hypothesis], cost, node, old, new)


def _pairs_within_groups(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(i, j)``, ``i < j``, of every two elements with equal ``group`` values (sorted runs).

    ``group`` is sorted (equal values adjacent); pairs come run by run, then by ``i``, then by ``j``.
    """
    group = np.asarray(group)
    if len(group) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    run_start = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    run_length = np.diff(np.r_[run_start, len(group)])
    position = np.arange(len(group)) - np.repeat(run_start, run_length)
    later = np.repeat(run_length, run_length) - 1 - position  # partners after each element
    return np.repeat(np.arange(len(group)), later), _concatenated_ranges(np.arange(len(group)) + 1, later)


def _concatenated_ranges(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + k) for s, k in zip(start, count)])`` without a loop."""
    count = np.asarray(count, np.int64)
    offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return np.repeat(np.asarray(start, np.int64), count) + offset


def ended_mother_hypotheses(scene: Scene, state: LinkState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Division hypotheses of ended tracks: an end with two new starts within reach in the next frame.

    Returns
    -------
    mother, daughter_a, daughter_b : numpy.ndarray of int, shape (H,)
        Node ids, every pair of each end's starts (ends in ascending order, then pairs in node order).
    """
    empty = np.zeros(0, np.int64)
    degree = state.out_degree()
    last_frame = int(scene.frame.max()) if len(scene.frame) else 0
    ends = np.flatnonzero((degree == 0) & (scene.frame < last_frame))
    starts = np.flatnonzero((state.predecessor < 0) & (scene.frame > scene.frame.min()))
    if len(ends) == 0 or len(starts) < 2:
        return empty, empty.copy(), empty.copy()
    max_distance = float(scene.config.division.max_distance)
    # Every end's starts in the next frame within reach (ball query widened a hair, then the exact test),
    # each end's in ascending node order, then every pair of them: hypotheses (mother, daughter, daughter).
    end_index, start_index = _same_frame_pairs(
        scene.yx[starts],
        scene.frame[starts],
        scene.yx[ends],
        scene.frame[ends] + 1,
        max_distance * (1.0 + 1e-9) + 1e-9,
    )
    near = np.linalg.norm(scene.yx[starts[start_index]] - scene.yx[ends[end_index]], axis=1) <= max_distance
    end_index, start_index = end_index[near], start_index[near]
    first, second = _pairs_within_groups(end_index)
    return ends[end_index[first]], starts[start_index[first]], starts[start_index[second]]


def split_hypotheses(
    scene: Scene, state: LinkState, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Division hypotheses of continuing tracks: a node with one successor and a start beside it.

    Parameters
    ----------
    starts : numpy.ndarray of int
        Segment starts (node ids) that may be second daughters.

    Returns
    -------
    nodes, successors : numpy.ndarray of int, shape (H,)
        The mother and the daughter that already continues her track.
    start_index : numpy.ndarray of int, shape (H,)
        Positions in ``starts`` of the second daughters.
    """
    empty = np.zeros(0, np.int64)
    single = np.flatnonzero(state.out_degree() == 1)
    successor = state.first_successor[single]
    consecutive = scene.frame[successor] == scene.frame[single] + 1
    single, successor = single[consecutive], successor[consecutive]
    if len(single) == 0 or len(starts) == 0:
        return empty, empty.copy(), empty.copy()
    r, c = _same_frame_pairs(
        scene.yx[starts],
        scene.frame[starts],
        scene.yx[single],
        scene.frame[single] + 1,
        float(scene.config.division.max_distance),
    )
    return single[r], successor[r], c


def _mother_divisions(scene: Scene, state: LinkState, model: EventClassifier | None) -> int:
    """Turn segment ends whose next frame holds two likely daughters (more likely than not) into divisions.

    Hypotheses are taken most likely first; each node joins at most one division.
    """
    mother, daughter_a, daughter_b = ended_mother_hypotheses(scene, state)
    if len(mother) == 0:
        return 0
    logit = division_logit(scene, state, mother, daughter_a, daughter_b, False, model)
    accepted = 0
    used: set[int] = set()
    for h in np.argsort(-logit, kind="stable").tolist():
        if not logit[h] > 0:
            break
        nodes = (int(mother[h]), int(daughter_a[h]), int(daughter_b[h]))
        if used.intersection(nodes):
            continue
        used.update(nodes)
        state.add(nodes[0], nodes[1])
        state.add(nodes[0], nodes[2])
        accepted += 1
    return accepted


def _join_segments(
    scene: Scene, state: LinkState, forward: ForwardResult, use_appearance: bool, models: EventModels
) -> int:
    """One assignment of segment starts to gap-closing ends and division (split) points."""
    config = scene.config
    first_frame, last_frame = int(scene.frame.min()), int(scene.frame.max())
    degree = state.out_degree()
    starts = np.flatnonzero((state.predecessor < 0) & (scene.frame > first_frame))
    ends = np.flatnonzero((degree == 0) & (scene.frame < last_frame))
    if len(starts) == 0:
        return 0

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    costs: list[np.ndarray] = []
    source_nodes: list[np.ndarray] = [ends]
    gap_rows, gap_cols, apart, logit = _gap_candidates(
        scene, state, forward, ends, starts, use_appearance, models.join
    )
    # How often segments really continue across a gap differs by orders of magnitude between movies (none
    # in a ground truth, a few percent of nuclei from a detector): the join rate is measured on this
    # movie's own candidates.
    join_shift, rate = (models.join or load_join_model()).rate_shift(logit)
    gap_costs = apart - config.gaps.weight * (logit + join_shift)
    logger.debug("join rate among %d candidates: %.4f", len(logit), rate)
    if len(gap_rows):
        rows.append(gap_rows)
        cols.append(gap_cols)
        costs.append(gap_costs)
    # divisions: a node with exactly one successor k at frame t, start s at t + 1 -> daughters (k, s)
    split_nodes = np.zeros(0, np.int64)
    reroute = _Reroutes.none()
    if config.division.enabled:
        nodes, successors, c = split_hypotheses(scene, state, starts)
        if len(nodes):
            # One assignment row per dividing node (its hypotheses share it).
            split_nodes, r = np.unique(nodes, return_inverse=True)
            logit = division_logit(scene, state, nodes, successors, starts[c], True, models.division)
            rows.append(len(ends) + r)
            cols.append(c)
            costs.append(division_cost(scene, logit, starts[c]))
            if config.global_pass.reroute:
                reroute = _reroute_candidates(
                    scene, state, forward, models, ends, starts, nodes, successors, c, use_appearance,
                    join_shift,
                )
    if not rows:
        return 0
    source_nodes.append(split_nodes)
    sources = np.concatenate(source_nodes)
    row_alternative = np.concatenate(
        [scene.end_cost(_predicted(scene, forward, ends, np.ones(len(ends)))), np.zeros(len(split_nodes))]
    )
    col_alternative = scene.end_cost(scene.yx[starts])
    all_rows, all_cols, all_costs = np.concatenate(rows), np.concatenate(cols), np.concatenate(costs)
    # Which re-routing (index into ``reroute``), if any, each candidate pair stands for (-1: none).
    via = np.full(len(all_rows), -1, np.int64)
    if len(reroute.end_rows):
        all_rows = np.concatenate([all_rows, reroute.end_rows])
        all_cols = np.concatenate([all_cols, reroute.start_cols])
        all_costs = np.concatenate([all_costs, reroute.cost])
        via = np.concatenate([via, np.arange(len(reroute.end_rows))])
        # One candidate per (row, start): the cheapest of a direct gap closing and the re-routings.
        order = np.lexsort((all_costs, all_cols, all_rows))
        keep = order[np.r_[True, (np.diff(all_rows[order]) != 0) | (np.diff(all_cols[order]) != 0)]]
        all_rows, all_cols, all_costs, via = all_rows[keep], all_cols[keep], all_costs[keep], via[keep]
    linked_rows, linked_cols = solve_sparse_assignment(
        all_rows, all_cols, all_costs, row_alternative, col_alternative
    )
    if len(reroute.end_rows) == 0:
        state.add_many(sources[linked_rows], starts[linked_cols])
        return len(linked_rows)
    # The candidates are sorted by (row, start) and distinct after the merge above.
    key = all_rows * len(starts) + all_cols
    chosen = via[np.searchsorted(key, linked_rows * len(starts) + linked_cols)]
    plain = chosen < 0
    state.add_many(sources[linked_rows[plain]], starts[linked_cols[plain]])
    dividing = set(sources[linked_rows[plain & (linked_rows >= len(ends))]].tolist())
    for index, end in zip(chosen[~plain].tolist(), sources[linked_rows[~plain]].tolist(), strict=True):
        node, old, new = (int(part[index]) for part in (reroute.node, reroute.old, reroute.new))
        # A node that divides or was re-routed already in this assignment keeps its links.
        if node in dividing or state.successors(node) != [old]:
            continue
        state.remove(node, old)
        state.add(node, new)
        state.add(end, old)
        dividing.add(node)
    return len(linked_rows)


def _branch_length(state: LinkState, start: int, limit: int) -> tuple[int, bool]:
    """Frames a branch lives from ``start`` until it ends or divides, and whether it ends (no successor).

    Counting stops after ``limit + 1`` frames (reported as not ending): only shorter branches matter.
    """
    length, node = 1, start
    while length <= limit and len(following := state.successors(node)) == 1:
        node = following[0]
        length += 1
    return length, length <= limit and bool(state.first_successor[node] < 0)


def _prune_short_branches(scene: Scene, state: LinkState, last_frame: int) -> int:
    """Cut daughter branches that end within ``min_branch_length`` frames (not at the movie's end)."""
    limit = scene.config.global_pass.min_branch_length
    if limit <= 0:
        return 0
    cut = 0
    for mother in np.flatnonzero(state.out_degree() >= 2).tolist():
        branches = []
        for daughter in state.successors(mother):
            length, ends = _branch_length(state, daughter, limit)
            branch_end = int(scene.frame[daughter]) + length - 1
            branches.append((daughter, length, ends and branch_end < last_frame))
        short = [b for b in branches if b[2] and b[1] <= limit]
        if short and len(short) < len(branches):
            for daughter, _, _ in short:
                state.remove(mother, daughter)
                cut += 1
    return cut


def global_pass(
    scene: Scene, forward: ForwardResult, use_appearance: bool, models: EventModels | None = None
) -> LinkState:
    """Join the frame-to-frame segments into lineages.

    Parameters
    ----------
    scene : Scene
    forward : ForwardResult
        Output of :func:`celltrack.link.forward.forward_pass`.
    use_appearance : bool
        Whether recorded filter responses enter the gap-closing cost.
    models : EventModels, optional
        The division and join classifiers; the shipped ones where omitted.

    Returns
    -------
    LinkState
        All links (forward ones plus gap closings and divisions, minus pruned branches).
    """
    n = len(scene.frame)
    state = LinkState(n, forward.sources, forward.targets)
    if n == 0 or not scene.config.global_pass.enabled:
        return state
    last_frame = int(scene.frame.max())
    models = models if models is not None else EventModels()
    divisions = _mother_divisions(scene, state, models.division) if scene.config.division.enabled else 0
    joined = _join_segments(scene, state, forward, use_appearance, models)
    pruned = _prune_short_branches(scene, state, last_frame)
    logger.debug("global pass: %d mother divisions, %d joins, %d pruned", divisions, joined, pruned)
    return state
