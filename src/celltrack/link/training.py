"""Labelled examples for the global pass's classifiers, from movies with a ground truth.

The candidates are exactly those the global pass weighs after the frame-to-frame pass, so each classifier
learns on the population it will judge:

- divisions (:func:`division_examples`): :func:`~celltrack.link.global_pass.ended_mother_hypotheses` and
  :func:`~celltrack.link.global_pass.split_hypotheses`; a hypothesis is a division when both daughters'
  ground-truth tracks name the mother's track as their parent;
- joins (:func:`join_examples`): :func:`~celltrack.link.global_pass.gap_pairs` after a fraction of the
  detections was dropped at random (a detector's misses); a candidate is a join when end and start carry
  the same ground-truth label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrack.link.config import LinkerConfig
from celltrack.link.costs import Scene
from celltrack.link.divisions import DIVISION_FEATURES, division_features
from celltrack.link.forward import ForwardResult, forward_pass
from celltrack.link.global_pass import ended_mother_hypotheses, gap_pairs, split_hypotheses
from celltrack.link.joins import JOIN_FEATURES, join_features
from celltrack.link.linker import Linker
from celltrack.link.state import LinkState

__all__ = ["DivisionExamples", "JoinExamples", "division_examples", "join_examples"]


@dataclass(frozen=True)
class DivisionExamples:
    """Division hypotheses of one movie with their features and ground-truth answers.

    Attributes
    ----------
    features : numpy.ndarray, shape (H, F)
        :data:`~celltrack.link.divisions.DIVISION_FEATURES` of every hypothesis.
    label : numpy.ndarray of int, shape (H,)
        1 for a true division, 0 otherwise.
    nodes : numpy.ndarray of int, shape (H, 3)
        Mother and daughters (row positions of the detections).
    true_divisions : int
        Divisions in the ground truth among the detections (the most hypotheses that can be right).
    """

    features: np.ndarray
    label: np.ndarray
    nodes: np.ndarray
    true_divisions: int

    @property
    def feature_names(self) -> tuple[str, ...]:
        return DIVISION_FEATURES


def division_examples(
    detections: pd.DataFrame,
    parent_of: Mapping[int, int],
    frames: Sequence[np.ndarray] | None = None,
    frame_shape: tuple[int, int] | None = None,
    config: LinkerConfig | None = None,
) -> DivisionExamples:
    """Every division hypothesis of a movie, labelled by its ground truth.

    Parameters
    ----------
    detections : pandas.DataFrame
        Columns ``frame, label, y, x, area``; ``label`` is the ground-truth track label (e.g. the GT TRA
        markers as detections).
    parent_of : mapping of int to int
        Parent track label of every ground-truth track label (0 or absent: none).
    frames : sequence of numpy.ndarray, optional
        Raw frames: intensities are measured as the linker measures them.
    frame_shape : tuple of int, optional
        ``(Y, X)`` when no frames are given.
    config : LinkerConfig, optional
        Linker parameters (``"auto"`` fields measured as in linking).

    Returns
    -------
    DivisionExamples
    """
    table, scene, _, state = _frame_to_frame(detections, frames, frame_shape, config)
    mothers, firsts, seconds = ended_mother_hypotheses(scene, state)
    starts = np.flatnonzero((state.predecessor < 0) & (scene.frame > scene.frame.min()))
    nodes, successors, start_index = split_hypotheses(scene, state, starts)
    features = np.concatenate(
        [
            division_features(scene, state, mothers, firsts, seconds, False),
            division_features(scene, state, nodes, successors, starts[start_index], True),
        ]
    )
    triples = np.column_stack(
        [np.r_[mothers, nodes], np.r_[firsts, successors], np.r_[seconds, starts[start_index]]]
    ).astype(np.int64)
    track = table["label"].to_numpy(np.int64)
    parent = np.array([int(parent_of.get(int(label), 0)) for label in track], np.int64)
    mother_label, first, second = track[triples[:, 0]], triples[:, 1], triples[:, 2]
    label = (
        (parent[first] == mother_label) & (parent[second] == mother_label) & (track[first] != track[second])
    ).astype(np.int64)
    present = set(track.tolist())
    parents = pd.Series(
        {label: p for label, p in parent_of.items() if p and label in present and p in present}
    )
    true_divisions = int((parents.value_counts() >= 2).sum()) if len(parents) else 0
    return DivisionExamples(features, label, triples, true_divisions)


@dataclass(frozen=True)
class JoinExamples:
    """Join candidates of one movie with their features and ground-truth answers.

    Attributes
    ----------
    features : numpy.ndarray, shape (P, F)
        :data:`~celltrack.link.joins.JOIN_FEATURES` of every candidate.
    label : numpy.ndarray of int, shape (P,)
        1 when end and start are one nucleus.
    nodes : numpy.ndarray of int, shape (P, 2)
        End and start (row positions of the kept detections).
    dropped : int
        Detections dropped.
    """

    features: np.ndarray
    label: np.ndarray
    nodes: np.ndarray
    dropped: int

    @property
    def feature_names(self) -> tuple[str, ...]:
        return JOIN_FEATURES


def join_examples(
    detections: pd.DataFrame,
    frames: Sequence[np.ndarray] | None = None,
    frame_shape: tuple[int, int] | None = None,
    drop: float = 0.02,
    seed: int = 0,
    config: LinkerConfig | None = None,
) -> JoinExamples:
    """Every join candidate of a movie whose detections lost a random fraction, labelled by the ground truth.

    Parameters
    ----------
    detections : pandas.DataFrame
        Columns ``frame, label, y, x, area``; ``label`` is the ground-truth track label.
    frames : sequence of numpy.ndarray, optional
        Raw frames (intensities measured as the linker does).
    frame_shape : tuple of int, optional
        ``(Y, X)`` when no frames are given.
    drop : float
        Fraction of detections where a miss begins, in [0, 1); a miss lasts one frame, or two (with
        probability :data:`SECOND_FRAME_MISSED`: a detector misses a dim nucleus on consecutive frames).
    seed : int
        Seed of the removal.
    config : LinkerConfig, optional

    Returns
    -------
    JoinExamples
    """
    if not 0 <= drop < 1:
        raise ValueError(f"drop must be a fraction in [0, 1), got {drop}")
    keep = _missed(detections, drop, np.random.default_rng(seed))
    kept = detections[keep].reset_index(drop=True)
    table, scene, forward, state = _frame_to_frame(kept, frames, frame_shape, config)
    first_frame, last_frame = int(scene.frame.min()), int(scene.frame.max())
    starts = np.flatnonzero((state.predecessor < 0) & (scene.frame > first_frame))
    ends = np.flatnonzero((state.out_degree() == 0) & (scene.frame < last_frame))
    rows, cols, steps, squared = gap_pairs(scene, forward, ends, starts)
    features = join_features(scene, state, ends[rows], starts[cols], steps, squared)
    track = table["label"].to_numpy(np.int64)
    label = (track[ends[rows]] == track[starts[cols]]).astype(np.int64)
    return JoinExamples(features, label, np.column_stack([ends[rows], starts[cols]]), int((~keep).sum()))


#: Probability that a missed nucleus is missed on the next frame too.
SECOND_FRAME_MISSED = 0.3


def _missed(detections: pd.DataFrame, drop: float, rng: np.random.Generator) -> np.ndarray:
    """Which detections a detector keeps: misses begin at random, some last two frames of one track."""
    keep = rng.random(len(detections)) >= drop
    longer = ~keep & (rng.random(len(detections)) < SECOND_FRAME_MISSED)
    if longer.any():
        frame = detections["frame"].to_numpy(np.int64)
        label = detections["label"].to_numpy(np.int64)
        following = pd.MultiIndex.from_arrays([frame[longer] + 1, label[longer]])
        keep &= ~pd.MultiIndex.from_arrays([frame, label]).isin(following)
    return keep


def _frame_to_frame(
    detections: pd.DataFrame,
    frames: Sequence[np.ndarray] | None,
    frame_shape: tuple[int, int] | None,
    config: LinkerConfig | None,
) -> tuple[pd.DataFrame, Scene, ForwardResult, LinkState]:
    """The linker's preparation and frame-to-frame pass (motion, size, intensity; no filters)."""
    linker = Linker(config)
    table = linker._prepare(detections.drop(columns=["mean_intensity"], errors="ignore"), frames)
    resolved = linker.config.resolve(table)
    if frames is not None:
        frame_shape = tuple(np.asarray(frames[int(table["frame"].min())]).shape)
    scene = Scene.build(table, resolved, frame_shape)
    forward = forward_pass(scene, None, None)
    return table, scene, forward, LinkState(len(table), forward.sources, forward.targets)
