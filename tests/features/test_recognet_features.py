"""``recognet`` features: contract, translation equivariance, alignment, unbiased cf tracking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as nnf

from celltrack.cftrack import CFTracker
from celltrack.features import FeatureExtractor, FullFrameExtractor, crop_windows, from_grid, to_grid
from celltrack.features.recognet import (
    INPUT_LAYER,
    FrameRegions,
    RecogNetFeatures,
    RecogNetFeaturesConfig,
    StudyWindowFeatures,
    extract_recognet_windows,
    principal_axes,
    receptive_radius,
    recognet_feature_maps,
    standardise_layer,
    upsample_aligned,
)
from celltrack.graph import measure_detections
from celltrack.models.recognet import DEFAULT_RECOGNET_PATH, RecogNet, RecogNetConfig
from celltrack.models.recognet_data import normalise_frame
from celltrack.synthetic import drifting_nuclei, static_nuclei

torch.set_num_threads(1)


def nuclei_frame(rng: np.random.Generator, positions: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint16 frame with textured nuclei on a HeLa-like camera offset."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    image = np.zeros(shape)
    texture = np.random.default_rng(11)
    for py, px in positions:
        image += 800.0 * np.exp(-((yy - py) ** 2) / (2 * 6.0**2) - (xx - px) ** 2 / (2 * 4.5**2))
        for by, bx in texture.uniform(-5, 5, (6, 2)):
            image += 400.0 * np.exp(-((yy - py - by) ** 2 + (xx - px - bx) ** 2) / (2 * 2.0**2))
    image += rng.normal(0.0, 15.0, shape)
    return np.clip(image + 33000.0, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def model() -> RecogNet:
    """The shipped study network: trained filters make the tracking tests meaningful, and it loads in ms."""
    return RecogNet.load(DEFAULT_RECOGNET_PATH)


#: The study model's layers, whole (the defaults are chosen for the tracking model).
STUDY_LAYERS = RecogNetFeaturesConfig(layers=(2, 3, 5), layer_weights=(0.5, 1.0, 0.5), components=None)


@pytest.fixture(scope="module")
def extractor(model: RecogNet) -> RecogNetFeatures:
    return RecogNetFeatures(model, STUDY_LAYERS)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def test_contract_and_batched_equals_per_window(
    extractor: RecogNetFeatures, rng: np.random.Generator
) -> None:
    assert isinstance(extractor, FeatureExtractor) and isinstance(extractor, FullFrameExtractor)
    assert extractor.name == "recognet"
    config = extractor.config
    assert extractor.n_layers == len(config.layers) and extractor.layer_weights == config.layer_weights
    assert extractor.layer_channels == tuple(extractor.model.config.channels[i] for i in config.layers)
    # the defaults: input, conv4 and conv6 on 4 principal components each
    assert RecogNetFeatures(extractor.model).layer_channels == (1, 4, 4)
    frame = nuclei_frame(rng, np.array([[40.0, 40.0], [45.0, 100.0]]), (90, 140))
    centres = np.array([[40.2, 39.7], [45.0, 100.0], [0.0, 0.0], [89.0, 139.0], [-30.0, 60.0]])
    layers = extractor.extract_windows(frame, centres, 40)
    assert len(layers) == extractor.n_layers
    for layer, channels in zip(layers, extractor.layer_channels, strict=True):
        assert layer.shape == (5, channels, 40, 40) and layer.dtype == torch.float32
        assert bool(torch.isfinite(layer).all())
    maps = extractor.compute_maps(frame)
    for i in range(len(centres)):
        alone = extractor.windows_from_maps(maps, centres[i : i + 1], 40)
        for batched, single in zip(layers, alone, strict=True):
            # tiles and full maps: the same convolutions over different extents, equal up to rounding
            torch.testing.assert_close(batched[i : i + 1], single, rtol=0, atol=1e-4)
    functional = extract_recognet_windows(frame, centres, 40, model=extractor.model, config=STUDY_LAYERS)
    for a, b in zip(functional, layers, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [w.shape[0] for w in extractor.extract_windows(frame, np.zeros((0, 2)), 40)] == [
        0
    ] * extractor.n_layers


def test_channels_standardised_per_window(model: RecogNet, rng: np.random.Generator) -> None:
    frame = nuclei_frame(rng, np.array([[40.0, 40.0]]), (80, 80))
    extractor = RecogNetFeatures(model, STUDY_LAYERS.model_copy(update={"normalisation": "channel"}))
    for layer in extractor.extract_windows(frame, np.array([[40.0, 40.0], [3.0, 70.0]]), 32):
        mean = layer.mean(dim=(-2, -1))
        std = layer.std(dim=(-2, -1), unbiased=False)
        live = std > 0.5  # channels that are flat in a window (dead ReLU) are all zeros
        np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-4)
        np.testing.assert_allclose(std[live].numpy(), 1.0, atol=1e-4)
        assert bool(live.any(dim=1).all())  # every window keeps some texture


def test_maps_ignore_camera_offset_and_exposure(model: RecogNet, rng: np.random.Generator) -> None:
    frame = nuclei_frame(rng, np.array([[30.0, 30.0], [30.0, 80.0]]), (64, 112)).astype(np.float64)
    darker = (frame - 33000.0) * 0.5 + 500.0
    for a, b in zip(recognet_feature_maps(model, frame), recognet_feature_maps(model, darker), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
        assert a.shape[-2:] == (64, 112)


def test_translated_input_gives_translated_maps(model: RecogNet, rng: np.random.Generator) -> None:
    frame = nuclei_frame(rng, np.array([[50.0, 48.0], [60.0, 90.0], [35.0, 70.0]]), (112, 144))
    layers = (1, 2, 3, 5)  # strides 1, 2, 2, 4: the default layers and a stride-1 one
    base = recognet_feature_maps(model, frame, layers)
    inner = (slice(30, 80), slice(30, 110))  # away from the image border
    for dy, dx in [(4, -8), (8, 4)]:
        # multiples of the deepest stride (4): every layer is exactly equivariant
        shifted = recognet_feature_maps(model, np.roll(frame, (dy, dx), axis=(0, 1)), layers)
        for a, b in zip(base, shifted, strict=True):
            moved = b[:, inner[0].start + dy : inner[0].stop + dy, inner[1].start + dx : inner[1].stop + dx]
            torch.testing.assert_close(moved, a[:, inner[0], inner[1]], rtol=1e-4, atol=1e-4)
    for dy, dx in [(1, 3), (-2, 1), (3, -3)]:
        # sub-stride shifts: deep layers alias a little, but each layer still matches best at the true shift
        shifted = recognet_feature_maps(model, np.roll(frame, (dy, dx), axis=(0, 1)), layers)
        for layer, (a, b) in enumerate(zip(base, shifted, strict=True)):
            template = a[:, inner[0], inner[1]]
            scores = {}
            for sy in range(-5, 6):
                for sx in range(-5, 6):
                    window = b[
                        :, inner[0].start + sy : inner[0].stop + sy, inner[1].start + sx : inner[1].stop + sx
                    ]
                    scores[(sy, sx)] = float(
                        nnf.cosine_similarity(window.flatten(), template.flatten(), dim=0)
                    )
            assert max(scores, key=scores.get) == (dy, dx), f"layer {layer}"
            if layer == 0:
                assert scores[(dy, dx)] > 1 - 1e-5  # stride 1: exact


@pytest.mark.parametrize("stride", [2, 4])
def test_upsampling_keeps_pixel_centres(stride: int) -> None:
    # A stride-s map whose pixel i sits on input pixel s*i, sampled from the ramp f(p) = 3 p + 1.
    n = 9
    values = 3.0 * stride * torch.arange(n, dtype=torch.float32) + 1.0
    maps = (values[:, None] + 0 * values[None, :])[None, None]
    out = upsample_aligned(maps, stride, (stride * (n - 1) + 1, 5))
    expected = 3.0 * torch.arange(stride * (n - 1) + 1, dtype=torch.float32) + 1.0
    torch.testing.assert_close(out[0, 0, :, 0], expected)
    # The naive upsampling the study used shifts the content by (s - 1) / 2 px.
    naive = nnf.interpolate(maps, scale_factor=stride, mode="bilinear", align_corners=False)[0, 0, :, 0]
    interior = slice(stride, stride * (n - 2))
    assert float((naive[interior] - expected[interior]).abs().mean()) == pytest.approx(
        1.5 * (stride - 1), rel=1e-3
    )
    with pytest.raises(ValueError, match="cannot upsample"):
        upsample_aligned(maps, stride, (stride * n + 2, 5))


def test_receptive_radius_matches_the_network() -> None:
    config = RecogNetConfig(channels=(2, 2, 2, 2, 2, 2), fc_width=4, n_identities=2, embedding_size=2)
    torch.manual_seed(0)
    network = RecogNet(config)
    with torch.no_grad():  # positive weights and biases keep every ReLU open: gradients reach the whole field
        for conv in network.convs:
            conv.weight.abs_()
            conv.bias.fill_(0.1)
    for layer in range(6):
        image = torch.randn(1, 1, 97, 97, generator=torch.Generator().manual_seed(layer)).requires_grad_()
        out = network.conv_maps(image, layer + 1)[layer]
        stride = config.layer_strides[layer]
        centre = 48 // stride
        out[0, :, centre, centre].sum().backward()
        rows = torch.nonzero(image.grad[0, 0].abs().sum(1))
        assert int(rows.max() - 48) <= receptive_radius(layer)
        assert int(rows.max() - 48) >= receptive_radius(layer) - 2 * stride  # pools pass one of 3 pixels


def test_border_windows_are_filled_with_empty_field(
    extractor: RecogNetFeatures, rng: np.random.Generator
) -> None:
    frame = nuclei_frame(rng, np.array([[30.0, 30.0]]), (64, 64))
    maps = extractor.compute_maps(frame)
    # A window far outside the image sees only the fill: all channels flat -> standardised to zeros.
    far = extractor.windows_from_maps(maps, np.array([[-200.0, -200.0]]), 24)
    assert all(float(w.abs().max()) == 0.0 for w in far)
    # Noise-free background far from the nucleus has exactly the empty-field value used as fill.
    clean = np.full((96, 96), 33000.0)
    clean[25:35, 25:35] += 800.0
    for layer_maps, fill in zip(extractor.compute_maps(clean), extractor._fill, strict=True):
        corner = crop_windows(layer_maps, np.array([[2.0, 93.0]]), 1)[0, :, 0, 0]
        torch.testing.assert_close(corner, fill, rtol=1e-4, atol=1e-4)


def tracking_error(movie, result) -> np.ndarray:
    table = pd.DataFrame(movie.centroids, columns=["frame", "label", "y", "x"])
    table = table[table["label"].isin(result.labels)].pivot(index="frame", columns="label", values=["y", "x"])
    truth = np.stack(
        [table["y"][list(result.labels)].to_numpy(), table["x"][list(result.labels)].to_numpy()], -1
    )
    return result.positions - truth


@pytest.mark.parametrize("velocity", [(1.5, -2.0), (-3.0, 0.5)])
def test_cf_tracking_has_no_bias_toward_centre_or_origin(extractor: RecogNetFeatures, velocity) -> None:
    movie = drifting_nuclei(velocity=velocity, n=4, frames=10, seed=2)
    initial = measure_detections(movie.labels[0], 0)
    result = CFTracker(extractor).track(movie.images, initial)
    assert np.all(result.lost_at == -1)
    relative = tracking_error(movie, result)
    relative = relative - relative[0]
    # Nuclei wholly inside the image are followed to a pixel. A nucleus leaving the image (one does in the
    # last frames at velocity0, 40 % cut off at the end) is followed by its visible part: with the default
    # per-layer normalisation the estimate then lags up to a few px inside the border.
    areas = np.stack([[(movie.labels[t] == label).sum() for label in result.labels] for t in range(10)])
    inside = areas >= 0.95 * areas[0]
    assert np.abs(relative[inside]).max() < 1.5
    assert np.abs(relative[~inside]).max(initial=0.0) < 6.0
    # A window-centre bias would lag behind the motion; an origin bias would pull toward (0, 0).
    bias = relative[-4:].mean(axis=(0, 1))
    assert np.all(np.abs(bias) < 0.5), bias


def test_static_nuclei_do_not_drift(extractor: RecogNetFeatures) -> None:
    movie = static_nuclei(n=4, frames=10, seed=1)
    result = CFTracker(extractor).track(movie.images, measure_detections(movie.labels[0], 0))
    assert np.all(result.lost_at == -1)
    drift = tracking_error(movie, result)
    assert np.abs(drift[-1] - drift[0]).max() < 0.5


def test_no_fixed_pattern_in_windows_of_an_empty_field(model: RecogNet, extractor: RecogNetFeatures) -> None:
    # The study's recipe: zero padding inside each window imprints the same border pattern on every window,
    # a pattern that matches itself best at zero shift and pins the peak to the window centre.
    empty = np.full((120, 120), 33000, np.uint16)
    centres = np.array([[40.0, 40.0], [80.0, 70.0], [60.0, 60.0]])
    study = StudyWindowFeatures(model).extract_windows(empty, centres, 40)
    assert any(float(w.std()) > 1e-3 for w in study)
    torch.testing.assert_close(study[2][0], study[2][1])  # the same pattern wherever the window is
    # Full-frame maps cropped afterwards: an empty field gives flat windows, standardised to zeros.
    assert all(float(w.abs().max()) == 0.0 for w in extractor.extract_windows(empty, centres, 40))


def test_input_layer_option(model: RecogNet) -> None:
    config = RecogNetFeaturesConfig(layers=(INPUT_LAYER, 1), layer_weights=(1.0, 1.0), components=None)
    extractor = RecogNetFeatures(model, config)
    assert extractor.layer_channels == (1, model.config.channels[1])
    frame = np.full((50, 60), 100.0)
    frame[20:30, 20:30] = 300.0
    intensity = extractor.compute_maps(frame)[0][0]
    torch.testing.assert_close(intensity, model.standardise(torch.from_numpy(normalise_frame(frame))))


def test_bad_config_and_model() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        RecogNetFeaturesConfig(layers=(1, 3), layer_weights=(1.0,))
    with pytest.raises(ValueError, match="increasing"):
        RecogNetFeaturesConfig(layers=(3, 1), layer_weights=(1.0, 1.0))
    with pytest.raises(TypeError, match="RecogNet"):
        RecogNetFeatures(model=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RecogNet"):
        StudyWindowFeatures(model=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="conv indices"):
        StudyWindowFeatures(layers=(1, 6), layer_weights=(1.0, 1.0))


def test_study_extractor_contract(model: RecogNet, rng: np.random.Generator) -> None:
    study = StudyWindowFeatures(model, layers=(0, 3), layer_weights=(1.0, 0.5))
    assert isinstance(study, FeatureExtractor) and not isinstance(study, FullFrameExtractor)
    assert study.layer_channels == (model.config.channels[0], model.config.channels[3])
    frame = nuclei_frame(rng, np.array([[40.0, 40.0]]), (80, 80))
    layers = study.extract_windows(frame, np.array([[40.0, 40.0], [10.0, 70.0]]), 32)
    assert [tuple(w.shape) for w in layers] == [(2, c, 32, 32) for c in study.layer_channels]
    # Per window, not per frame: a window's features do not depend on the other windows.
    alone = study.extract_windows(frame, np.array([[10.0, 70.0]]), 32)
    for both, single in zip(layers, alone, strict=True):
        torch.testing.assert_close(both[1:], single)
    with pytest.raises(ValueError, match="2-D"):
        study.extract_windows(np.zeros((2, 8, 8)), np.zeros((1, 2)), 8)


def test_layer_normalisation_keeps_quiet_channels_quiet(model: RecogNet, rng: np.random.Generator) -> None:
    generator = torch.Generator().manual_seed(0)
    loud = torch.randn(2, 1, 16, 16, generator=generator) + 5.0
    quiet = 0.01 * torch.randn(2, 1, 16, 16, generator=generator) + 3.0
    out = standardise_layer(torch.cat([loud, quiet], dim=1))
    torch.testing.assert_close(out.mean(dim=(-2, -1)), torch.zeros(2, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.pow(2).mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-5, rtol=0)
    ratio = out[:, 1].std(dim=(-2, -1)) / out[:, 0].std(dim=(-2, -1))
    expected = quiet.std(dim=(-2, -1)) / loud.std(dim=(-2, -1))
    torch.testing.assert_close(ratio, expected[:, 0], rtol=1e-4, atol=0)
    assert float(standardise_layer(torch.full((1, 3, 8, 8), 7.0)).abs().max()) == 0.0
    # In the extractor: per-channel standardising raises the quiet channel, per-layer does not.
    frame = nuclei_frame(rng, np.array([[40.0, 40.0]]), (80, 80))
    centre = np.array([[40.0, 40.0]])
    layered = RecogNetFeatures(model, STUDY_LAYERS.model_copy(update={"normalisation": "layer"}))
    for by_layer, by_channel in zip(
        layered.extract_windows(frame, centre, 32),
        RecogNetFeatures(model, STUDY_LAYERS.model_copy(update={"normalisation": "channel"})).extract_windows(
            frame, centre, 32
        ),
        strict=True,
    ):
        std = by_layer.std(dim=(-2, -1), unbiased=False)[0]
        assert float(std.max() / std[std > 0].min()) > 2.0  # channels keep different energies
        live = by_channel.std(dim=(-2, -1), unbiased=False)[0] > 0.5
        assert bool((live == (std > 0)).all())  # the same channels carry signal


def test_rescaled_maps_stay_aligned_with_the_grid(model: RecogNet) -> None:
    yy, xx = np.mgrid[:96, :128].astype(np.float64)
    frame = 33000.0 + 900.0 * np.exp(-((yy - 40.0) ** 2 + (xx - 70.0) ** 2) / (2 * 9.0**2))
    config = RecogNetFeaturesConfig(layers=(1, 3), layer_weights=(1.0, 0.5), model_diameter=12.0)
    native = RecogNetFeatures(model, config)  # no nucleus diameter given: native scale
    halved = RecogNetFeatures(model, config, nucleus_diameter=24.0)
    close = RecogNetFeatures(model, config, nucleus_diameter=12.3)  # within 5 %: not resized
    assert native.grid_scale == 1.0 and close.grid_scale == 1.0 and halved.grid_scale == pytest.approx(0.5)
    for extractor in (native, halved):
        scale = extractor.grid_scale
        expected = to_grid(np.array([40.0, 70.0]), scale)
        for layer in extractor.compute_maps(frame):
            assert layer.shape[-2:] == (int(96 * scale), int(128 * scale))
            # a round blob: every channel's map is symmetric about the blob's centre, wherever it peaks
            background = layer.flatten(1).median(dim=1).values[:, None, None]
            energy = (layer - background).pow(2).sum(0)
            rows, cols = energy.sum(1), energy.sum(0)
            centre_y = float((rows * torch.arange(len(rows))).sum() / rows.sum())
            centre_x = float((cols * torch.arange(len(cols))).sum() / cols.sum())
            assert abs(centre_y - expected[0]) < scale and abs(centre_x - expected[1]) < scale
    np.testing.assert_allclose(from_grid(to_grid(np.array([[3.0, 7.5]]), 0.3), 0.3), [[3.0, 7.5]])
    with pytest.raises(ValueError, match="nucleus_diameter"):
        RecogNetFeatures(model, config, nucleus_diameter=0.0)
    with pytest.raises(ValueError, match="scale"):
        recognet_feature_maps(model, frame, (1,), scale=-1.0)


@pytest.mark.parametrize(
    ("layers", "diameter", "components"), [((2, 3, 5), None, None), ((-1, 1, 3, 5), 30.0, 4)]
)
def test_batched_windows_equal_per_window_and_full_frame_windows(
    model: RecogNet, rng: np.random.Generator, layers, diameter, components
) -> None:
    config = RecogNetFeaturesConfig(
        layers=layers, layer_weights=(1.0,) * len(layers), model_diameter=16.0, components=components
    )
    extractor = RecogNetFeatures(model, config, nucleus_diameter=diameter)
    frame = nuclei_frame(rng, rng.uniform((10, 10), (290, 410), (14, 2)), (300, 420))
    height, width = extractor.grid_image(frame).shape[-2:]
    centres = np.concatenate(
        [
            rng.uniform((0, 0), (height, width), (7, 2)),
            [[0.0, 0.0], [height - 1.0, width - 1.0], [-6.0, 12.0]],
        ]
    )
    regions = FrameRegions(extractor, frame)
    batched = regions.windows(centres, 32)  # one pass for all windows
    assert regions.passes == 1
    if diameter is None:
        assert regions.full is None and len(regions.tile_origins) >= 1  # a big frame, few windows: tiles
    assert extractor.layer_channels == tuple(w.shape[1] for w in batched)
    # recentred windows a few px away reuse the tiles
    regions.windows(centres + 2.6, 32)
    assert regions.passes == 1 or regions.full is not None
    whole = FrameRegions(extractor, frame)
    whole._full_maps()
    reference = extractor.windows_from_maps(extractor.compute_maps(frame), centres, 32)
    for i in range(len(centres)):
        alone = FrameRegions(extractor, frame).windows(centres[i : i + 1], 32)
        for layer, single in zip(batched, alone, strict=True):
            torch.testing.assert_close(layer[i : i + 1], single, rtol=0, atol=1e-3)
    for a, b, c in zip(batched, whole.windows(centres, 32), reference, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3)
        torch.testing.assert_close(a, c, rtol=0, atol=1e-3)


def test_principal_components_keep_the_strongest_directions(
    model: RecogNet, rng: np.random.Generator
) -> None:
    config = RecogNetFeaturesConfig(layers=(3, 5), layer_weights=(1.0, 1.0), components=3)
    extractor = RecogNetFeatures(model, config)
    assert extractor.projections is None
    frame = nuclei_frame(rng, np.array([[40.0, 40.0], [60.0, 100.0]]), (100, 140))
    windows = extractor.extract_windows(frame, np.array([[40.0, 40.0]]), 32)
    assert [w.shape[1] for w in windows] == [3, 3] == list(extractor.layer_channels)
    fitted = [p.clone() for p in extractor.projections]
    for axes in fitted:
        torch.testing.assert_close(axes.T @ axes, torch.eye(3), rtol=0, atol=1e-5)
    # kept for every later frame: the filters see one basis
    extractor.extract_windows(np.roll(frame, 7, axis=1), np.array([[40.0, 47.0]]), 32)
    for before, after in zip(fitted, extractor.projections, strict=True):
        assert before is not after and torch.equal(before, after)
    # the first axis carries more variance than any single channel
    maps = (
        torch.randn(2, 5, 16, 16, generator=torch.Generator().manual_seed(0))
        * torch.tensor([1.0, 5.0, 1.0, 1.0, 0.5])[None, :, None, None]
    )
    axes = principal_axes(maps, 2)
    assert int(axes[:, 0].abs().argmax()) == 1 and float(axes[1, 0]) > 0


def test_cf_tracking_on_a_coarser_grid_follows_large_nuclei(model: RecogNet) -> None:
    # 36 px nuclei seen by a network trained at 16 px: windows, filters and maps on a 0.44x grid
    movie = drifting_nuclei(
        velocity=(2.0, -3.0), n=3, frames=8, height=220, width=220, seed=4, radius_mean=18.0
    )
    initial = measure_detections(movie.labels[0], 0)
    diameter = float(2 * np.sqrt(np.median(initial["area"]) / np.pi))
    extractor = RecogNetFeatures(
        model, RecogNetFeaturesConfig(model_diameter=16.0), nucleus_diameter=diameter
    )
    assert extractor.grid_scale < 0.6
    result = CFTracker(extractor).track(movie.images, initial)
    areas = np.stack([[(movie.labels[t] == label).sum() for label in result.labels] for t in range(8)])
    inside = areas >= 0.95 * areas[0]
    error = tracking_error(movie, result)
    error = error - error[0]
    assert np.abs(error[inside]).max() < 2.0


def test_the_linker_refuses_features_on_a_rescaled_grid(model: RecogNet) -> None:
    from celltrack.link.appearance import TrackFilters

    scaled = RecogNetFeatures(
        model, STUDY_LAYERS.model_copy(update={"model_diameter": 16.0}), nucleus_diameter=40.0
    )
    with pytest.raises(ValueError, match="rescaled"):
        TrackFilters(scaled, 40, 2.0, 0.01, 0.1, 1.0, torch.device("cpu"))
    TrackFilters(RecogNetFeatures(model, STUDY_LAYERS), 40, 2.0, 0.01, 0.1, 1.0, torch.device("cpu"))
