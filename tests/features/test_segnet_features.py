"""SegNet features for the filters: aligned maps, batched windows, the on-disk cache."""

import numpy as np
import pytest
import torch

from celltrack.cf import FilterBank
from celltrack.features.segnet import SegNetFeatures
from celltrack.io.feature_cache import FeatureCache
from celltrack.models import SegNet, SegNetConfig
from celltrack.synthetic import drifting_nuclei


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return SegNet(SegNetConfig(channels=(4, 4, 4, 4, 4), n_members=1)).eval()


def test_maps_align_with_odd_sized_frames(tiny_model):
    frame = np.random.default_rng(0).integers(0, 500, (37, 53)).astype(np.uint16)
    maps = SegNetFeatures(tiny_model).compute_maps(frame)
    assert len(maps) == 4 and all(m.shape == (4, 37, 53) for m in maps)


def test_batched_windows_equal_one_by_one(tiny_model):
    frame = np.random.default_rng(1).integers(0, 500, (64, 80)).astype(np.uint16)
    extractor = SegNetFeatures(tiny_model)
    centres = np.array([[10.2, 12.7], [40.0, 60.5], [1.0, 79.0]])
    together = extractor.extract_windows(frame, centres, 24)
    for i, centre in enumerate(centres):
        alone = extractor.extract_windows(frame, centre[None], 24)
        for a, b in zip(alone, together, strict=True):
            torch.testing.assert_close(a[0], b[i])


def test_shift_is_recovered_with_segnet_features(tiny_model):
    movie = drifting_nuclei(velocity=(2.0, -1.0), n=3, frames=2, seed=3)
    extractor = SegNetFeatures(tiny_model)
    table = np.array([[r[2], r[3]] for r in movie.centroids if r[0] == 0])
    bank = FilterBank.train(
        extractor.extract_windows(movie.images[0], table, 32),
        centres=table,
        layer_weights=extractor.layer_weights,
    )
    positions, _ = bank.locate(lambda c: extractor.extract_windows(movie.images[1], c, 32), table)
    np.testing.assert_allclose(positions - table, np.tile([2.0, -1.0], (3, 1)), atol=0.5)


def test_cache_returns_stored_maps_and_counts(tiny_model, tmp_path):
    frame = np.random.default_rng(2).integers(0, 500, (30, 31)).astype(np.uint16)
    cache = FeatureCache(tmp_path / "cache.zarr", namespace="tiny")
    extractor = SegNetFeatures(tiny_model, cache=cache)
    first = extractor.compute_maps(frame)
    again = SegNetFeatures(tiny_model, cache=FeatureCache(tmp_path / "cache.zarr", namespace="tiny"))
    second = again.compute_maps(frame)
    assert cache.misses == 1 and again.cache.hits == 1
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=1e-2)  # float16 storage
    assert cache.megabytes_per_frame() == pytest.approx(4 * 4 * 30 * 31 * 2 / 1e6)


def test_layer_weights_must_match_four_layers(tiny_model):
    with pytest.raises(ValueError, match="4 layers"):
        SegNetFeatures(tiny_model, layer_weights=(1.0, 0.5))


def test_cache_rejects_a_non_cache_folder(tmp_path):
    (tmp_path / "file.zarr").write_text("not a store")
    with pytest.raises(ValueError, match="feature cache"):
        FeatureCache(tmp_path / "file.zarr")
