"""The SegNet segmenter's options: test-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from celltrack.models import SegNet, SegNetConfig
from celltrack.segment import SegNetSegmenter, SegNetSegmenterConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> SegNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SegNet(SegNetConfig(n_members=2)).eval()


@pytest.fixture(scope="module")
def shipped() -> SegNet:
    return SegNet.load()  # finds the nuclei of ``frame``; an untrained network finds none


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:53, :66]
    image = 33000 + rng.normal(0, 20, (53, 66))
    for cy, cx in [(14, 15), (30, 42), (40, 18), (12, 50)]:
        image += 600 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 5.0**2))
    return image.astype(np.uint16)


@pytest.mark.parametrize("augmentation", ["flip", "flips", "d4"])
def test_flipping_the_frame_flips_the_probabilities_with_tta(model, shipped, frame, augmentation) -> None:
    mirrored = np.ascontiguousarray(frame[:, ::-1])
    config = SegNetSegmenterConfig(tile_size=32, test_time_augmentation=augmentation)
    for net in (model, shipped):
        segmenter = SegNetSegmenter(config, net)
        probs = segmenter.probabilities(frame)
        np.testing.assert_allclose(segmenter.probabilities(mirrored)[..., ::-1], probs, atol=1e-6)
    labels = segmenter.segment(frame)
    assert labels.max() == 4
    np.testing.assert_array_equal(segmenter.segment(mirrored)[:, ::-1] > 0, labels > 0)


def test_tta_none_is_the_plain_network_and_flips_differ(model, frame) -> None:
    plain = model.predict_frame(frame)
    none = SegNetSegmenter(SegNetSegmenterConfig(test_time_augmentation="none"), model).probabilities(frame)
    np.testing.assert_array_equal(none, plain)
    flips = SegNetSegmenter(SegNetSegmenterConfig(test_time_augmentation="flips"), model).probabilities(frame)
    assert flips.shape == plain.shape and flips.dtype == np.float32
    assert np.abs(flips - plain).max() > 1e-4


def test_tta_option_rejects_bad_values() -> None:
    with pytest.raises(ValidationError, match="test_time_augmentation") as info:
        SegNetSegmenterConfig(test_time_augmentation="rotate")  # type: ignore[arg-type]
    assert "'none', 'flip', 'flips' or 'd4'" in str(info.value)
    with pytest.raises(ValidationError):
        SegNetSegmenterConfig(test_time_augmentation=True)  # type: ignore[arg-type]
    config = SegNetSegmenterConfig.model_validate({"test_time_augmentation": "d4"})
    assert config.test_time_augmentation == "d4"
