"""Probabilities → instances (seeded watershed) and the SegNet segmenter stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.segmentation import find_boundaries

from celltrack.models import SegNet, SegNetConfig
from celltrack.segment import (
    InstancesConfig,
    SegNetSegmenter,
    SegNetSegmenterConfig,
    probabilities_to_instances,
    segment_segnet,
)
from celltrack.segment.instances import split_at_necks, split_seeds_at_levels

torch.set_num_threads(1)


def _disc_masks(shape: tuple[int, int], centres: list[tuple[float, float]], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, start=1):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        labels[disc & (labels == 0)] = i
    return labels


def _probabilities(labels: np.ndarray, with_boundaries: bool, noise: float = 0.05) -> np.ndarray:
    """Confident maps that mimic a trained SegNet: interior, a band at edges, background."""
    rng = np.random.default_rng(0)
    probs = np.zeros((3, *labels.shape), np.float32)
    boundary = find_boundaries(labels, mode="inner") & (labels > 0)
    if not with_boundaries:
        boundary[:] = False
    interior = (labels > 0) & ~boundary
    probs[0][interior], probs[1][interior], probs[2][interior] = 0.9, 0.08, 0.02
    probs[0][boundary], probs[1][boundary], probs[2][boundary] = 0.1, 0.8, 0.1
    background = labels == 0
    probs[0][background], probs[1][background], probs[2][background] = 0.02, 0.03, 0.95
    probs += rng.uniform(0, noise, probs.shape).astype(np.float32)
    return probs / probs.sum(axis=0, keepdims=True)


def _best_iou(pred: np.ndarray, truth: np.ndarray, label: int) -> float:
    target = truth == label
    candidates = np.unique(pred[target])
    candidates = candidates[candidates > 0]
    if candidates.size == 0:
        return 0.0
    return max(float((target & (pred == c)).sum() / (target | (pred == c)).sum()) for c in candidates)


def test_touching_discs_split_along_boundary() -> None:
    truth = _disc_masks((60, 80), [(30, 28), (30, 50)], 12)
    assert len(np.unique(truth)) == 3  # the discs touch (centres 22 px apart, radius 12)
    labels = probabilities_to_instances(_probabilities(truth, with_boundaries=True))
    assert labels.dtype == np.int32
    assert set(np.unique(labels)) == {0, 1, 2}
    for label in (1, 2):
        assert _best_iou(labels, truth, label) > 0.85


def test_merged_interiors_split_by_distance_maxima() -> None:
    truth = _disc_masks((60, 80), [(30, 28), (30, 50)], 12)
    probs = _probabilities(truth, with_boundaries=False)  # no boundary between the discs at all
    labels = probabilities_to_instances(probs, InstancesConfig(split_h=2.0, neck_ratio=0))
    assert labels.max() == 2
    for label in (1, 2):
        assert _best_iou(labels, truth, label) > 0.8
    merged = probabilities_to_instances(probs, InstancesConfig(split_h=0, neck_ratio=0))
    assert merged.max() == 1


def _joined_pair(dip: float) -> tuple[np.ndarray, np.ndarray]:
    """Two touching discs whose P(interior) only dips to ``dip`` where they meet, and their truth."""
    truth = _disc_masks((60, 80), [(30, 28), (30, 50)], 12)
    probs = _probabilities(truth, with_boundaries=False, noise=0.0)
    xx = np.arange(80)[None, :]
    seam = np.exp(-0.5 * ((xx - 39.5) / 1.5) ** 2) * (truth > 0)
    interior = probs[0] * (1 - (0.9 - dip) / 0.9 * seam)
    probs[2] = 1 - interior - probs[1]
    probs[0] = interior
    return probs, truth


def test_seeds_split_at_a_higher_level_of_a_shallow_dip() -> None:
    probs, truth = _joined_pair(dip=0.7)  # one seed at P > 0.6, two at P > 0.8
    no_necks = InstancesConfig(neck_ratio=0)
    assert probabilities_to_instances(probs, no_necks).max() == 1
    labels = probabilities_to_instances(probs, no_necks.model_copy(update={"split_levels": (0.8,)}))
    assert labels.max() == 2
    for label in (1, 2):
        assert _best_iou(labels, truth, label) > 0.85


def test_split_seeds_at_levels_keeps_seeds_with_one_large_part() -> None:
    seeds = _disc_masks((40, 80), [(20, 20), (20, 60)], 10)
    signal = np.where(seeds > 0, 0.7, 0.0)
    signal[(seeds == 1)] = 0.9
    signal[15:18, 15:18] = 0.5  # a small dip inside seed 1 leaves one large part
    signal[(seeds == 2) & (np.arange(80)[None, :] < 60)] = 0.95
    signal[(seeds == 2) & (np.arange(80)[None, :] > 60)] = 0.95
    out = split_seeds_at_levels(seeds, signal, (0.8,), min_part_area=30)
    assert out.max() == 3  # seed 2 falls apart into two halves at 0.8, seed 1 stays whole
    assert len(np.unique(out[seeds == 1])) == 1
    np.testing.assert_array_equal(split_seeds_at_levels(seeds, signal, (0.8,), min_part_area=1000), seeds)
    with pytest.raises(ValueError, match="same shape"):
        split_seeds_at_levels(seeds, signal[:, :10], (0.8,), 30)


def test_boundary_weight_turns_a_faint_boundary_into_a_split() -> None:
    truth = _disc_masks((60, 80), [(30, 28), (30, 50)], 12)
    probs = _probabilities(truth, with_boundaries=False, noise=0.0)
    seam = (truth > 0) & (np.abs(np.arange(80) - 39.5) < 1.5)[None, :]
    probs[0][seam], probs[1][seam], probs[2][seam] = 0.62, 0.36, 0.02  # weak boundary, interior still > 0.6
    no_necks = InstancesConfig(neck_ratio=0)
    assert probabilities_to_instances(probs, no_necks).max() == 1
    labels = probabilities_to_instances(probs, no_necks.model_copy(update={"boundary_weight": 1.0}))
    assert labels.max() == 2
    for label in (1, 2):
        assert _best_iou(labels, truth, label) > 0.85


def test_faint_nucleus_found_by_weak_seed_with_its_extent() -> None:
    truth = _disc_masks((60, 100), [(30, 28), (30, 72)], 10)
    probs = _probabilities(truth, with_boundaries=True, noise=0.0)
    # The right nucleus is faint: the network gives it only P(interior) ≈ 0.45 at the centre.
    yy, xx = np.mgrid[:60, :100]
    faint = 0.45 * np.clip((10.5 - np.hypot(yy - 30, xx - 72)) / 3.0, 0, 1)
    probs[:, truth == 2] = 0
    probs[0] = np.where(truth == 2, faint, probs[0])
    probs[1] = np.where(truth == 2, 0.1 * faint, probs[1])
    probs[2] = 1 - probs[0] - probs[1]
    strong_only = probabilities_to_instances(probs)  # weak seeds are off by default
    assert strong_only.max() == 1 and _best_iou(strong_only, truth, 2) == 0
    labels = probabilities_to_instances(probs, InstancesConfig(weak_interior_threshold=0.3))
    assert labels.max() == 2
    assert _best_iou(labels, truth, 1) > 0.85
    # A fraction of the faint peak sets its extent, not the bright nuclei's absolute threshold.
    assert _best_iou(labels, truth, 2) > 0.6


def test_weak_seeds_ignore_small_speckles() -> None:
    probs = np.zeros((3, 40, 40), np.float32)
    probs[2] = 1
    probs[:, 10:13, 10:13] = np.array([0.5, 0.1, 0.4], np.float32)[:, None, None]  # 9 px blob
    weak = InstancesConfig(smoothing_sigma=0, weak_interior_threshold=0.3)
    assert probabilities_to_instances(probs, weak).max() == 0
    config = weak.model_copy(update={"min_weak_seed_area": 4, "min_area": 4})
    kept = probabilities_to_instances(probs, config)
    assert kept.max() == 1


def test_neck_split_cuts_overlapping_discs_but_not_ellipses() -> None:
    truth = _disc_masks((60, 90), [(30, 30), (30, 52)], 12)
    merged = (truth > 0).astype(np.int32)
    split = split_at_necks(merged, neck_ratio=0.75, min_radius=4)
    assert split.max() == 2
    for label in (1, 2):
        assert _best_iou(split, truth, label) > 0.85
    yy, xx = np.mgrid[:60, :90]
    ellipse = (((yy - 30) / 12.0) ** 2 + ((xx - 45) / 30.0) ** 2 <= 1).astype(np.int32)
    np.testing.assert_array_equal(split_at_necks(ellipse, neck_ratio=0.75, min_radius=4), ellipse)
    # The option in the instance step: no boundary signal between the discs, the neck still splits them.
    probs = _probabilities(truth, with_boundaries=False, noise=0.0)
    assert probabilities_to_instances(probs, InstancesConfig(neck_ratio=0.0)).max() == 1
    assert probabilities_to_instances(probs).max() == 2


def test_pixel_scale_makes_lengths_follow_the_frame_scale() -> None:
    truth = _disc_masks((40, 40), [(20, 20)], 3)  # 29 px object: kept at scale 1 (min_area 20)
    probs = _probabilities(truth, with_boundaries=False, noise=0.0)
    config = InstancesConfig(smoothing_sigma=0, min_seed_area=1, min_weak_seed_area=1)
    assert probabilities_to_instances(probs, config).max() == 1
    # The same object in a frame whose nuclei are 2× larger than the model's is a speck: removed.
    assert probabilities_to_instances(probs, config, pixel_scale=2.0).max() == 0
    upsampled = probs.repeat(2, axis=1).repeat(2, axis=2)
    assert probabilities_to_instances(upsampled, config, pixel_scale=2.0).max() == 1
    with pytest.raises(ValueError, match="pixel_scale"):
        probabilities_to_instances(probs, config, pixel_scale=0.0)


def test_tiny_fragments_removed_and_labels_consecutive() -> None:
    truth = _disc_masks((70, 70), [(20, 20), (50, 50), (55, 12)], 10)
    truth[truth == 3] = 0
    truth[55:58, 10:13] = 3  # a 9 px fragment
    probs = _probabilities(truth, with_boundaries=True, noise=0.0)
    probs[:, 55:58, 10:13] = np.array([0.9, 0.05, 0.05], np.float32)[:, None, None]
    config = InstancesConfig(min_area=20, min_seed_area=1, smoothing_sigma=0)
    labels = probabilities_to_instances(probs, config)
    np.testing.assert_array_equal(np.unique(labels), [0, 1, 2])
    assert (labels[55:58, 10:13] == 0).all()
    kept = probabilities_to_instances(probs, InstancesConfig(min_area=5, min_seed_area=1, smoothing_sigma=0))
    np.testing.assert_array_equal(np.unique(kept), [0, 1, 2, 3])


def test_hole_inside_one_object_is_filled() -> None:
    truth = _disc_masks((50, 50), [(25, 25)], 15)
    probs = _probabilities(truth, with_boundaries=True, noise=0.0)
    probs[:, 24:27, 24:27] = np.array([0.0, 0.0, 1.0], np.float32)[:, None, None]
    labels = probabilities_to_instances(probs, InstancesConfig(smoothing_sigma=0))
    assert labels.max() == 1 and (labels[24:27, 24:27] == 1).all()
    unfilled = probabilities_to_instances(probs, InstancesConfig(smoothing_sigma=0, fill_holes=False))
    assert (unfilled[24:27, 24:27] == 0).all()


def test_empty_and_invalid_probabilities() -> None:
    empty = np.zeros((3, 20, 30), np.float32)
    empty[2] = 1
    labels = probabilities_to_instances(empty)
    assert labels.shape == (20, 30) and labels.max() == 0
    with pytest.raises(ValueError, match=r"\(3, Y, X\)"):
        probabilities_to_instances(np.zeros((20, 30), np.float32))
    bad = empty.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        probabilities_to_instances(bad)


def test_segnet_segmenter_stage_runs_end_to_end() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SegNet(SegNetConfig(n_members=1)).eval()
    frame = np.random.default_rng(1).integers(33000, 34000, (45, 57)).astype(np.uint16)
    segmenter = SegNetSegmenter(SegNetSegmenterConfig(tile_size=32), model=model)
    probs = segmenter.probabilities(frame)
    assert probs.shape == (3, 45, 57)
    labels = segmenter.segment(frame)
    assert labels.shape == (45, 57) and labels.dtype == np.int32
    np.testing.assert_array_equal(segment_segnet(frame, model=model, tile_size=32), labels)
    assert len(list(segmenter.segment_sequence(np.stack([frame, frame])))) == 2
    assert segmenter.pixel_scale == 1.0
    large = SegNetSegmenter(SegNetSegmenterConfig(nucleus_diameter=48.0), model=model)
    assert large.pixel_scale == pytest.approx(48.0 / model.config.nucleus_diameter)
    with pytest.raises(ValueError, match="2-D"):
        segmenter.segment(frame[None])
    with pytest.raises(ValueError, match="model folder does not exist"):
        SegNetSegmenter(SegNetSegmenterConfig(model_path="/nonexistent/model")).segment(frame)
