"""The per-cell correlation-filter tracker on synthetic movies with exact ground truth."""

import numpy as np
import pandas as pd
import pytest

from celltrack.cftrack import CFTracker, CFTrackerConfig
from celltrack.features import RawExtractor
from celltrack.graph import measure_detections
from celltrack.synthetic import drifting_nuclei, generate_movie, static_nuclei


def true_positions(movie, labels):
    table = pd.DataFrame(movie.centroids, columns=["frame", "label", "y", "x"])
    table = table[table["label"].isin(labels)]
    return table.pivot(index="frame", columns="label", values=["y", "x"])


def tracking_error(movie, result):
    truth = true_positions(movie, result.labels)
    ys = truth["y"][list(result.labels)].to_numpy()
    xs = truth["x"][list(result.labels)].to_numpy()
    return result.positions - np.stack([ys, xs], axis=-1)


def test_static_cells_do_not_drift():
    movie = static_nuclei(n=4, frames=12, seed=1)
    initial = measure_detections(movie.labels[0], 0)
    result = CFTracker(RawExtractor()).track(movie.images, initial)
    error = tracking_error(movie, result)
    assert np.all(result.lost_at == -1)
    # the segmentation centroid is the reference: no systematic motion away from it
    drift = error[-1] - error[0]
    assert np.abs(drift).max() < 0.5


@pytest.mark.parametrize("velocity", [(1.5, -2.0), (-3.0, 0.5)])
def test_drifting_cells_are_followed_without_bias(velocity):
    movie = drifting_nuclei(velocity=velocity, n=4, frames=10, seed=2)
    initial = measure_detections(movie.labels[0], 0)
    result = CFTracker(RawExtractor()).track(movie.images, initial)
    assert np.all(result.lost_at == -1)
    error = tracking_error(movie, result)
    relative = error - error[0]
    assert np.abs(relative).max() < 1.0
    # no lag: the mean error over the last frames is not biased against the motion
    bias = relative[-4:].mean(axis=(0, 1))
    assert np.all(np.abs(bias) < 0.5)


def test_batched_tracking_equals_tracking_cells_one_by_one():
    movie = generate_movie(frames=6, height=96, width=96, nuclei=5, seed=4, division_probability=0.0,
                           entry_rate=0.0, death_probability=0.0)
    initial = measure_detections(movie.labels[0], 0)
    # a fixed window: by default its size follows the median nucleus of the targets given
    tracker = CFTracker(RawExtractor(), CFTrackerConfig(window=40, merge_distance=0.0, lost_psr=0.0))
    together = tracker.track(movie.images, initial)
    for i in range(len(initial)):
        alone = tracker.track(movie.images, initial.iloc[[i]])
        np.testing.assert_allclose(alone.positions[:, 0], together.positions[:, i], atol=1e-3, equal_nan=True)


def test_cell_at_the_border_is_tracked_not_dropped():
    movie = drifting_nuclei(velocity=(0.0, 1.0), n=3, frames=6, seed=5)
    initial = measure_detections(movie.labels[0], 0)
    initial.loc[0, ["y", "x"]] = [2.0, 2.0]  # a target in the corner: its window is mostly padding
    result = CFTracker(RawExtractor()).track(movie.images, initial)
    assert np.isfinite(result.positions[1, 0]).all()


def test_cell_that_vanishes_is_reported_lost():
    movie = static_nuclei(n=3, frames=8, seed=3)
    images = movie.images.copy()
    initial = measure_detections(movie.labels[0], 0)
    gone = movie.labels[0] == initial.loc[0, "label"]
    background = np.median(images[0])
    for t in range(3, 8):
        images[t][np.roll(gone, 0)] = background  # the first nucleus disappears at frame 3
    result = CFTracker(RawExtractor()).track(images, initial)
    assert 3 <= result.lost_at[0] <= 5
    assert np.all(result.lost_at[1:] == -1)
    assert np.isnan(result.positions[-1, 0]).all()


def test_trajectories_and_graph():
    movie = static_nuclei(n=2, frames=4, seed=0)
    initial = measure_detections(movie.labels[0], 0)
    result = CFTracker(RawExtractor()).track(movie.images, initial)
    table = result.trajectories()
    assert len(table) == 8 and set(table.columns) >= {"cell", "label", "frame", "y", "x", "peak", "psr"}
    graph = result.graph(movie.labels)
    tracks = graph.tracks().tracks
    assert len(tracks) == 2 and (tracks["end"] == 3).all()
    assert (graph.nodes["label"] > 0).all()  # every position sits on its own detection


def test_bad_initial_targets():
    movie = static_nuclei(n=1, frames=2)
    with pytest.raises(ValueError, match="columns"):
        CFTracker(RawExtractor()).track(movie.images, pd.DataFrame({"y": [1.0]}))
    with pytest.raises(ValueError, match="start frame"):
        CFTracker(RawExtractor()).track(movie.images, measure_detections(movie.labels[0], 0), start=5)
