"""Vectorised window cropping, border padding and per-window standardisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from celltrack.features import background_fill, crop_windows, standardise_windows
from celltrack.features.base import standardise_windows_

torch.set_num_threads(1)


def naive_crop(image: np.ndarray, centre: tuple[float, float], size: int, fill: np.ndarray) -> np.ndarray:
    """Reference: one window by explicit pixel loops, constant fill outside the image."""
    channels, height, width = image.shape
    oy = int(np.floor(centre[0] + 0.5)) - size // 2
    ox = int(np.floor(centre[1] + 0.5)) - size // 2
    out = np.empty((channels, size, size), dtype=image.dtype)
    for i in range(size):
        for j in range(size):
            y, x = oy + i, ox + j
            out[:, i, j] = image[:, y, x] if (0 <= y < height and 0 <= x < width) else fill
    return out


@pytest.fixture
def image() -> torch.Tensor:
    rng = np.random.default_rng(7)
    return torch.as_tensor(rng.normal(size=(3, 50, 70)), dtype=torch.float32)


def test_crop_matches_reference_inside_and_across_borders(image: torch.Tensor) -> None:
    centres = np.array([[25.0, 35.0], [10.4, 12.6], [0.0, 0.0], [49.2, 69.7], [-5.0, 30.0], [25.5, -0.5]])
    fill = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    windows = crop_windows(image, centres, 16, fill=torch.as_tensor(fill))
    assert windows.shape == (len(centres), 3, 16, 16)
    for row, centre in enumerate(centres):
        np.testing.assert_array_equal(windows[row].numpy(), naive_crop(image.numpy(), centre, 16, fill))


def test_centre_pixel_and_odd_size(image: torch.Tensor) -> None:
    centres = np.array([[20.3, 30.6], [7.5, 8.49]])
    for size in (15, 16):
        windows = crop_windows(image, centres, size)
        np.testing.assert_array_equal(windows[0, :, size // 2, size // 2].numpy(), image[:, 20, 31].numpy())
        np.testing.assert_array_equal(windows[1, :, size // 2, size // 2].numpy(), image[:, 8, 8].numpy())


def test_border_windows_keep_full_size_with_background_fill(image: torch.Tensor) -> None:
    windows = crop_windows(image, np.array([[0.0, 0.0]]), 40)
    assert windows.shape == (1, 3, 40, 40)
    median = background_fill(image)
    np.testing.assert_allclose(
        windows[0, :, :20, :20].numpy(), np.broadcast_to(median[:, None, None], (3, 20, 20))
    )
    np.testing.assert_array_equal(windows[0, :, 20:, 20:].numpy(), image[:, :20, :20].numpy())
    # Wholly outside: still a full window of background.
    far = crop_windows(image, np.array([[-100.0, 500.0]]), 8, fill=0.0)
    assert far.shape == (1, 3, 8, 8) and not bool(far.any())


def test_edge_mode_replicates_border(image: torch.Tensor) -> None:
    windows = crop_windows(image, np.array([[0.0, 69.0]]), 6, pad_mode="edge")
    np.testing.assert_array_equal(windows[0, :, 0, 0].numpy(), image[:, 0, 66].numpy())
    np.testing.assert_array_equal(windows[0, :, 0, 5].numpy(), image[:, 0, 69].numpy())


def test_crop_accepts_empty_and_2d_and_validates(image: torch.Tensor) -> None:
    assert crop_windows(image, np.zeros((0, 2)), 10).shape == (0, 3, 10, 10)
    assert crop_windows(image[0], np.array([[5.0, 5.0]]), 10).shape == (1, 1, 10, 10)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        crop_windows(image, np.zeros(3), 10)
    with pytest.raises(ValueError, match="NaN"):
        crop_windows(image, np.array([[np.nan, 1.0]]), 10)
    with pytest.raises(ValueError, match="fill"):
        crop_windows(image, np.array([[0.0, 0.0]]), 10, fill=torch.zeros(2))
    with pytest.raises(TypeError):
        crop_windows(image.numpy(), np.array([[0.0, 0.0]]), 10)  # type: ignore[arg-type]


def test_standardise_windows_per_channel() -> None:
    rng = np.random.default_rng(3)
    windows = torch.as_tensor(rng.normal(5.0, 3.0, (4, 2, 12, 12)), dtype=torch.float32)
    windows[1, 0] = 7.0  # flat channel
    windows[2, 1] *= 1000.0
    out = standardise_windows(windows)
    mean = out.mean(dim=(-2, -1))
    std = out.std(dim=(-2, -1), unbiased=False)
    np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-5)
    expected_std = np.ones((4, 2))
    expected_std[1, 0] = 0.0
    np.testing.assert_allclose(std.numpy(), expected_std, atol=1e-5)
    assert not bool(out[1, 0].any())


def test_standardise_windows_in_place_matches_and_keeps_input_of_the_copying_version() -> None:
    rng = np.random.default_rng(4)
    windows = torch.as_tensor(rng.normal(-2.0, 4.0, (3, 2, 9, 9)), dtype=torch.float32)
    windows[0, 1] = -3.0  # flat channel
    original = windows.clone()
    expected = standardise_windows(windows)
    torch.testing.assert_close(windows, original)  # the copying version leaves its input alone
    result = standardise_windows_(windows)
    assert result is windows
    torch.testing.assert_close(windows, expected)
    assert not bool(windows[0, 1].any())
    with pytest.raises(TypeError, match="float32"):
        standardise_windows_(original.double())
