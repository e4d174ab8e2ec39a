"""The linker's correlation-filter appearance: per-frame windows, shared spectra, blocks of pairs."""

from __future__ import annotations

import numpy as np
import pytest

from celltrack.cf import ROW_BLOCK
from celltrack.features import RawExtractor
from celltrack.graph import measure_detections
from celltrack.link.appearance import TrackFilters, bin_frame, measure_intensity
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
