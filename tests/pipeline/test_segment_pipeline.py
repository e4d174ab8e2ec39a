"""The pipeline's movie segmenter: merged nuclei are cut first, then objects grow to their half-maximum."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage as ndi

from celltrack.pipeline.segment import MovieSegmenter, SegmentationConfig, build_segmenter
from celltrack.segment import ExtentConfig, SegNetSegmenterConfig
from celltrack.synthetic import disc_labels


def test_merged_nuclei_are_cut_before_the_objects_grow() -> None:
    shape = (60, 90)
    apart = disc_labels(shape, [(30, 31), (30, 54)], 10)
    touching = disc_labels(shape, [(30, 33), (30, 52)], 10)
    # The image of the touching nuclei: blurred discs, so the true rim lies outside the eroded objects.
    image = ndi.gaussian_filter((touching > 0).astype(float) * 1000.0, 1.5) + 100.0
    images = np.stack([image, image])
    merged = ndi.binary_erosion(touching > 0).astype(np.int32)
    assert ndi.label(merged)[1] == 1  # the segmenter's view of frame 1: one object
    outputs = iter([apart, merged])
    segmenter = MovieSegmenter(lambda frame: next(outputs), SegmentationConfig(), pixel_scale=1.0)
    _, second = list(segmenter.label_frames(images, range(2)))
    assert len(np.unique(second)) - 1 == 2  # cut apart
    assert (second > 0).sum() > merged.sum()  # and grown back toward the true rim
    assert not np.any((second > 0) & (image < 200))  # but not into the background

    outputs = iter([apart, merged])
    config = SegmentationConfig(grow=ExtentConfig(enabled=False))
    ungrown = list(MovieSegmenter(lambda frame: next(outputs), config).label_frames(images, range(2)))
    assert (ungrown[1] > 0).sum() == merged.sum()
    outputs = iter([apart, merged])
    classic = MovieSegmenter(lambda frame: next(outputs), SegmentationConfig(), pixel_scale=None)
    assert (list(classic.label_frames(images, range(2)))[1] > 0).sum() == merged.sum()


def test_test_time_augmentation_reaches_the_segnet_segmenter(monkeypatch) -> None:
    import celltrack.segment.segnet as segnet_module

    seen = []
    original = segnet_module.SegNetSegmenter

    def recording(config, model=None):
        seen.append(config.test_time_augmentation)
        return original(config, model)

    monkeypatch.setattr(segnet_module, "SegNetSegmenter", recording)
    study = SegmentationConfig(method="segnet", model="study", nucleus_diameter=None)
    assert study.test_time_augmentation == SegNetSegmenterConfig().test_time_augmentation
    build_segmenter(study)
    build_segmenter(study.model_copy(update={"test_time_augmentation": "flip"}))
    assert seen == [SegNetSegmenterConfig().test_time_augmentation, "flip"]
    # The default model has no flip averaging: asking for it is an error, not a silent no-op.
    with pytest.raises(ValueError, match="study model only"):
        build_segmenter(SegmentationConfig(method="segnet", nucleus_diameter=None,
                                           test_time_augmentation="flip"))
    with pytest.raises(ValidationError, match="'none', 'flip', 'flips' or 'd4'"):
        SegmentationConfig.model_validate({"test_time_augmentation": "rot90"})
