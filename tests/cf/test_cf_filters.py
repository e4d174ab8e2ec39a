"""Behaviour of the batched correlation-filter core on textured, asymmetric synthetic nuclei."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from celltrack.cf import (
    ROW_BLOCK,
    CFConfig,
    FilterBank,
    gaussian_target,
    locate_peaks,
    max_over_steps,
    row_blocks,
    sample_circular,
    signed_index,
    taper_window,
    window_origins,
    window_spectra,
)

torch.set_num_threads(1)

SIZE = 40


class Nuclei:
    """Analytic textured nuclei: elliptic envelope plus random sub-blobs, rendered at any float position."""

    def __init__(self, rng: np.random.Generator, n_cells: int, n_bumps: int = 8) -> None:
        self.amplitude = rng.uniform(0.3, 1.0, (n_cells, n_bumps))
        self.amplitude[:, 0] = 1.0
        self.offset = rng.uniform(-5.0, 5.0, (n_cells, n_bumps, 2))
        self.offset[:, 0] = 0.0
        self.width = rng.uniform(1.5, 3.0, (n_cells, n_bumps, 2))
        self.width[:, 0] = rng.uniform(5.0, 7.0, (n_cells, 2))

    def render(self, shape: tuple[int, int], positions: np.ndarray, background: float = 0.1) -> np.ndarray:
        yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
        image = np.full(shape, background)
        for cell, (py, px) in enumerate(np.asarray(positions, dtype=np.float64)):
            cy = py + self.offset[cell, :, 0][:, None, None]
            cx = px + self.offset[cell, :, 1][:, None, None]
            wy = self.width[cell, :, 0][:, None, None]
            wx = self.width[cell, :, 1][:, None, None]
            bumps = np.exp(-((yy - cy) ** 2) / (2 * wy**2) - (xx - cx) ** 2 / (2 * wx**2))
            image += (self.amplitude[cell][:, None, None] * bumps).sum(axis=0)
        return image


def windows(image: np.ndarray, centres: np.ndarray, size: int = SIZE) -> list[torch.Tensor]:
    """Standardised intensity windows (one layer, one channel), cropped with the shared origin convention."""
    origins, _ = window_origins(centres, size)
    padded = np.pad(image, size, mode="edge")
    crops = []
    for oy, ox in origins.numpy() + size:
        crop = padded[oy : oy + size, ox : ox + size]
        crops.append((crop - crop.mean()) / crop.std())
    return [torch.as_tensor(np.stack(crops)[:, None], dtype=torch.float32)]


def three_layers(image: np.ndarray, centres: np.ndarray, size: int = SIZE) -> list[torch.Tensor]:
    """Three aligned layers of different channel counts (intensity; gradients; a coarse blur)."""
    from scipy import ndimage

    grad_y = ndimage.sobel(image, axis=0)
    grad_x = ndimage.sobel(image, axis=1)
    coarse = ndimage.gaussian_filter(image, 3.0)
    layers = [windows(image, centres, size)[0]]
    layers.append(torch.cat([windows(grad_y, centres, size)[0], windows(grad_x, centres, size)[0]], dim=1))
    layers.append(windows(coarse, centres, size)[0])
    return layers


def grid_positions(n: int, spacing: float = 64.0, margin: float = 48.0) -> np.ndarray:
    side = int(np.ceil(np.sqrt(n)))
    idx = np.arange(n)
    return np.stack([margin + spacing * (idx // side), margin + spacing * (idx % side)], axis=1).astype(float)


def frame_shape(positions: np.ndarray, margin: int = 48) -> tuple[int, int]:
    return (int(positions[:, 0].max()) + margin, int(positions[:, 1].max()) + margin)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20150101)


# ------------------------------------------------------------------------------------------ shift recovery


@pytest.mark.parametrize(
    "shift", [(2.0, 0.0), (0.0, -2.0), (-1.0, 1.0), (0.4, -0.3), (-1.6, 0.7), (0.0, 0.0)]
)
def test_single_cell_shift_recovered_in_one_pass(
    rng: np.random.Generator, shift: tuple[float, float]
) -> None:
    nuclei = Nuclei(rng, 1)
    start = np.array([[60.3, 57.8]])
    shape = (120, 120)
    config = CFConfig(layer_weights=(1.0,))
    bank = FilterBank.train(windows(nuclei.render(shape, start), start), config, centres=start)
    moved = start + np.asarray(shift)
    detection = bank.detect(windows(nuclei.render(shape, moved), start), start)
    np.testing.assert_allclose(detection.displacement[0], shift, atol=0.25)
    np.testing.assert_allclose(detection.positions(start)[0], moved[0], atol=0.25)


@pytest.mark.parametrize(
    "shift", [(3.0, 0.0), (0.0, 3.0), (-2.25, 2.75), (5.5, -4.3), (-8.0, 0.0), (1.5, 7.0)]
)
def test_large_shift_recovered_after_recentring(rng: np.random.Generator, shift: tuple[float, float]) -> None:
    nuclei = Nuclei(rng, 1)
    start = np.array([[60.3, 57.8]])
    shape = (120, 120)
    config = CFConfig(layer_weights=(1.0,))
    bank = FilterBank.train(windows(nuclei.render(shape, start), start), config, centres=start)
    moved_frame = nuclei.render(shape, start + np.asarray(shift))
    one_pass = bank.detect(windows(moved_frame, start), start)
    # The Hann taper underestimates large displacements a little (toward the window centre) ...
    np.testing.assert_allclose(one_pass.displacement[0], shift, atol=0.2 * np.abs(shift).max() + 0.1)
    # ... and detecting again from the recentred window removes the bias.
    positions, detection = bank.locate(lambda centres: windows(moved_frame, centres), start, iterations=2)
    np.testing.assert_allclose(positions[0], start[0] + shift, atol=0.25)
    assert detection.psr[0] > one_pass.psr[0]


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_shift_direction_follows_input(rng: np.random.Generator, axis: int, sign: float) -> None:
    nuclei = Nuclei(rng, 1)
    start = np.array([[60.0, 60.0]])
    shape = (120, 120)
    bank = FilterBank.train(windows(nuclei.render(shape, start), start), CFConfig(layer_weights=(1.0,)))
    shift = np.zeros(2)
    shift[axis] = 3.0 * sign
    moved_frame = nuclei.render(shape, start + shift)
    detection = bank.detect(windows(moved_frame, start), start)
    np.testing.assert_allclose(detection.displacement[0], shift, atol=0.4)
    positions, _ = bank.locate(lambda centres: windows(moved_frame, centres), start)
    np.testing.assert_allclose(positions[0] - start[0], shift, atol=0.25)


def test_pattern_is_asymmetric_enough_to_catch_a_wrong_conjugate(rng: np.random.Generator) -> None:
    """The mirrored convention (conj on the search features) must miss the +3 px shift on this pattern."""
    nuclei = Nuclei(rng, 1)
    start = np.array([[60.0, 60.0]])
    shape = (120, 120)
    config = CFConfig(layer_weights=(1.0,))
    bank = FilterBank.train(windows(nuclei.render(shape, start), start), config)
    search = windows(nuclei.render(shape, start + np.array([3.0, 0.0])), start)[0]
    spectrum = torch.fft.rfft2(search * torch.hann_window(SIZE, periodic=True).outer(torch.hann_window(SIZE)))
    mirrored = torch.fft.irfft2((bank.filters()[0] * spectrum.conj()).sum(dim=1), s=(SIZE, SIZE))
    _, mirrored_peak = locate_peaks(mirrored)
    assert np.abs(mirrored_peak[0].numpy() - np.array([3.0, 0.0])).max() > 1.0


def test_batch_recovers_shifts_and_equals_per_cell_loop(rng: np.random.Generator) -> None:
    n_cells = 12
    nuclei = Nuclei(rng, n_cells)
    start = grid_positions(n_cells) + rng.uniform(-0.5, 0.5, (n_cells, 2))
    shape = frame_shape(start)
    shifts = rng.uniform(-1.5, 1.5, (n_cells, 2))
    shifts[:4] = rng.uniform(-6.0, 6.0, (4, 2))
    config = CFConfig(layer_weights=(1.0,))
    bank = FilterBank.train(windows(nuclei.render(shape, start), start), config, centres=start)
    moved_frame = nuclei.render(shape, start + shifts)
    search = windows(moved_frame, start)
    batched = bank.detect(search, start, keep_response=True)
    np.testing.assert_allclose(batched.displacement[4:], shifts[4:], atol=0.25)
    positions, _ = bank.locate(lambda centres: windows(moved_frame, centres), start)
    np.testing.assert_allclose(positions, start + shifts, atol=0.25)
    for cell in range(n_cells):
        single = bank.select([cell]).detect(
            [layer[cell : cell + 1] for layer in search], start[cell : cell + 1]
        )
        np.testing.assert_allclose(single.displacement[0], batched.displacement[cell], atol=1e-4)
        np.testing.assert_allclose(single.peak[0], batched.peak[cell], rtol=1e-4)
        np.testing.assert_allclose(single.psr[0], batched.psr[cell], rtol=1e-3)
    # Training one cell alone gives the same filter as its row in the batch.
    train_features = windows(nuclei.render(shape, start), start)
    alone = FilterBank.train([train_features[0][3:4]], config, centres=start[3:4])
    scale = float(bank.numerators[0][3].abs().max())
    torch.testing.assert_close(alone.numerators[0][0], bank.numerators[0][3], rtol=1e-5, atol=1e-6 * scale)
    torch.testing.assert_close(alone.denominators[0][0], bank.denominators[0][3])


def test_multilayer_coarse_to_fine_recovers_shift(rng: np.random.Generator) -> None:
    n_cells = 6
    nuclei = Nuclei(rng, n_cells)
    start = grid_positions(n_cells)
    shape = frame_shape(start)
    shifts = rng.uniform(-1.5, 1.5, (n_cells, 2))
    before, after = nuclei.render(shape, start), nuclei.render(shape, start + shifts)
    for radius, norm in ((None, "target"), (3, "target"), (None, "max")):
        config = CFConfig(layer_weights=(1.0, 0.5, 0.2), coarse_to_fine_radius=radius, layer_norm=norm)
        bank = FilterBank.train(three_layers(before, start), config, centres=start)
        assert bank.layer_channels == (1, 2, 1)
        detection = bank.detect(three_layers(after, start), start)
        np.testing.assert_allclose(detection.displacement, shifts, atol=0.25)
        assert detection.layer_peaks.shape == (n_cells, 3)


# ------------------------------------------------------------------------------------------ tracking


def track(
    nuclei: Nuclei,
    trajectory: np.ndarray,
    rng: np.random.Generator,
    config: CFConfig,
    passes: int = 1,
    momentum: bool = False,
) -> np.ndarray:
    """Follow cells along ``trajectory`` (T, N, 2) and return the estimates (T, N, 2).

    Each frame: detect (``passes`` recentring passes, optionally from a constant-velocity prediction), then
    update the filters at the estimate.
    """
    shape = frame_shape(trajectory.reshape(-1, 2), margin=60)
    estimates = [trajectory[0].copy()]
    first = nuclei.render(shape, trajectory[0]) + rng.normal(0, 0.02, shape)
    bank = FilterBank.train(windows(first, estimates[0]), config, centres=estimates[0])
    for truth in trajectory[1:]:
        frame = nuclei.render(shape, truth) + rng.normal(0, 0.02, shape)
        start = estimates[-1]
        if momentum and len(estimates) > 1:
            start = start + (estimates[-1] - estimates[-2])
        estimate, _ = bank.locate(
            lambda centres, image=frame: windows(image, centres), start, iterations=passes
        )
        bank.update(windows(frame, estimate), estimate)
        estimates.append(estimate)
    return np.stack(estimates)


def test_static_cells_do_not_drift(rng: np.random.Generator) -> None:
    nuclei = Nuclei(rng, 2)
    start = grid_positions(2) + np.array([[0.3, -0.2], [-0.45, 0.4]])
    trajectory = np.repeat(start[None], 50, axis=0)
    for rate in (0.01, 0.05):
        estimates = track(nuclei, trajectory, rng, CFConfig(layer_weights=(1.0,), learning_rate=rate))
        assert np.abs(estimates - trajectory).max() < 0.25


def test_steadily_moving_cell_followed_without_bias(rng: np.random.Generator) -> None:
    nuclei = Nuclei(rng, 2)
    velocity = np.array([[1.3, -0.7], [-0.9, 1.1]])
    start = grid_positions(2, spacing=96.0) + 20.0
    trajectory = start[None] + np.arange(30)[:, None, None] * velocity[None]
    config = CFConfig(layer_weights=(1.0,), learning_rate=0.05)
    # Recentring once per frame, or starting from a constant-velocity prediction, follows without bias.
    for passes, momentum in ((2, False), (1, True)):
        error = track(nuclei, trajectory, rng, config, passes=passes, momentum=momentum) - trajectory
        assert np.abs(error).max() < 0.25
        assert np.abs(error[10:].mean(axis=0)).max() < 0.1
    # A single pass from the previous position lags (the taper bias feeds into the updates) but stays
    # within one frame of motion.
    error = track(nuclei, trajectory, rng, config) - trajectory
    assert np.abs(error).max() < np.abs(velocity).max()


def test_learning_rate_zero_keeps_and_one_retrains(rng: np.random.Generator) -> None:
    nuclei = Nuclei(rng, 3)
    start = grid_positions(3)
    shape = frame_shape(start)
    config = CFConfig(layer_weights=(1.0,))
    first = windows(nuclei.render(shape, start), start)
    moved = start + rng.uniform(-2, 2, (3, 2))
    second = windows(nuclei.render(shape, moved) + rng.normal(0, 0.05, shape), moved)

    bank = FilterBank.train(first, config, centres=start)
    frozen = [t.clone() for t in bank.numerators], [t.clone() for t in bank.denominators]
    bank.update(second, moved, learning_rate=0.0)
    torch.testing.assert_close(bank.numerators[0], frozen[0][0], rtol=0, atol=0)
    torch.testing.assert_close(bank.denominators[0], frozen[1][0], rtol=0, atol=0)

    bank.update(second, moved, learning_rate=1.0)
    retrained = FilterBank.train(second, config, centres=moved)
    torch.testing.assert_close(bank.numerators[0], retrained.numerators[0])
    torch.testing.assert_close(bank.denominators[0], retrained.denominators[0])

    # Per-cell rates: cell 1 frozen, the others blended halfway.
    bank = FilterBank.train(first, config, centres=start)
    bank.update(second, moved, learning_rate=np.array([0.5, 0.0, 0.5]))
    torch.testing.assert_close(bank.numerators[0][1], frozen[0][0][1], rtol=0, atol=0)
    halfway = 0.5 * (frozen[0][0][0] + retrained.numerators[0][0])
    torch.testing.assert_close(bank.numerators[0][0], halfway)


def test_larger_lambda_lowers_peak_and_filter_norm(rng: np.random.Generator) -> None:
    nuclei = Nuclei(rng, 4)
    start = grid_positions(4)
    shape = frame_shape(start)
    features = windows(nuclei.render(shape, start), start)
    peaks, norms = [], []
    for lam in (1e-3, 1e-1, 10.0):
        bank = FilterBank.train(features, CFConfig(layer_weights=(1.0,), lambda_rel=lam))
        peaks.append(bank.detect(features).peak)
        norms.append(bank.filters()[0].abs().pow(2).sum(dim=(1, 2, 3)).numpy())
    assert np.all(np.diff(np.stack(peaks), axis=0) < 0)
    assert np.all(np.diff(np.stack(norms), axis=0) < 0)


def test_feature_scale_does_not_change_detection(rng: np.random.Generator) -> None:
    nuclei = Nuclei(rng, 4)
    start = grid_positions(4)
    shape = frame_shape(start)
    shifts = rng.uniform(-3, 3, (4, 2))
    train_features = windows(nuclei.render(shape, start), start)
    search = windows(nuclei.render(shape, start + shifts), start)
    config = CFConfig(layer_weights=(1.0,), lambda_rel=0.05)
    reference = FilterBank.train(train_features, config).detect(search)
    for train_scale, search_scale in ((1000.0, 1000.0), (1e-3, 1.0), (1.0, 50.0)):
        bank = FilterBank.train([train_features[0] * train_scale], config)
        scaled = bank.detect([search[0] * search_scale])
        np.testing.assert_allclose(scaled.displacement, reference.displacement, atol=1e-3)
        np.testing.assert_allclose(scaled.psr, reference.psr, rtol=1e-3)


# ------------------------------------------------------------------------------------------ confidence


def test_psr_high_on_target_low_on_noise(rng: np.random.Generator) -> None:
    n_cells = 6
    nuclei = Nuclei(rng, n_cells)
    start = grid_positions(n_cells)
    shape = frame_shape(start)
    frame = nuclei.render(shape, start)
    bank = FilterBank.train(windows(frame, start), CFConfig(layer_weights=(1.0,)))
    on_target = bank.detect(windows(frame + rng.normal(0, 0.05, shape), start + rng.uniform(-2, 2, (6, 2))))
    noise = bank.detect(windows(rng.normal(0, 1.0, shape), start))
    assert on_target.psr.min() > 15.0
    assert noise.psr.max() < 10.0
    assert on_target.psr.min() > 2 * noise.psr.max()
    assert on_target.peak.min() > 2 * noise.peak.max()
    assert on_target.peak.max() < 1.2  # in units of the Gaussian target's peak


def test_value_at_samples_the_response(rng: np.random.Generator) -> None:
    nuclei = Nuclei(rng, 3)
    start = grid_positions(3) + np.array([[0.3, -0.4], [0.0, 0.0], [-0.2, 0.45]])
    shape = frame_shape(start)
    bank = FilterBank.train(windows(nuclei.render(shape, start), start), CFConfig(layer_weights=(1.0,)))
    shifts = np.array([[2.0, -1.0], [0.0, 0.0], [-1.0, 2.0]])
    detection = bank.detect(windows(nuclei.render(shape, start + shifts), start), start, keep_response=True)
    at_peak = detection.value_at(detection.displacement)
    at_far = detection.value_at(detection.displacement + 8.0)
    np.testing.assert_allclose(at_peak, detection.peak, atol=0.05)
    assert np.all(at_far < 0.5 * at_peak)
    with pytest.raises(ValueError, match="keep_response"):
        bank.detect(windows(nuclei.render(shape, start), start)).value_at(np.zeros((3, 2)))


def test_precomputed_spectra_give_the_same_detection_and_update(rng: np.random.Generator) -> None:
    n_cells = 5
    nuclei = Nuclei(rng, n_cells)
    start = grid_positions(n_cells)
    shape = frame_shape(start)
    config = CFConfig(layer_weights=(1.0,))
    bank = FilterBank.train(windows(nuclei.render(shape, start), start), config, centres=start)
    moved = start + rng.uniform(-2.0, 2.0, (n_cells, 2))
    search = windows(nuclei.render(shape, moved), start)
    # Every window searched by two filters (rows 0 and 1 share window 2): index the spectra like windows.
    rows = np.array([0, 1, 2, 3, 4, 0])
    picks = np.array([0, 2, 2, 3, 4, 2])
    direct = bank.detect([search[0][picks]], start[picks], index=rows)
    spectra = bank.spectra(search)
    shared = bank.detect(None, start[picks], index=rows, spectra=[spectra[0][picks]])
    np.testing.assert_allclose(shared.displacement, direct.displacement, atol=1e-5)
    np.testing.assert_allclose(shared.peak, direct.peak, rtol=1e-5)
    by_features = bank.select(np.arange(n_cells))
    by_features.update(search, moved, learning_rate=0.3)
    by_spectra = bank.select(np.arange(n_cells))
    by_spectra.update(None, moved, learning_rate=0.3, spectra=spectra)
    torch.testing.assert_close(by_spectra.numerators[0], by_features.numerators[0])
    with pytest.raises(ValueError, match="exactly one"):
        bank.detect(search, start, spectra=spectra)
    with pytest.raises(ValueError, match="spectra must be complex"):
        bank.detect(None, start[:2], index=[0, 1], spectra=spectra)


def test_weighted_training_is_the_moving_average_in_closed_form(rng: np.random.Generator) -> None:
    # Cell 0 seen at three positions, cell 1 at one: train at the first, update at the others (eta 0.3).
    nuclei = Nuclei(rng, 2)
    start = grid_positions(2)
    shape = frame_shape(start)
    config = CFConfig(layer_weights=(1.0,))
    eta = 0.3
    positions = [start + rng.uniform(-2.0, 2.0, (2, 2)) for _ in range(3)]
    seen = [windows(nuclei.render(shape, p), p) for p in positions]
    chain = FilterBank.train(seen[0], config, centres=positions[0])
    for later, where in zip(seen[1:], positions[1:], strict=True):
        chain.update(later, where, learning_rate=np.array([eta, 0.0]))
    spectra = window_spectra(seen[0] + seen[1] + seen[2], config)  # one layer per frame, stacked below
    stacked = [torch.cat([s[0:1] for s in spectra] + [spectra[0][1:2]])]
    centres = np.stack([positions[0][0], positions[1][0], positions[2][0], positions[0][1]])
    weights = np.array([(1 - eta) ** 2, eta * (1 - eta), eta, 1.0])
    closed = FilterBank.from_spectra(
        stacked, (SIZE, SIZE), config, centres=centres, owner=np.array([0, 0, 0, 1]), weight=weights
    )
    torch.testing.assert_close(closed.numerators[0], chain.numerators[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(closed.denominators[0], chain.denominators[0], atol=1e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="each owning"):
        FilterBank.from_spectra(stacked, (SIZE, SIZE), config, owner=np.array([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="spectra must be complex"):
        FilterBank.from_spectra(stacked, (SIZE + 2, SIZE), config)


def test_max_over_steps_equals_looped_bilinear_samples(rng: np.random.Generator) -> None:
    maps = torch.as_tensor(rng.normal(size=(7, 16, 20)), dtype=torch.float32)
    positions = torch.as_tensor(rng.uniform(-9.0, 9.0, (7, 2)), dtype=torch.float32)
    steps = torch.tensor([[0, 0], [1, 0], [-1, 0], [0, 2], [-2, -1], [2, 2]])
    looped = torch.stack([sample_circular(maps, positions + step.to(torch.float32)) for step in steps])
    torch.testing.assert_close(max_over_steps(maps, positions, steps), looped.amax(dim=0))
    # The disc of radius 0 is the plain bilinear sample.
    centre_only = torch.zeros((1, 2), dtype=torch.int64)
    torch.testing.assert_close(max_over_steps(maps, positions, centre_only), sample_circular(maps, positions))


# ------------------------------------------------------------------------------------------ conventions


def test_window_origin_rounding_convention() -> None:
    centres = np.array([[10.5, 10.49], [-0.5, 3.0], [7.2, -1.7]])
    origins, offsets = window_origins(centres, 40)
    np.testing.assert_array_equal(origins.numpy(), np.array([[11, 10], [0, 3], [7, -2]]) - 20)
    np.testing.assert_allclose(offsets.numpy(), centres - np.array([[11, 10], [0, 3], [7, -2]]), atol=1e-6)
    assert offsets.min() >= -0.5 and offsets.max() < 0.5


def test_gaussian_target_and_signed_index() -> None:
    target = gaussian_target((8, 8), 1.0, torch.tensor([[0.0, 0.0], [0.5, -0.25]]))
    assert target.shape == (2, 1, 8, 8)
    assert target[0, 0, 0, 0] == 1.0 and target[0, 0, 0, 1] == target[0, 0, 0, 7]
    np.testing.assert_array_equal(signed_index(torch.arange(8), 8).numpy(), [0, 1, 2, 3, 4, -3, -2, -1])
    _, subpixel = locate_peaks(target[:, 0])
    np.testing.assert_allclose(subpixel.numpy(), [[0.0, 0.0], [0.5, -0.25]], atol=0.08)


# ------------------------------------------------------------------------------------------ bookkeeping


def test_select_concat_index_and_round_trip(rng: np.random.Generator) -> None:
    n_cells = 5
    nuclei = Nuclei(rng, n_cells)
    start = grid_positions(n_cells)
    shape = frame_shape(start)
    shifts = rng.uniform(-2, 2, (n_cells, 2))
    bank = FilterBank.train(windows(nuclei.render(shape, start), start), CFConfig(layer_weights=(1.0,)))
    search = windows(nuclei.render(shape, start + shifts), start)
    full = bank.detect(search)

    merged = bank.select([3, 4]).concat(bank.select(np.array([True, False, True, False, False])))
    assert merged.n_cells == 4
    reordered = merged.detect([search[0][[3, 4, 0, 2]]])
    np.testing.assert_allclose(reordered.displacement, full.displacement[[3, 4, 0, 2]], atol=1e-5)

    # Two candidate windows per track via index, without duplicating filters.
    index = np.array([1, 1, 4, 4])
    candidates = bank.detect([search[0][index]], index=index)
    np.testing.assert_allclose(candidates.displacement, full.displacement[index], atol=1e-5)

    restored = FilterBank.from_numpy(bank.to_numpy(), bank.config)
    np.testing.assert_allclose(restored.detect(search).displacement, full.displacement, atol=0)

    empty = bank.select([])
    assert empty.n_cells == 0
    assert empty.detect([search[0][:0]]).displacement.shape == (0, 2)
    assert empty.concat(bank).n_cells == n_cells


def test_input_validation(rng: np.random.Generator) -> None:
    features = [torch.randn(3, 2, SIZE, SIZE)]
    with pytest.raises(ValueError, match="layer weights"):
        FilterBank.train(features, CFConfig())  # 4 default weights for 1 layer
    bank = FilterBank.train(features, CFConfig(), layer_weights=(1.0,))
    with pytest.raises(ValueError, match="feature windows"):
        bank.detect([torch.randn(2, 2, SIZE, SIZE)])
    with pytest.raises(ValueError, match="channels"):
        bank.detect([torch.randn(3, 1, SIZE, SIZE)])
    with pytest.raises(ValueError, match="trained on"):
        bank.detect([torch.randn(3, 2, 32, 32)])
    with pytest.raises(ValueError, match="centres"):
        bank.detect(features, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="learning_rate"):
        bank.update(features, learning_rate=1.5)
    with pytest.raises(TypeError, match="list of tensors"):
        bank.detect(features[0])
    with pytest.raises(ValueError, match="index"):
        bank.detect(features, index=[0, 1, 3])
    with pytest.raises(ValueError):
        CFConfig(sigma=-1.0)
    with pytest.raises(ValueError):
        CFConfig(unknown=1)
    assert CFConfig(window=40, padding=2.5).window_for(20.0) == 50


def test_taper_windows_and_tukey_option(rng: np.random.Generator) -> None:
    for size in (40, 41):
        hann = taper_window((size, size), 1.0)
        reference = torch.hann_window(size, periodic=size % 2 == 0)
        torch.testing.assert_close(hann[size // 2], reference)
        assert int(hann[size // 2].argmax()) == size // 2
    assert bool((taper_window((8, 8), 0.0) == 1).all())
    tukey = taper_window((40, 40), 0.5)[20]
    assert bool((tukey[11:30] == 1).all()) and float(tukey[0]) == 0.0
    # A flatter taper is less biased toward the window centre on a single pass.
    nuclei = Nuclei(rng, 1)
    start = np.array([[60.0, 60.0]])
    shape = (120, 120)
    shift = np.array([5.0, -4.0])
    errors = []
    for alpha in (1.0, 0.5):
        config = CFConfig(layer_weights=(1.0,), taper_alpha=alpha)
        bank = FilterBank.train(windows(nuclei.render(shape, start), start), config, centres=start)
        detection = bank.detect(windows(nuclei.render(shape, start + shift), start), start)
        errors.append(np.abs(detection.displacement[0] - shift).max())
    assert errors[1] < 0.25 and errors[1] < errors[0]


def test_bulk_work_in_row_blocks_equals_small_batches(rng: np.random.Generator) -> None:
    n_cells, size = 2 * ROW_BLOCK + 37, 12
    features = [torch.as_tensor(rng.normal(size=(n_cells, 2, size, size)), dtype=torch.float32)]
    centres = rng.uniform(20, 80, (n_cells, 2))
    config = CFConfig(window=size, layer_weights=(1.0,))
    bank = FilterBank.train(features, config, centres=centres)
    tail = slice(n_cells - 5, n_cells)
    alone = FilterBank.train([features[0][tail]], config, centres=centres[tail])
    torch.testing.assert_close(bank.numerators[0][tail], alone.numerators[0])
    moved = [features[0] + 0.1 * torch.as_tensor(rng.normal(size=features[0].shape), dtype=torch.float32)]
    bank.update(moved, centres, learning_rate=0.25)
    alone.update([moved[0][tail]], centres[tail], learning_rate=0.25)
    torch.testing.assert_close(bank.numerators[0][tail], alone.numerators[0])
    torch.testing.assert_close(bank.denominators[0][tail], alone.denominators[0])
    torch.testing.assert_close(bank.spectra(moved)[0][tail], alone.spectra([moved[0][tail]])[0])
    assert [(b.start, b.stop) for b in row_blocks(ROW_BLOCK + 1)] == [
        (0, ROW_BLOCK),
        (ROW_BLOCK, ROW_BLOCK + 1),
    ]
    assert row_blocks(0) == []
