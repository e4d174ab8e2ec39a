"""Noise blobs that do not stand out from their background are dropped; faint true nuclei are kept."""

from __future__ import annotations

import numpy as np
import pytest

from celltrack.pipeline.segment import SegmentationConfig, build_segmenter
from celltrack.segment import drop_insignificant_objects, object_significance
from celltrack.synthetic import disc_labels, generate_movie


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    return disc_labels(shape, [centre], radius) > 0


def test_faint_nucleus_is_significant_and_a_noise_patch_is_not() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 10.0, (120, 120))
    nucleus = _disc(image.shape, (40, 40), 8)
    image[nucleus] += 8.0  # below one noise std per pixel, obvious over 200 pixels
    labels = np.zeros(image.shape, np.int32)
    labels[nucleus] = 1
    labels[_disc(image.shape, (85, 85), 4)] = 2  # a patch of pure noise
    z = object_significance(labels, image, ring_width=8)
    assert np.isnan(z[0])
    assert z[1] > 8.0
    assert abs(z[2]) < 4.0
    kept = drop_insignificant_objects(labels, image, min_significance=5.0)
    assert np.array_equal(kept, np.where(labels == 1, 1, 0))
    # 0 switches the filter off
    assert np.array_equal(drop_insignificant_objects(labels, image, 0.0), labels)


def test_enclosed_and_flat_background_objects() -> None:
    labels = np.ones((20, 20), np.int32)  # no background at all: kept
    image = np.full((20, 20), 5.0)
    assert np.isinf(object_significance(labels, image)[1])
    flat = np.zeros((30, 30))
    labels = np.zeros((30, 30), np.int32)
    labels[5:10, 5:10] = 1
    labels[20:25, 20:25] = 2
    flat[5:10, 5:10] = 1.0  # brighter than a perfectly flat background
    z = object_significance(labels, flat)
    assert np.isinf(z[1]) and z[2] == 0.0
    assert np.array_equal(np.unique(drop_insignificant_objects(labels, flat, 5.0)), [0, 1])


def test_bad_inputs_are_rejected() -> None:
    labels = np.zeros((10, 10), np.int32)
    labels[2:5, 2:5] = 1
    with pytest.raises(ValueError, match="same 2-D shape"):
        object_significance(labels, np.zeros((10, 11)))
    image = np.zeros((10, 10))
    image[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        object_significance(labels, image)
    with pytest.raises(ValueError, match="ring_width"):
        object_significance(labels, np.zeros((10, 10)), ring_width=0)
    with pytest.raises(ValueError, match="min_significance"):
        drop_insignificant_objects(labels, np.zeros((10, 10)), -1.0)


def test_dim_movie_segments_without_noise_blobs() -> None:
    # 40 photons above a background of 100: the shipped SegNet alone returns several objects per nucleus.
    movie = generate_movie(
        frames=1, height=192, width=192, nuclei=20, seed=4, brightness_mean=40.0, brightness_std=10.0
    )
    frame, truth = movie.images[0], movie.labels[0]
    counts = {}
    for min_significance in (0.0, 5.0):
        config = SegmentationConfig(method="segnet", min_significance=min_significance)
        _, segment = build_segmenter(config, sample=frame)
        counts[min_significance] = int(segment(frame).max())
    n_true = len(np.unique(truth)) - 1
    assert counts[0.0] > 1.5 * n_true
    assert abs(counts[5.0] - n_true) <= 0.15 * n_true
