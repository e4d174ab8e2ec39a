"""Labelled division hypotheses for training the division classifier, from movies with a ground truth.

The hypotheses are exactly those the global pass weighs (:func:`~celltrack.link.global_pass.
ended_mother_hypotheses` and :func:`~celltrack.link.global_pass.split_hypotheses` after the frame-to-frame
pass), so the classifier learns on the population it will judge: a hypothesis is a division when both
daughters' ground-truth tracks name the mother's track as their parent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrack.link.config import LinkerConfig
from celltrack.link.costs import Scene
from celltrack.link.divisions import DIVISION_FEATURES, division_features
from celltrack.link.forward import forward_pass
from celltrack.link.global_pass import ended_mother_hypotheses, split_hypotheses
from celltrack.link.linker import Linker
from celltrack.link.state import LinkState

__all__ = ["DivisionExamples", "division_examples"]


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
    linker = Linker(config)
    table = linker._prepare(detections.drop(columns=["mean_intensity"], errors="ignore"), frames)
    resolved = linker.config.resolve(table)
    if frames is not None:
        frame_shape = tuple(np.asarray(frames[int(table["frame"].min())]).shape)
    scene = Scene.build(table, resolved, frame_shape)
    forward = forward_pass(scene, None, None)
    state = LinkState(len(table), forward.sources, forward.targets)
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
