"""Noise blobs that do not stand out from their background are dropped; faint true nuclei are kept."""

from __future__ import annotations

import numpy as np
import pytest

from celltrack.metrics.segmentation import segmentation_counts
from celltrack.pipeline.segment import SegmentationConfig, build_segmenter
from celltrack.segment import drop_insignificant_objects, object_significance
from celltrack.segment.contrast import _label_medians
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
    # 40 photons above a background of 100: the shipped SegNet alone adds a few objects in the noise.
    movie = generate_movie(
        frames=1, height=192, width=192, nuclei=20, seed=5, brightness_mean=40.0, brightness_std=10.0
    )
    frame, truth = movie.images[0], movie.labels[0]
    scores = {}
    for min_significance in (0.0, 5.0):
        config = SegmentationConfig(method="segnet", min_significance=min_significance)
        _, segment = build_segmenter(config, sample=frame)
        labels = segment(frame)
        scores[min_significance] = (int(labels.max()), segmentation_counts(labels, truth))
    n_true = len(np.unique(truth)) - 1
    (n_all, all_counts), (n_kept, kept_counts) = scores[0.0], scores[5.0]
    assert n_all > n_true  # noise blobs without the filter
    assert n_kept <= n_true  # gone with it
    assert kept_counts.det >= all_counts.det  # and no true nucleus was dropped for them
    assert kept_counts.f1 > all_counts.f1


def test_label_medians_match_numpy() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=(30, 40)).astype(np.float32)
    labels = rng.integers(0, 5, (30, 40))
    labels[labels == 3] = 0  # label 3 is empty
    medians = _label_medians(values, labels, 5)
    for k in (1, 2, 4):
        assert medians[k] == pytest.approx(float(np.median(values[labels == k])), rel=1e-6)
    assert np.isnan(medians[3]) and np.isnan(medians[5])
