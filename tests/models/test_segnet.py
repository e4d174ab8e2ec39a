"""SegNet network, normalisation, tiling and training on tiny synthetic discs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from celltrack.models import (
    BOUNDARY,
    INTERIOR,
    SegNet,
    SegNetConfig,
    SegNetTrainingConfig,
    make_targets,
    mark_contacts,
    normalize_frame,
    tiled_apply,
    train_segnet,
)
from celltrack.models.training import (
    CONTACT_BACKGROUND,
    CONTACT_BOUNDARY,
    AugmentationConfig,
    BestCheckpoint,
    PatchSampler,
    _cosine_factor,
    _weighted_loss,
    dim_objects,
    estimate_nucleus_diameter,
)

torch.set_num_threads(1)


def _model(n_members: int = 2, seed: int = 0) -> SegNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SegNet(SegNetConfig(n_members=n_members)).eval()


def _discs(
    shape: tuple[int, int], n: int, radius: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A uint16 frame with camera offset and its instance mask of ``n`` non-overlapping discs."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, np.int32)
    label = 0
    for _ in range(200):
        if label == n:
            break
        cy, cx = rng.uniform(radius, shape[0] - radius), rng.uniform(radius, shape[1] - radius)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        if (mask[disc] > 0).any():
            continue
        label += 1
        mask[disc] = label
    image = 1000.0 + 400.0 * (mask > 0) + rng.normal(0, 15, shape)
    return image.astype(np.uint16), mask


def test_outputs_and_features_align_with_odd_input() -> None:
    model = _model()
    x = torch.randn(2, 1, 37, 51)
    with torch.inference_mode():
        probs = model.probabilities(x)
        features = model.features(x)
    assert probs.shape == (2, 3, 37, 51)
    assert len(features) == 4
    for layer, channels in zip(features, model.config.channels[:4], strict=True):
        assert layer.shape == (2, channels, 37, 51)


def test_translation_equivariance_on_interior_region() -> None:
    model = _model()
    rng = np.random.default_rng(1)
    base = torch.from_numpy(rng.normal(size=(1, 1, 83, 91)).astype(np.float32))
    dy, dx = 5, 7
    shifted = torch.zeros_like(base)
    shifted[..., dy:, dx:] = base[..., :-dy, :-dx]
    with torch.inference_mode():
        outputs = [model.probabilities(base), *model.features(base)]
        shifted_outputs = [model.probabilities(shifted), *model.features(shifted)]
    r = model.receptive_field // 2 + 1
    for out, out_shifted in zip(outputs, shifted_outputs, strict=True):
        region = out[..., r : 83 - r - dy, r : 91 - r - dx]
        region_shifted = out_shifted[..., r + dy : 83 - r, r + dx : 91 - r]
        torch.testing.assert_close(region_shifted, region, atol=1e-5, rtol=1e-5)


def test_softmax_sums_to_one_and_matches_forward() -> None:
    model = _model()
    x = torch.randn(1, 1, 30, 41)
    with torch.inference_mode():
        probs = model.probabilities(x)
        logits = model(x)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(1, 30, 41), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.softmax(logits, dim=1), probs, atol=1e-5, rtol=1e-5)


def test_ensemble_averages_member_softmax() -> None:
    model = _model(n_members=3)
    x = torch.randn(1, 1, 25, 27)
    with torch.inference_mode():
        per_member = torch.softmax(model.member_logits(x), dim=2)
        probs = model.probabilities(x)
    torch.testing.assert_close(probs, per_member.mean(dim=0), atol=1e-6, rtol=1e-5)
    assert not torch.allclose(per_member[0], per_member[1], atol=1e-3)


def test_inference_path_equals_autograd_path_beyond_one_head_block() -> None:
    model = _model()
    x = torch.randn(1, 1, 131, 133)  # more pixels than one inference block (16384)
    with torch.no_grad():
        fast = model.probabilities(x)
    slow = model.probabilities(x).detach()
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)


def test_logits_at_pixels_match_the_full_map() -> None:
    member = _model(n_members=1).members[0]
    x = torch.randn(2, 1, 21, 23)
    pixels = torch.tensor([[0, 5, 482, 100], [7, 7, 250, 1]])
    with torch.no_grad():
        full = member(x).flatten(2)
        picked = member.logits_at(x, pixels)
    assert picked.shape == (2, 3, 4)
    torch.testing.assert_close(picked, torch.gather(full, 2, pixels[:, None].expand(-1, 3, -1)))


def test_normalize_frame_is_robust_to_bit_depth_and_offset() -> None:
    rng = np.random.default_rng(2)
    values = rng.uniform(0, 1, (40, 50))
    as_uint8 = (values * 200).astype(np.uint8)
    as_uint16 = as_uint8.astype(np.uint16) * 37 + 33000
    np.testing.assert_allclose(normalize_frame(as_uint8), normalize_frame(as_uint16), atol=1e-5)
    norm = normalize_frame(as_uint16)
    assert norm.dtype == np.float32
    assert abs(np.percentile(norm, 1.0)) < 1e-4
    assert abs(np.percentile(norm, 99.8) - 1) < 1e-4
    np.testing.assert_array_equal(normalize_frame(np.full((5, 6), 7, np.uint16)), np.zeros((5, 6)))


def test_normalize_frame_rejects_nan_and_bad_shapes() -> None:
    frame = np.ones((10, 10), np.float32)
    frame[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        normalize_frame(frame)
    with pytest.raises(ValueError, match="2-D"):
        normalize_frame(np.ones((2, 3, 4)))


def test_tiled_inference_equals_whole_frame() -> None:
    model = _model()
    frame, _ = _discs((150, 170), 8, 9, np.random.default_rng(3))
    whole = model.predict_frame(frame, tile_size=1000)
    tiled = model.predict_frame(frame, tile_size=48)
    assert whole.shape == (3, 150, 170)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    features_whole = model.frame_features(frame, tile_size=1000)
    features_tiled = model.frame_features(frame, tile_size=48)
    for a, b in zip(features_tiled, features_whole, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_tiles_without_margin_differ() -> None:
    model = _model(n_members=1)
    image = torch.randn(1, 1, 90, 90)
    with torch.inference_mode():
        (whole,) = tiled_apply(model.probabilities, image, 1000, 0)
        (no_margin,) = tiled_apply(model.probabilities, image, 30, 0)
        (margin,) = tiled_apply(model.probabilities, image, 30, model.default_margin())
    assert not torch.allclose(no_margin, whole, atol=1e-4)
    torch.testing.assert_close(margin, whole, atol=1e-5, rtol=1e-5)


def test_nucleus_diameter_rescales_and_returns_input_shape() -> None:
    model = _model(n_members=1)
    frame, _ = _discs((61, 75), 3, 15, np.random.default_rng(4))
    probs = model.predict_frame(frame, nucleus_diameter=48.0)
    assert probs.shape == (3, 61, 75)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    assert model.scaled_size(frame.shape, 48.0) == (30, 38)
    features = model.frame_features(frame, nucleus_diameter=12.0)
    assert [f.shape[1:] for f in features] == [(61, 75)] * 4


def test_make_targets_separates_touching_objects() -> None:
    mask = np.zeros((12, 20), np.int32)
    mask[2:10, 2:10] = 1
    mask[2:10, 10:18] = 2
    targets = make_targets(mask, boundary_width=1)
    assert (targets[5, 9:11] == BOUNDARY).all()
    assert targets[5, 5] == INTERIOR
    assert (targets[mask == 0] == 2).all()
    wide = make_targets(mask, boundary_width=2)
    assert (wide[5, 8:12] == BOUNDARY).all()
    assert (wide == BOUNDARY).sum() > (targets == BOUNDARY).sum()


def test_mark_contacts_only_between_nearby_nuclei() -> None:
    mask = np.zeros((16, 34), np.int32)
    mask[3:13, 2:10] = 1
    mask[3:13, 10:18] = 2  # touches 1
    mask[3:13, 19:25] = 3  # one background column away from 2
    mask[3:13, 30:34] = 4  # far from everything
    targets = make_targets(mask)
    marked = mark_contacts(targets, mask)
    # Only boundary and background pixels change, and only to their contact codes.
    np.testing.assert_array_equal(marked[targets == INTERIOR], INTERIOR)
    assert set(np.unique(marked[targets == BOUNDARY])) == {BOUNDARY, CONTACT_BOUNDARY}
    assert (marked[5, 9:11] == CONTACT_BOUNDARY).all()  # the shared edge of 1 and 2
    assert marked[8, 18] == CONTACT_BACKGROUND  # the gap column between 2 and 3
    assert marked[8, 2] == BOUNDARY and marked[8, 27] == 2  # outer edge of 1; background far from a pair
    assert not np.isin(marked[:, 29:], [CONTACT_BOUNDARY, CONTACT_BACKGROUND]).any()
    with pytest.raises(ValueError, match="same shape"):
        mark_contacts(targets[:, :5], mask)


def test_contact_weight_raises_the_loss_of_contact_pixels_only() -> None:
    logits = torch.zeros(1, 3, 1, 5)
    logits[0, 0] = 2.0  # every pixel predicted interior
    targets = torch.tensor([[[0, 1, 2, CONTACT_BOUNDARY, CONTACT_BACKGROUND]]])
    plain = torch.tensor([1.0, 2.0, 0.5])
    weights = torch.cat([plain, 4.0 * plain[[BOUNDARY, 2]]])
    as_classes = torch.tensor([[[0, 1, 2, 1, 2]]])
    per_pixel = torch.nn.functional.cross_entropy(logits, as_classes, reduction="none")[0, 0]
    expected = (per_pixel * torch.tensor([1.0, 2.0, 0.5, 8.0, 2.0])).sum() / 13.5
    torch.testing.assert_close(_weighted_loss(logits, targets, weights), expected)
    # Three weights: plain class-weighted cross entropy.
    three = targets.clamp(max=2)
    torch.testing.assert_close(
        _weighted_loss(logits, three, plain), torch.nn.functional.cross_entropy(logits, three, weight=plain)
    )


def test_training_with_contact_weight_records_it_and_learns() -> None:
    rng = np.random.default_rng(12)
    pairs = [_discs((64, 64), 7, 8, rng) for _ in range(3)]
    model = train_segnet(pairs, _tiny_config(max_epochs=2, contact_weight=5.0))
    info = model.training_info
    assert info["config"]["contact_weight"] == 5.0
    assert len(info["class_weights"]) == 3
    assert info["members"][0]["best_validation_loss"] < info["members"][0]["initial_validation_loss"]


def test_dim_objects_lowers_contrast_of_chosen_nuclei_only() -> None:
    rng = np.random.default_rng(11)
    frame, mask = _discs((96, 96), 6, 8, rng)
    image = normalize_frame(frame)
    background = image[mask == 0]
    level = np.median(background)
    config = AugmentationConfig(dim_probability=0.5, dim_range=(0.1, 0.1))
    out = dim_objects(image, mask, np.random.default_rng(0), config)
    contrast_before = np.array([image[mask == k].mean() - level for k in range(1, mask.max() + 1)])
    contrast_after = np.array([out[mask == k].mean() - level for k in range(1, mask.max() + 1)])
    dimmed = contrast_after < 0.5 * contrast_before
    assert dimmed.any() and not dimmed.all()
    np.testing.assert_allclose(contrast_after[dimmed], 0.1 * contrast_before[dimmed], atol=0.02)
    np.testing.assert_allclose(contrast_after[~dimmed], contrast_before[~dimmed], atol=1e-6)
    # Camera noise inside a dimmed nucleus stays at the background's level instead of shrinking 10×.
    inside = np.isin(mask, np.flatnonzero(dimmed) + 1) & (ndimage_erode(mask) > 0)
    assert np.std(out[inside]) > 0.5 * np.std(background)
    unchanged = dim_objects(image, mask, np.random.default_rng(0), AugmentationConfig(dim_probability=0))
    np.testing.assert_array_equal(unchanged, image)


def ndimage_erode(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return np.where(ndimage.binary_erosion(mask > 0, iterations=2), mask, 0)


def test_cosine_schedule_runs_from_one_to_the_floor() -> None:
    assert _cosine_factor(0, 100, 0.02) == pytest.approx(1.0)
    assert _cosine_factor(50, 100, 0.02) == pytest.approx(0.51)
    assert _cosine_factor(100, 100, 0.02) == pytest.approx(0.02)
    assert _cosine_factor(500, 100, 0.02) == pytest.approx(0.02)


def test_estimate_nucleus_diameter() -> None:
    _, mask = _discs((120, 120), 5, 10, np.random.default_rng(5))
    assert estimate_nucleus_diameter(mask) == pytest.approx(20, rel=0.1)
    assert np.isnan(estimate_nucleus_diameter(np.zeros((4, 4), np.int32)))


def _tiny_config(**overrides: object) -> SegNetTrainingConfig:
    settings: dict[str, object] = dict(
        network=SegNetConfig(n_members=1, nucleus_diameter=16.0),
        patch_size=40,
        batch_size=4,
        steps_per_epoch=6,
        max_epochs=4,
        n_validation_patches=8,
        progress=False,
        learning_rate=3e-3,
    )
    settings.update(overrides)
    return SegNetTrainingConfig(**settings)


def test_training_lowers_loss_and_calls_back() -> None:
    rng = np.random.default_rng(6)
    pairs = [_discs((64, 64), 5, 8, rng) for _ in range(4)]
    logs = []
    model = train_segnet(pairs, _tiny_config(), provenance={"source": "synthetic"}, callback=logs.append)
    info = model.training_info["members"][0]
    assert info["best_validation_loss"] < info["initial_validation_loss"]
    assert len(logs) == info["epochs"] >= 1
    assert logs[-1].train_loss < logs[0].train_loss or info["best_epoch"] > 1
    assert model.training_info["data"] == {"source": "synthetic"}
    assert model.training_info["validation_split"] == "pairs"
    assert model.training_info["torch_threads"] == torch.get_num_threads()
    assert info["stopped"] == "max_epochs"
    assert not model.training
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's setting is restored


def test_training_is_seeded_and_single_image_uses_a_strip() -> None:
    rng = np.random.default_rng(7)
    pairs = [_discs((64, 80), 6, 8, rng)]
    config = _tiny_config(max_epochs=2, steps_per_epoch=2)
    first = train_segnet(pairs, config)
    second = train_segnet(pairs, config)
    third = train_segnet(pairs, config.model_copy(update={"seed": 1}))
    assert first.training_info["validation_split"] == "strip"
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    differs = [not torch.equal(a, c) for a, c in zip(first.state_dict().values(), third.state_dict().values(),
                                                     strict=True)]
    assert any(differs)


def test_training_on_all_pixels_with_plateau_schedule() -> None:
    pairs = [_discs((64, 64), 5, 8, np.random.default_rng(9)) for _ in range(3)]
    config = _tiny_config(max_epochs=2, steps_per_epoch=2, pixel_fraction=1.0, lr_schedule="plateau")
    model = train_segnet(pairs, config)
    info = model.training_info["members"][0]
    assert info["epochs"] == 2 and info["best_validation_loss"] < info["initial_validation_loss"]
    assert model.training_info["config"]["lr_schedule"] == "plateau"


def test_training_time_budget_stops_early() -> None:
    pairs = [_discs((64, 64), 5, 8, np.random.default_rng(8)) for _ in range(2)]
    config = _tiny_config(max_epochs=1000, steps_per_epoch=1, max_seconds=1.0, patience=1000)
    model = train_segnet(pairs, config)
    assert model.training_info["members"][0]["stopped"] == "time"
    assert model.training_info["members"][0]["epochs"] < 1000


def test_training_rejects_bad_pairs() -> None:
    image = np.zeros((10, 10), np.uint16)
    with pytest.raises(ValueError, match="same shape"):
        train_segnet([(image, np.zeros((10, 11), np.int32))], _tiny_config())
    with pytest.raises(TypeError, match="integer"):
        train_segnet([(image, np.zeros((10, 10), np.float32))], _tiny_config())


def test_best_checkpoint_keeps_lowest_loss() -> None:
    module = torch.nn.Linear(2, 1)
    checkpoint = BestCheckpoint(patience=2)
    assert checkpoint.update(1.0, module, 1)
    best = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        module.weight.add_(1.0)
    assert not checkpoint.update(1.5, module, 2)
    assert not checkpoint.should_stop
    assert not checkpoint.update(1.2, module, 3)
    assert checkpoint.should_stop
    checkpoint.restore(module)
    torch.testing.assert_close(module.state_dict()["weight"], best["weight"])


def test_blur_augmentation_softens_patches_and_is_off_by_default() -> None:
    rng = np.random.default_rng(5)
    frame, mask = _discs((96, 96), 6, 8, rng)
    image = normalize_frame(frame)
    still = {
        "flips": False, "rotations": False, "scale_range": (1.0, 1.0), "intensity_scale_range": (1.0, 1.0),
        "intensity_offset": 0.0, "gamma_range": (1.0, 1.0), "noise_std_max": 0.0, "dim_probability": 0.0,
    }

    def patch(**augmentation: object) -> tuple[np.ndarray, np.ndarray]:
        sampler = PatchSampler([image], [mask], 48, 1, 1.0, AugmentationConfig(**augmentation))
        return sampler.patch(np.random.default_rng(0), augment=True)

    assert AugmentationConfig().blur_sigma_max == 0  # off by default
    sharp, targets = patch(**still)
    blurred, blurred_targets = patch(**still, blur_sigma_max=2.0)
    np.testing.assert_array_equal(blurred_targets, targets)  # the outlines to learn stay where they are
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.8 * np.abs(np.diff(sharp, axis=1)).mean()
    with pytest.raises(ValueError, match="blur_sigma_max"):
        AugmentationConfig(blur_sigma_max=-1.0)


# Test-time augmentation: each option's group of transforms, as (forward, inverse) on (..., Y, X) arrays.
_TRANSFORMS = {
    "left-right": (lambda a: a[..., ::-1], lambda a: a[..., ::-1]),
    "up-down": (lambda a: a[..., ::-1, :], lambda a: a[..., ::-1, :]),
    "rotation 180": (lambda a: a[..., ::-1, ::-1], lambda a: a[..., ::-1, ::-1]),
    "transpose": (lambda a: np.swapaxes(a, -2, -1), lambda a: np.swapaxes(a, -2, -1)),
    "rotation 90": (lambda a: np.rot90(a, 1, (-2, -1)), lambda a: np.rot90(a, -1, (-2, -1))),
}
_GROUPS = {
    "flip": ["left-right"],
    "flips": ["left-right", "up-down", "rotation 180"],
    "d4": list(_TRANSFORMS),
}


@pytest.mark.parametrize("augmentation", ["flip", "flips", "d4"])
def test_test_time_augmentation_is_equivariant_to_its_transforms(augmentation: str) -> None:
    model = _model()
    frame, _ = _discs((61, 47), 4, 7, np.random.default_rng(5))  # odd, non-square: transposes change shape
    tiled = model.predict_frame(frame, tile_size=24, test_time_augmentation=augmentation)
    whole = model.predict_frame(frame, tile_size=1000, test_time_augmentation=augmentation)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)  # tiles with margins stay exact under TTA
    np.testing.assert_allclose(whole.sum(axis=0), 1.0, atol=1e-5)
    for name in _GROUPS[augmentation]:
        forward, inverse = _TRANSFORMS[name]
        moved = model.predict_frame(
            np.ascontiguousarray(forward(frame)), tile_size=1000, test_time_augmentation=augmentation
        )
        np.testing.assert_allclose(inverse(moved), whole, atol=1e-6, err_msg=name)
        # Without TTA the network itself is not equivariant: the test has teeth.
        plain = model.predict_frame(frame, tile_size=1000)
        plain_moved = model.predict_frame(np.ascontiguousarray(forward(frame)), tile_size=1000)
        assert np.abs(inverse(plain_moved) - plain).max() > 1e-4


def test_test_time_augmentation_averages_mapped_back_outputs_per_image() -> None:
    model = _model()
    x = torch.randn(2, 1, 29, 35)
    with torch.inference_mode():
        plain = model.probabilities(x)
        torch.testing.assert_close(model.augmented_probabilities(x, "none"), plain, atol=0, rtol=0)
        expected = (
            plain
            + model.probabilities(x.flip(-1)).flip(-1)
            + model.probabilities(x.flip(-2)).flip(-2)
            + model.probabilities(x.flip(-2, -1)).flip(-2, -1)
        ) / 4
        flips = model.augmented_probabilities(x, "flips")
        single = model.augmented_probabilities(x[1:], "flips")
        d4 = model.augmented_probabilities(x, "d4")
        transposed = model.augmented_probabilities(x.transpose(-2, -1).contiguous(), "flips")
    torch.testing.assert_close(flips, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(single, flips[1:], atol=1e-6, rtol=1e-5)  # the batch does not mix images
    torch.testing.assert_close(d4, (flips + transposed.transpose(-2, -1)) / 2, atol=1e-6, rtol=1e-5)


def test_test_time_augmentation_rejects_unknown_names() -> None:
    model = _model(n_members=1)
    frame = np.random.default_rng(6).normal(size=(20, 20))
    with pytest.raises(ValueError, match="must be one of 'none', 'flip', 'flips', 'd4', got 'rot90'"):
        model.predict_frame(frame, test_time_augmentation="rot90")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be one of"):
        model.augmented_probabilities(torch.zeros(1, 1, 8, 8), "D4")  # type: ignore[arg-type]


def test_batched_test_time_augmentation_equals_one_copy_at_a_time(monkeypatch) -> None:
    from celltrack.models import segnet as segnet_module

    model = _model()
    x = torch.randn(1, 1, 33, 26)
    with torch.inference_mode():
        one_at_a_time = model.augmented_probabilities(x, "d4")
        monkeypatch.setattr(segnet_module, "_TTA_BATCH_PIXELS_CPU", 4 * x.numel())  # as on a GPU
        batched = model.augmented_probabilities(x, "d4")
    torch.testing.assert_close(batched, one_at_a_time, atol=1e-6, rtol=1e-5)
