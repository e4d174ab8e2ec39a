"""The linker's correlation-filter appearance: per-frame windows, shared spectra, blocks of pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from celltrack.cf import ROW_BLOCK, FilterBank
from celltrack.features import FullFrameExtractor, RawExtractor
from celltrack.graph import measure_detections
from celltrack.link.appearance import FrameWindows, TrackFilters, bin_frame, measure_intensity
from celltrack.synthetic import static_nuclei


def _filters(
    centring: str, downsample: int = 1, window: int = 24, sigma: float = 2.0, pool_radius: float = 1.5
) -> TrackFilters:
    return TrackFilters(
        RawExtractor(),
        window=window,
        sigma=sigma,
        lambda_rel=0.01,
        learning_rate=0.2,
        pool_radius=pool_radius,
        device="cpu",
        centring=centring,
        downsample=downsample,
    )


def test_responses_in_blocks_match_and_placements_agree_on_the_same_window() -> None:
    movie = static_nuclei(frames=2, seed=3)
    yx = measure_detections(movie.labels[0], 0)[["y", "x"]].to_numpy()
    n = len(yx)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, n, ROW_BLOCK + 150)
    cols = rng.integers(0, n, ROW_BLOCK + 150)
    values = {}
    for centring in ("candidate", "predicted"):
        filters = _filters(centring)
        first = filters.prepare(movie.images[0], yx)
        filters.advance(first, np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), np.arange(n))
        assert filters.n_rows == n
        second = filters.prepare(movie.images[1], yx)
        # Predicted positions on the detections: both placements centre every window on the same point.
        values[centring] = filters.responses(second, yx, rows, cols)
        split = np.concatenate(
            [
                filters.responses(second, yx, rows[:100], cols[:100]),
                filters.responses(second, yx, rows[100:], cols[100:]),
            ]
        )
        np.testing.assert_allclose(split, values[centring], atol=1e-6)
    # A track's own detection sits at its predicted position: the same window in both placements.
    same = rows == cols
    np.testing.assert_allclose(values["candidate"][same], values["predicted"][same], atol=1e-5)
    # Predicted windows see only candidates inside them; candidate windows always see their candidate.
    far = np.abs(yx[cols] - yx[rows]).max(axis=1) > 24 / 2 - 1
    assert np.isnan(values["predicted"][far]).all() and np.isfinite(values["candidate"]).all()
    # Static nuclei: each filter matches its own nucleus far better than the others.
    own = values["candidate"][rows == cols]
    other = values["candidate"][rows != cols]
    assert own.min() > 0.8 and own.min() > other.max()


def test_advance_updates_kept_and_new_rows_in_order() -> None:
    movie = static_nuclei(frames=2, seed=4)
    yx = measure_detections(movie.labels[0], 0)[["y", "x"]].to_numpy()
    filters = _filters("candidate")
    empty = np.zeros(0, int)
    filters.advance(filters.prepare(movie.images[0], yx), empty, empty, empty, np.arange(3))
    frame = filters.prepare(movie.images[1], yx)
    # Row 1 linked to detection 1, row 0 kept waiting, row 2 ended; detection 4 starts a track.
    filters.advance(frame, np.array([1]), np.array([1]), np.array([0]), np.array([4]))
    assert filters.n_rows == 3
    response = filters.responses(frame, yx[[1, 0, 4]], np.arange(3), np.array([1, 0, 4]))
    assert response.min() > 0.8
    swapped = filters.responses(frame, yx[[1, 0, 4]], np.arange(3), np.array([0, 1, 1]))
    assert swapped.max() < response.min()


def test_measure_intensity_handles_borders_and_empty_input() -> None:
    frame = np.full((40, 50), 100, np.uint16)
    frame[10:15, 10:15] = 600
    inside = measure_intensity(
        frame, np.array([[12.0, 12.0], [30.0, 40.0], [0.0, 0.0]]), np.array([2.0, 2.0, 3.0])
    )
    np.testing.assert_allclose(inside, [500.0, 0.0, 0.0])
    assert measure_intensity(frame, np.zeros((0, 2)), np.zeros(0)).shape == (0,)


@pytest.mark.parametrize("downsample", [1, 2])
def test_binned_filters_still_tell_nuclei_apart(downsample: int) -> None:
    movie = static_nuclei(frames=2, seed=5, height=160, width=160, radius_mean=15.0, radius_std=1.0)
    yx = measure_detections(movie.labels[0], 0)[["y", "x"]].to_numpy()
    n = len(yx)
    # The linker's automatic settings for 30 px nuclei: window 2 diameters, sigma d / 10, pooling d / 8.
    filters = _filters("candidate", downsample, window=60, sigma=3.0, pool_radius=3.75)
    assert filters.window == round(60 / downsample)
    empty = np.zeros(0, int)
    filters.advance(filters.prepare(movie.images[0], yx), empty, empty, empty, np.arange(n))
    second = filters.prepare(movie.images[1], yx)
    np.testing.assert_allclose(second.yx, (yx + 0.5) / downsample - 0.5)
    rows, cols = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)
    values = filters.responses(second, yx, rows, cols)
    own, other = values[rows == cols], values[rows != cols]
    assert own.min() > other.max()


def test_bin_frame_is_a_block_mean() -> None:
    frame = np.arange(7 * 9, dtype=np.uint16).reshape(7, 9)
    binned = bin_frame(frame, 2)
    assert binned.shape == (3, 4) and binned.dtype == np.float32
    assert binned[1, 2] == frame[2:4, 4:6].mean()
    np.testing.assert_array_equal(bin_frame(frame, 1), frame.astype(np.float32))
    with pytest.raises(ValueError, match="smaller than the binning factor"):
        bin_frame(frame, 8)


def _drifting(frames: int = 6, seed: int = 6) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Static nuclei drifting one pixel down and left per frame, with fresh noise: frames and positions."""
    movie = static_nuclei(frames=1, seed=seed)
    rng = np.random.default_rng(seed)
    yx = measure_detections(movie.labels[0], 0)[["y", "x"]].to_numpy()
    images = [
        np.roll(movie.images[0], (t, -t), axis=(0, 1))
        + rng.integers(0, 5, movie.images[0].shape).astype(np.uint16)
        for t in range(frames)
    ]
    return images, [yx + np.array([t, -t]) for t in range(frames)]


def _follow(
    filters: TrackFilters, images: list[np.ndarray], positions: list[np.ndarray]
) -> list[FrameWindows]:
    """Every detection starts a track in the first frame and links to its own index after: the frames."""
    n = len(positions[0])
    empty, every = np.zeros(0, int), np.arange(n)
    frames = []
    for t, (image, yx) in enumerate(zip(images, positions, strict=True)):
        frames.append(filters.prepare(image, yx))
        if t == 0:
            filters.advance(frames[-1], empty, empty, empty, every)
        else:
            filters.advance(frames[-1], every, every, empty, empty)
    return frames


@pytest.mark.parametrize("memory", [1, 3, 10])
def test_filters_on_demand_equal_the_moving_average_over_the_last_positions(memory: int) -> None:
    images, positions = _drifting()
    n = len(positions[0])
    filters = TrackFilters(RawExtractor(), 24, 2.0, 0.01, 0.3, 1.5, "cpu", memory=memory)
    frames = _follow(filters, images[:-1], positions[:-1])
    # The same filters by hand: train at the oldest remembered position, update along the others.
    extractor, used = RawExtractor(), list(range(len(frames)))[-memory:]
    by_hand = FilterBank.train(
        extractor.extract_windows(images[used[0]], positions[used[0]], 24),
        filters.cf_config,
        centres=positions[used[0]],
    )
    for t in used[1:]:
        by_hand.update(
            extractor.extract_windows(images[t], positions[t], 24), positions[t], learning_rate=0.3
        )
    rows = np.arange(n)
    on_demand, index = filters._filters(rows)
    torch.testing.assert_close(
        on_demand.select(index).numerators[0], by_hand.numerators[0], atol=1e-4, rtol=1e-4
    )
    last = filters.prepare(images[-1], positions[-1])
    expected = by_hand.response_maps(extractor.extract_windows(images[-1], positions[-1], 24))[:, 0, 0]
    np.testing.assert_allclose(
        filters.responses(last, positions[-1], rows, rows), expected.numpy().clip(0, 1), atol=0.05
    )
    # Only the remembered frames are kept.
    assert len(filters._frames) == min(memory, len(frames))


def test_windows_are_computed_only_when_a_response_needs_them() -> None:
    images, positions = _drifting(frames=3)
    filters = TrackFilters(RawExtractor(), 24, 2.0, 0.01, 0.2, 1.5, "cpu", memory=2)
    first, second = _follow(filters, images[:2], positions[:2])
    assert (first.slot < 0).all() and (second.slot < 0).all()  # nothing asked yet: nothing computed
    third = filters.prepare(images[2], positions[2])
    filters.responses(third, positions[2], np.array([1]), np.array([1]))
    # Row 1's two remembered windows and its one candidate, nothing else.
    assert [int((f.slot >= 0).sum()) for f in (first, second, third)] == [1, 1, 1]


class _IntensityMaps(FullFrameExtractor):
    """A full-frame extractor (its cropper holds the maps): the frame itself as one channel."""

    name = "intensity"
    layer_weights = (1.0,)

    @property
    def layer_channels(self) -> tuple[int, ...]:
        return (1,)

    def compute_maps(self, frame):
        return [torch.as_tensor(np.asarray(frame, np.float32))[None]]


def test_feature_maps_are_not_kept_past_their_frame() -> None:
    images, positions = _drifting(frames=3)
    n = len(positions[0])
    filters = TrackFilters(_IntensityMaps(), 24, 2.0, 0.01, 0.2, 1.5, "cpu", memory=3)
    (first,) = _follow(filters, images[:1], positions[:1])
    # The maps are dropped once the frame is linked; the spectra later filters need are kept.
    assert first.dropped and (first.slot >= 0).all()
    second = filters.prepare(images[1], positions[1])
    values = filters.responses(second, positions[1], np.arange(n), np.arange(n))
    assert np.all(values > 0.5)


def test_rejects_a_memory_below_one() -> None:
    with pytest.raises(ValueError, match="memory"):
        TrackFilters(RawExtractor(), 24, 2.0, 0.01, 0.2, 1.5, "cpu", memory=0)
