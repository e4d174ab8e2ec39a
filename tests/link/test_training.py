"""Labelled examples for the global pass's classifiers come from the same candidates the linker weighs."""

from __future__ import annotations

import numpy as np
import pytest

from celltrack.link.divisions import DIVISION_FEATURES
from celltrack.link.joins import JOIN_FEATURES
from celltrack.link.training import division_examples, join_examples
from celltrack.synthetic import dividing_nucleus, generate_movie


def test_the_one_division_is_the_one_positive_hypothesis(detections_of) -> None:
    movie = dividing_nucleus(frames=10, division_frame=5, seed=0)
    detections = detections_of(movie.labels)
    parent_of = {int(label): int(parent) for label, _, _, parent in movie.tracks}
    examples = division_examples(detections, parent_of, list(movie.images))
    assert examples.features.shape == (len(examples.label), len(DIVISION_FEATURES))
    assert examples.label.sum() == 1 and examples.true_divisions == 1
    mother, first, second = examples.nodes[np.argmax(examples.label)]
    labels = detections["label"].to_numpy()
    assert labels[mother] == 1 and sorted([labels[first], labels[second]]) == [2, 3]
    assert examples.features[:, DIVISION_FEATURES.index("has_intensity")].min() == 1.0


def test_dropped_detections_become_the_joins_to_learn(detections_of) -> None:
    movie = generate_movie(frames=12, nuclei=20, seed=3, division_probability=0.0, entry_rate=0.0)
    detections = detections_of(movie.labels)
    none = join_examples(detections, frame_shape=movie.labels.shape[1:], drop=0.0)
    assert none.dropped == 0 and none.label.sum() == 0  # a ground truth has no gaps
    missed = join_examples(detections, frame_shape=movie.labels.shape[1:], drop=0.05, seed=1)
    assert missed.dropped > 0 and missed.label.sum() >= 0.5 * missed.dropped
    assert missed.features.shape == (len(missed.label), len(JOIN_FEATURES))
    gaps = missed.features[missed.label == 1, JOIN_FEATURES.index("missed_frames")]
    assert set(np.unique(gaps)) <= {0.0, 1.0, 2.0} and gaps.max() >= 1.0
    with pytest.raises(ValueError, match="drop must be a fraction"):
        join_examples(detections, frame_shape=movie.labels.shape[1:], drop=1.5)
