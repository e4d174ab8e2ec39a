"""Objects grown to the image's local half-maximum (celltrack.segment.extent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy import ndimage as ndi

from celltrack.models import SegNet, SegNetConfig
from celltrack.segment import ExtentConfig, SegNetSegmenter, SegNetSegmenterConfig, grow_to_half_maximum
from celltrack.segment.extent import _label_medians
from celltrack.synthetic import disc_labels

torch.set_num_threads(1)


def _render(truth: np.ndarray, blur: float, noise: float = 2.0, seed: int = 0) -> np.ndarray:
    """A fluorescence frame: nuclei at 400 over a background of 100, blurred, with camera noise."""
    rng = np.random.default_rng(seed)
    image = ndi.gaussian_filter(np.where(truth > 0, 400.0, 100.0), blur)
    return (image + rng.normal(0, noise, truth.shape)).astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("pixel_scale", [1.0, 2.0])
def test_recovers_the_true_extent_of_an_eroded_nucleus(pixel_scale: float) -> None:
    s = pixel_scale
    truth = disc_labels((round(64 * s), round(64 * s)), [(32 * s, 32 * s)], 10 * s)
    image = _render(truth, blur=1.5 * s)
    eroded = disc_labels(truth.shape, [(32 * s, 32 * s)], 8 * s)  # a network's object 2 model px too small
    assert _iou(eroded > 0, truth > 0) < 0.7
    grown = grow_to_half_maximum(eroded, image, pixel_scale=s)
    assert grown.dtype == np.int32 and set(np.unique(grown)) == {0, 1}
    assert _iou(grown > 0, truth > 0) > 0.9  # the default reach (2 px) and background ring limit it
    # With room to grow and the background measured beyond the blur, the half-maximum is the true
    # outline: the growth stops there however far it may reach.
    wide = ExtentConfig(reach=6.0, background_ring=(6.0, 9.0))
    far = grow_to_half_maximum(eroded, image, wide, pixel_scale=s)
    assert _iou(far > 0, truth > 0) > 0.96
    assert not (far > 0)[~ndi.binary_dilation(truth > 0, iterations=round(s))].any()


def test_reach_is_scaled_by_pixel_scale() -> None:
    truth = disc_labels((128, 128), [(64, 64)], 20)
    image = _render(truth, blur=3.0)
    eroded = disc_labels(truth.shape, [(64, 64)], 16)
    at_model_scale = grow_to_half_maximum(eroded, image, pixel_scale=1.0)  # grows by 2 px only
    at_frame_scale = grow_to_half_maximum(eroded, image, pixel_scale=2.0)  # by up to 4 px
    assert _iou(at_model_scale > 0, truth > 0) < _iou(at_frame_scale > 0, truth > 0) - 0.05


def test_objects_only_grow_and_never_take_a_neighbours_pixels() -> None:
    truth = disc_labels((60, 90), [(30, 28), (30, 50), (30, 76)], 11)  # 1 and 2 touch; 3 stands apart
    image = _render(truth, blur=1.5)
    labels = truth.copy()
    labels[(truth == 1) & ~ndi.binary_erosion(truth == 1, iterations=2)] = 0  # object 1 is too small
    labels[truth == 3] = 0  # a nucleus the network missed stays missed, even within reach of nothing
    grown = grow_to_half_maximum(labels, image)
    np.testing.assert_array_equal(grown[labels > 0], labels[labels > 0])  # nothing removed or relabelled
    assert not (grown == 1)[truth == 2].any()
    assert not (grown > 0)[truth == 3].any()
    assert _iou(grown == 1, truth == 1) > _iou(labels == 1, truth == 1) + 0.1


def test_objects_without_contrast_or_surroundings_are_left_as_they_are() -> None:
    labels = disc_labels((40, 40), [(20, 20)], 8)
    flat = np.full(labels.shape, 100.0, np.float32)
    np.testing.assert_array_equal(grow_to_half_maximum(labels, flat), labels)
    dark = np.where(ndi.binary_dilation(labels > 0, iterations=3), 50.0, 100.0)  # darker than its ring
    np.testing.assert_array_equal(grow_to_half_maximum(labels, dark), labels)
    everywhere = np.ones((20, 20), np.int32)  # no background at all
    np.testing.assert_array_equal(grow_to_half_maximum(everywhere, np.zeros((20, 20))), everywhere)
    empty = np.zeros((20, 30), np.int64)
    out = grow_to_half_maximum(empty, np.ones((20, 30)))
    assert out.dtype == np.int32 and out.max() == 0


def test_label_medians_match_numpy() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=(30, 40)).astype(np.float32)
    labels = rng.integers(0, 5, (30, 40))
    labels[labels == 3] = 0  # label 3 is empty
    medians = _label_medians(values, labels, 5)
    for k in (1, 2, 4):
        assert medians[k] == pytest.approx(float(np.median(values[labels == k])), rel=1e-6)
    assert np.isnan(medians[3]) and np.isnan(medians[5])


def test_input_and_config_validation() -> None:
    labels = disc_labels((20, 30), [(10, 10)], 4)
    with pytest.raises(ValueError, match=r"same shape .*\(20, 30\) and \(20, 31\)"):
        grow_to_half_maximum(labels, np.zeros((20, 31)))
    with pytest.raises(ValueError, match="same shape"):
        grow_to_half_maximum(labels[None], np.zeros((1, 20, 30)))
    with pytest.raises(TypeError, match="integer"):
        grow_to_half_maximum(labels.astype(float), np.zeros((20, 30)))
    with pytest.raises(TypeError, match="real-valued"):
        grow_to_half_maximum(labels, np.zeros((20, 30), complex))
    with pytest.raises(ValueError, match="NaN"):
        grow_to_half_maximum(labels, np.full((20, 30), np.nan))
    with pytest.raises(ValueError, match="pixel_scale"):
        grow_to_half_maximum(labels, np.zeros((20, 30)), pixel_scale=0.0)
    for bad in ({"level": 0.0}, {"level": 1.0}, {"reach": 0.0}, {"background_ring": (6.0, 3.0)},
                {"background_ring": (-1.0, 3.0)}, {"smoothing_sigma": -1.0}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            ExtentConfig(**bad)


def test_segnet_segmenter_applies_the_extent_step(monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SegNet(SegNetConfig(n_members=1)).eval()
    truth = disc_labels((48, 64), [(24, 20), (24, 44)], 9)
    frame = _render(truth, blur=1.5).astype(np.uint16)
    # Maps of a network that sees both nuclei 2 px too small.
    small = disc_labels(truth.shape, [(24, 20), (24, 44)], 7) > 0
    probs = np.stack([small * 0.95, np.zeros(truth.shape), 1 - small * 0.95]).astype(np.float32)
    segmenters = {}
    for name, extent in (("plain", None), ("grown", ExtentConfig())):
        segmenter = SegNetSegmenter(SegNetSegmenterConfig(extent=extent), model=model)
        monkeypatch.setattr(segmenter, "probabilities", lambda image: probs)
        segmenters[name] = segmenter.segment(frame)
    plain, grown = segmenters["plain"], segmenters["grown"]
    assert plain.max() == 2
    np.testing.assert_array_equal(grown, grow_to_half_maximum(plain, frame))
    for label in (1, 2):
        target = truth == truth[grown == label][0]
        assert _iou(grown == label, target) > _iou(plain == label, target) + 0.1
