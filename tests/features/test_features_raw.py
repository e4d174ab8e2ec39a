"""The ``raw`` extractor: contract, normalisation, alignment, and tracking through the correlation filters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from celltrack.cf import CFConfig, FilterBank
from celltrack.features import (
    FeatureExtractor,
    RawConfig,
    RawExtractor,
    detect_recentred,
    extract_raw_windows,
    raw_feature_maps,
)
from celltrack.features.raw import _percentiles

torch.set_num_threads(1)


def nuclei_frame(
    rng: np.random.Generator, positions: np.ndarray, shape: tuple[int, int], offset: float = 33000.0
) -> np.ndarray:
    """uint16 frame with textured elliptic nuclei on a camera offset, plus shot-like noise."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    image = np.zeros(shape)
    texture = np.random.default_rng(11)  # same nuclei appearance whatever the positions
    for py, px in positions:
        bumps = texture.uniform(-5, 5, (6, 2))
        image += 800.0 * np.exp(-((yy - py) ** 2) / (2 * 6.0**2) - (xx - px) ** 2 / (2 * 4.5**2))
        for by, bx in bumps:
            image += 400.0 * np.exp(-((yy - py - by) ** 2 + (xx - px - bx) ** 2) / (2 * 2.0**2))
    image += rng.normal(0.0, 15.0, shape)
    return np.clip(image + offset, 0, 65535).astype(np.uint16)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def test_layer_and_shape_contract(rng: np.random.Generator) -> None:
    extractor = RawExtractor()
    assert isinstance(extractor, FeatureExtractor)
    assert extractor.name == "raw"
    assert extractor.n_layers == 1 and extractor.layer_weights == (1.0,) and extractor.layer_channels == (2,)
    frame = nuclei_frame(rng, np.array([[40.0, 40.0], [40.0, 100.0]]), (90, 140))
    centres = np.array([[40.2, 39.7], [40.0, 100.0], [0.0, 0.0], [89.0, 139.0]])
    layers = extractor.extract_windows(frame, centres, 40)
    assert isinstance(layers, list) and len(layers) == 1
    assert layers[0].shape == (4, 2, 40, 40) and layers[0].dtype == torch.float32
    assert bool(torch.isfinite(layers[0]).all())
    same = extractor.windows_from_maps(extractor.compute_maps(frame), centres, 40)
    # Window-local filtering sums the kernel in float32, full-frame maps use scipy: equal up to rounding.
    torch.testing.assert_close(same[0], layers[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(extract_raw_windows(frame, centres, 40)[0], layers[0], rtol=0, atol=0)
    assert extractor.extract_windows(frame, np.zeros((0, 2)), 40)[0].shape == (0, 2, 40, 40)


def test_each_channel_standardised_per_window(rng: np.random.Generator) -> None:
    frame = nuclei_frame(rng, np.array([[40.0, 40.0]]), (80, 80))
    layers = RawExtractor().extract_windows(frame, np.array([[40.0, 40.0], [3.0, 70.0], [60.5, 20.5]]), 32)
    mean = layers[0].mean(dim=(-2, -1))
    std = layers[0].std(dim=(-2, -1), unbiased=False)
    np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(std.numpy(), 1.0, atol=1e-4)


def test_maps_remove_camera_offset_and_scale(rng: np.random.Generator) -> None:
    positions = np.array([[30.0, 30.0], [30.0, 80.0]])
    frame = nuclei_frame(rng, positions, (60, 110), offset=33000.0).astype(np.float64)
    low = frame - 33000.0 + 100.0
    maps_high = raw_feature_maps(frame)
    maps_low = raw_feature_maps(low * 3.0)
    torch.testing.assert_close(maps_high, maps_low, rtol=1e-3, atol=1e-3)
    assert maps_high.shape == (2, 60, 110)
    # Background near zero, nuclei near one.
    assert abs(float(maps_high[0].median())) < 0.05
    assert float(maps_high[0, 30, 30]) > 0.5
    with pytest.raises(ValueError, match="2-D"):
        raw_feature_maps(np.zeros((2, 5, 5)))
    with pytest.raises(ValueError):
        RawConfig(background_percentile=99.0, high_percentile=50.0)


def test_windows_are_aligned_with_the_rounded_centre() -> None:
    frame = np.zeros((60, 60), dtype=np.uint16)
    frame[21, 37] = 1000
    config = RawConfig(gradient_sigma=0.0)
    layers = RawExtractor(config).extract_windows(frame, np.array([[21.3, 36.6]]), 20)
    intensity = layers[0][0, 0]
    assert tuple(int(i) for i in np.unravel_index(int(intensity.argmax()), intensity.shape)) == (10, 10)


def test_raw_features_track_cells_with_filters(rng: np.random.Generator) -> None:
    start = np.array([[40.3, 40.6], [45.0, 110.2], [100.7, 70.0]])
    shifts = np.array([[2.5, -1.0], [-6.0, 3.5], [0.4, 0.3]])
    shape = (140, 150)
    extractor = RawExtractor()
    first, second = nuclei_frame(rng, start, shape), nuclei_frame(rng, start + shifts, shape)
    size = CFConfig().window
    bank = FilterBank.train(
        extractor.extract_windows(first, start, size),
        CFConfig(),
        centres=start,
        layer_weights=extractor.layer_weights,
    )
    maps = extractor.compute_maps(second)
    positions, detection = detect_recentred(bank, extractor, maps, start, size, iterations=2)
    np.testing.assert_allclose(positions, start + shifts, atol=0.25)
    assert detection.psr.min() > 10.0
    # A window on empty background gives a much weaker, flatter response.
    empty = bank.detect(extractor.windows_from_maps(maps, np.array([[120.0, 20.0]] * 3), size))
    assert empty.psr.max() < 0.5 * detection.psr.min()


@pytest.mark.parametrize("shape", [(30, 30), (20, 200), (48, 48)])
def test_frames_smaller_than_a_window_give_the_crops_of_their_maps(
    shape: tuple[int, int], rng: np.random.Generator
) -> None:
    # 40 px windows read 48 px with their filter margin: no window fits wholly inside these frames.
    frame = nuclei_frame(rng, rng.uniform(0, min(shape), (2, 2)), shape)
    centres = np.array([[shape[0] / 2, shape[1] / 2], [0.0, 0.0], [shape[0] - 1.0, 3.5]])
    extractor = RawExtractor()
    local = extractor.extract_windows(frame, centres, 40)[0]
    cropped = extractor.windows_from_maps(extractor.compute_maps(frame), centres, 40)[0]
    torch.testing.assert_close(local, cropped, rtol=1e-5, atol=1e-5)


def test_window_local_features_equal_crops_of_full_frame_maps_in_many_blocks(
    rng: np.random.Generator,
) -> None:
    # More windows than one block, many of them crossing or outside the frame's edges.
    frame = nuclei_frame(rng, rng.uniform(0, 120, (12, 2)), (120, 150))
    centres = np.concatenate([rng.uniform(-15, 165, (700, 2)), [[0.0, 0.0], [119.0, 149.0], [-30.0, 60.0]]])
    extractor = RawExtractor()
    local = extractor.extract_windows(frame, centres, 24)[0]
    cropped = extractor.windows_from_maps(extractor.compute_maps(frame), centres, 24)[0]
    assert local.shape == (703, 2, 24, 24)
    torch.testing.assert_close(local, cropped, rtol=1e-5, atol=1e-5)
    # The per-frame crop function gives the same windows, and a tensor frame the same as an array frame.
    torch.testing.assert_close(extractor.window_cropper(frame, 24)(centres)[0], local)
    torch.testing.assert_close(
        extractor.extract_windows(torch.from_numpy(frame.astype(np.float32)), centres, 24)[0], local
    )
    with pytest.raises(TypeError, match="real numbers"):
        extractor.extract_windows(frame.astype(np.complex64), centres, 24)
    with pytest.raises(ValueError, match="2-D"):
        extractor.extract_windows(frame[None], centres, 24)


def test_windows_of_several_frames_in_one_pass_equal_frame_by_frame_crops(rng: np.random.Generator) -> None:
    extractor = RawExtractor()
    frames = [rng.integers(100, 4000, (90, 120)).astype(np.uint16) for _ in range(3)]
    frames[1] = frames[1] * 3  # another exposure: each frame keeps its own background and scale
    croppers = [extractor.window_cropper(f, 24) for f in frames]
    # Centres inside, at the border and outside each frame; an empty set for the middle one.
    centres = [rng.uniform(-10, 130, (n, 2)) for n in (5, 0, 7)]
    together = extractor.crop_many(croppers, centres)[0]
    one_by_one = torch.cat([crop(c)[0] for crop, c in zip(croppers, centres, strict=True)])
    torch.testing.assert_close(together, one_by_one)
    for crop, c, frame in zip(croppers, centres, frames, strict=True):
        torch.testing.assert_close(crop(c)[0], extractor.extract_windows(frame, c, 24)[0])
    with pytest.raises(ValueError, match="one set of centres per cropper"):
        extractor.crop_many(croppers, centres[:2])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_percentiles_equal_numpys(dtype: type, rng: np.random.Generator) -> None:
    for size in (1, 2, 3, 50, 5000):
        values = (rng.random(size) * 300).astype(dtype)
        for percents in ((50.0, 99.5), (0.0, 100.0), (12.5, 87.5, 33.3)):
            expected = np.percentile(values, list(percents))
            if np.dtype(dtype) == np.float32:  # numpy mixes float32 and float64 steps there
                np.testing.assert_allclose(_percentiles(values, percents), expected, rtol=1e-6)
            else:
                assert _percentiles(values, percents) == expected.tolist()
    with pytest.raises(ValueError, match="empty"):
        _percentiles(np.zeros(0, dtype), (50.0,))
