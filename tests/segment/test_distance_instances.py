"""Instances from the inner distance: touching nuclei part at the valley between their seeds."""

import numpy as np
import pytest

from celltrack.models.panoptic_training import panoptic_targets
from celltrack.segment import DistanceInstancesConfig, distance_to_instances
from celltrack.synthetic import generate_movie


def maps_from_truth(mask):
    """Ideal network maps of a mask: its classes as probabilities and its inner distance."""
    classes, distance = panoptic_targets(mask)
    probabilities = np.stack([(classes == k).astype(np.float32) for k in range(3)])
    return np.concatenate([probabilities, distance[None]]).astype(np.float32)


def touching_discs(gap=0.0, radius=10):
    yy, xx = np.mgrid[:40, :60]
    mask = np.zeros((40, 60), np.int32)
    mask[(yy - 20) ** 2 + (xx - 20) ** 2 <= radius**2] = 1
    right = (yy - 20) ** 2 + (xx - (20 + 2 * radius + gap)) ** 2 <= radius**2
    mask[right & (mask == 0)] = 2
    return mask


def test_touching_nuclei_are_split_by_distance_seeds():
    mask = touching_discs(gap=-2)  # overlapping discs: one foreground blob without any background gap
    maps = maps_from_truth(mask)
    foreground = maps[0] + maps[1] > 0.5
    assert (foreground[20, 15:45]).all()  # no background between them
    labels = distance_to_instances(maps)
    assert labels.max() == 2
    for label in (1, 2):
        overlap = np.bincount(labels[mask == label], minlength=3)[1:]
        assert overlap.max() > 0.9 * (mask == label).sum()


def test_dense_synthetic_frame_is_recovered_from_ideal_maps():
    movie = generate_movie(frames=1, height=160, width=160, nuclei=60, seed=4, min_separation=0.0)
    truth = movie.labels[0]
    labels = distance_to_instances(maps_from_truth(truth))
    assert labels.max() == len(np.unique(truth[truth > 0]))


def test_lengths_follow_the_pixel_scale():
    mask = touching_discs(radius=3)
    maps = maps_from_truth(mask)
    config = DistanceInstancesConfig(min_area=40.0)
    assert distance_to_instances(maps, config, pixel_scale=1.0).max() == 0  # discs of ~29 px² < 40
    assert distance_to_instances(maps, config, pixel_scale=0.5).max() == 2  # 40 model px² = 10 px² here


def test_bad_maps_raise():
    with pytest.raises(ValueError, match="C >= 4"):
        distance_to_instances(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(TypeError, match="floating"):
        distance_to_instances(np.zeros((4, 8, 8), np.int32))
    with pytest.raises(ValueError, match="NaN"):
        distance_to_instances(np.full((4, 8, 8), np.nan, np.float32))
