"""The pipeline's movie segmenter: per-frame labels, then merged nuclei cut with the previous frame's help."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage as ndi

from celltrack.pipeline.segment import MovieSegmenter, SegmentationConfig, build_segmenter
from celltrack.segment import MergeSplitConfig, SegNetSegmenterConfig
from celltrack.synthetic import disc_labels


def test_merged_nuclei_are_cut_apart_in_frame_order() -> None:
    shape = (60, 90)
    apart = disc_labels(shape, [(30, 31), (30, 54)], 10)
    touching = disc_labels(shape, [(30, 33), (30, 52)], 10)
    image = ndi.gaussian_filter((touching > 0).astype(float) * 1000.0, 1.5) + 100.0
    images = np.stack([image, image])
    merged = ndi.binary_erosion(touching > 0).astype(np.int32)
    assert ndi.label(merged)[1] == 1  # the segmenter's view of frame 1: one object
    outputs = iter([apart, merged])
    segmenter = MovieSegmenter(lambda frame: next(outputs), SegmentationConfig())
    first, second = list(segmenter.label_frames(images, range(2)))
    np.testing.assert_array_equal(first, apart)
    assert len(np.unique(second)) - 1 == 2  # cut apart
    assert (second > 0).sum() == merged.sum()  # into pieces of the object, nothing added

    outputs = iter([apart, merged])
    config = SegmentationConfig(merge_split=MergeSplitConfig(enabled=False))
    kept = list(MovieSegmenter(lambda frame: next(outputs), config).label_frames(images, range(2)))
    np.testing.assert_array_equal(kept[1], merged)


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
