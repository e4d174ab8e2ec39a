import numpy as np
import pytest

from celltrack.segment.classic import ClassicConfig, ClassicSegmenter, segment_classic


def discs(shape, centres, radius, value=1000.0, offset=100.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.full(shape, float(offset))
    for y, x in centres:
        image[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] += value
    return image


def test_separate_nuclei_found_with_offset_and_noise():
    rng = np.random.default_rng(1)
    image = discs((80, 90), [(20, 20), (60, 30), (40, 70)], 7, offset=33000) + rng.normal(0, 20, (80, 90))
    labels = segment_classic(image.astype(np.uint16), nucleus_diameter=14)
    assert labels.max() == 3
    assert labels[20, 20] and labels[60, 30] and labels[40, 70]
    assert len({labels[20, 20], labels[60, 30], labels[40, 70]}) == 3


def test_touching_nuclei_are_split():
    image = discs((60, 80), [(30, 30), (30, 44)], 8)
    labels = ClassicSegmenter(ClassicConfig(nucleus_diameter=16, smoothing_sigma=0.5)).segment(image)
    assert labels.max() == 2
    assert labels[30, 28] != labels[30, 46]
    unsplit = ClassicSegmenter(ClassicConfig(nucleus_diameter=16, split_touching=False)).segment(image)
    assert unsplit.max() == 1


def test_small_fragments_removed():
    image = discs((50, 50), [(25, 25)], 8) + discs((50, 50), [(5, 5)], 1, offset=0)
    labels = segment_classic(image, min_area=30, smoothing_sigma=0.0)
    assert labels.max() == 1 and labels[5, 5] == 0


@pytest.mark.parametrize("image", [np.zeros((30, 30)), np.full((30, 30), 33000.0)])
def test_empty_or_flat_frame_gives_no_nuclei(image):
    assert segment_classic(image).max() == 0


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        segment_classic(np.zeros((3, 30, 30)))
    with pytest.raises(ValueError, match="NaN"):
        segment_classic(np.full((30, 30), np.nan))
    with pytest.raises(ValueError):
        ClassicConfig(nucleus_diameter=-1)
    with pytest.raises(ValueError):
        ClassicConfig(unknown_key=1)
