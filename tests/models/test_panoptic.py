"""PanopticSegNet (the default SegNet): shapes, feature alignment, targets, training, fine-tuning, resume."""

import numpy as np
import pytest
import torch

from celltrack.io.annotations import AnnotatedImage
from celltrack.models.panoptic import MAP_NAMES, PanopticConfig, PanopticSegNet
from celltrack.models.panoptic_training import (
    PanopticPatchSampler,
    PanopticSegNetTrainer,
    PanopticTrainingConfig,
    panoptic_loss,
    panoptic_targets,
)
from celltrack.synthetic import generate_movie

TINY = PanopticConfig(widths=(4, 8, 8), nucleus_diameter=12.0)


@pytest.fixture(scope="module")
def tiny():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return PanopticSegNet(TINY).eval()


@pytest.fixture(scope="module")
def images():
    movie = generate_movie(frames=4, height=96, width=96, nuclei=14, seed=5, radius_mean=6.0)
    return [AnnotatedImage(movie.images[t], movie.labels[t].astype(np.int32), "synthetic", f"t{t}")
            for t in range(4)]


def training_config(**update):
    base = dict(network=TINY, patch_size=32, batch_size=4, steps=8, warmup_steps=0, log_every=4,
                validation_fraction=0.0, n_validation_patches=4, progress=False, learning_rate=5e-3)
    return PanopticTrainingConfig(**(base | update))


@pytest.mark.parametrize("shape", [(37, 53), (16, 16), (61, 47)])
def test_maps_and_features_align_with_odd_sized_inputs(tiny, shape):
    frame = np.random.default_rng(0).integers(0, 500, shape).astype(np.uint16)
    maps = tiny.predict_frame(frame)
    assert maps.shape == (len(MAP_NAMES), *shape)
    np.testing.assert_allclose(maps[:3].sum(axis=0), 1.0, atol=1e-5)
    assert ((maps[3] >= 0) & (maps[3] <= 1)).all()
    features = tiny.frame_features(frame)
    assert [f.shape for f in features] == [(c, *shape) for c in tiny.feature_channels]


def test_feature_maps_are_pixel_aligned_with_the_input(tiny):
    # A bright dot moved by (3, 5) px moves every full-resolution feature map by the same amount.
    frame = np.zeros((64, 64), np.float32)
    frame[20, 24] = 1.0
    moved = np.roll(frame, (3, 5), axis=(0, 1))
    x = torch.from_numpy(frame)[None, None]
    y = torch.from_numpy(moved)[None, None]
    with torch.no_grad():
        for a, b in zip(tiny.features(x)[:1], tiny.features(y)[:1], strict=True):
            peak_a = np.unravel_index(int(a[0].abs().sum(0).argmax()), a.shape[-2:])
            peak_b = np.unravel_index(int(b[0].abs().sum(0).argmax()), b.shape[-2:])
            assert (peak_b[0] - peak_a[0], peak_b[1] - peak_a[1]) == (3, 5)


def test_bad_inputs_raise_clear_errors(tiny):
    with pytest.raises(ValueError, match=r"\(N, 1, Y, X\)"):
        tiny(torch.zeros(1, 2, 16, 16))
    with pytest.raises(TypeError, match="float"):
        tiny(torch.zeros(1, 1, 16, 16, dtype=torch.int64))
    with pytest.raises(ValueError, match="positive"):
        tiny.predict_frame(np.zeros((16, 16)), nucleus_diameter=-3.0)
    with pytest.raises(ValueError, match="NaN"):
        tiny.predict_frame(np.full((16, 16), np.nan))


def test_save_and_load_round_trip(tiny, tmp_path):
    folder = tiny.save(tmp_path / "model", weights_dtype="float32")
    loaded = PanopticSegNet.load(folder)
    frame = np.random.default_rng(2).random((40, 40)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict_frame(frame), tiny.predict_frame(frame), atol=1e-6)
    (folder / "weights.pt").write_bytes(b"broken")
    with pytest.raises(ValueError, match="weights.pt"):
        PanopticSegNet.load(folder)


def test_targets_mark_centres_and_part_touching_nuclei():
    mask = np.zeros((20, 30), np.int32)
    mask[5:15, 3:14] = 1
    mask[5:15, 14:25] = 2  # touching along a column
    classes, distance = panoptic_targets(mask)
    assert distance[mask == 0].max() == 0
    for label in (1, 2):
        assert distance[mask == label].max() == pytest.approx(1.0)
    # Where the two touch the distance is at its floor on both sides; centres are at the top.
    assert distance[10, 13] < 0.25 and distance[10, 14] < 0.25
    assert (classes[:, 13] == 1)[5:15].all() and (classes[:, 14] == 1)[5:15].all()


def test_sampler_gives_model_scale_patches_with_size_targets(images):
    config = training_config(augmentation={"wide_scale_probability": 0.0, "scale_range": (1.0, 1.0)})
    sampler = PanopticPatchSampler(images, config)
    batch = sampler.batch(np.random.default_rng(0), 6)
    assert batch["image"].shape == (6, 1, 32, 32)
    inside = torch.isfinite(batch["log_size"])
    assert bool(inside.any())
    # Without zoom the nuclei are rescaled to the model's diameter: log size near 0.
    assert abs(float(batch["log_size"][inside].median())) < 0.35
    assert torch.equal(inside, batch["classes"] != 2)


def test_training_lowers_the_loss(images):
    config = training_config(steps=30, log_every=30, learning_rate=1e-2)
    sampler = PanopticPatchSampler(images, config)
    fixed = sampler.batch(np.random.default_rng(123), 8, augment=False)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        untrained = PanopticSegNet(TINY).eval()
    with torch.no_grad():
        before = float(panoptic_loss(untrained(fixed["image"]), fixed, config)[0])
    model = PanopticSegNetTrainer(config).fit(images)
    with torch.no_grad():
        after = float(panoptic_loss(model(fixed["image"]), fixed, config)[0])
    assert after < 0.9 * before


def test_fine_tuning_from_init_lowers_the_loss_on_new_data(images):
    pretrained = PanopticSegNetTrainer(training_config(steps=20)).fit(images[:2])
    # "New data": brighter, noisier movie of larger nuclei.
    movie = generate_movie(frames=2, height=96, width=96, nuclei=8, seed=9, radius_mean=8.0,
                           texture_strength=0.5)
    new = [AnnotatedImage(movie.images[t], movie.labels[t].astype(np.int32), "new", f"n{t}")
           for t in range(2)]
    config = training_config(steps=20)
    fixed = PanopticPatchSampler(new, config).batch(np.random.default_rng(7), 8, augment=False)
    with torch.no_grad():
        before = float(panoptic_loss(pretrained(fixed["image"]), fixed, config)[0])
    tuned = PanopticSegNetTrainer(config).fit(new, init=pretrained)
    with torch.no_grad():
        after = float(panoptic_loss(tuned(fixed["image"]), fixed, config)[0])
    assert after < before
    assert tuned.training_info["fine_tuned"] is True
    # Batch-norm statistics stay those of the model fine-tuning starts from (a few images would pull them).
    start = {k: v for k, v in pretrained.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    assert start and all(torch.equal(tuned.state_dict()[k], v) for k, v in start.items())
    drifting = PanopticSegNetTrainer(config.model_copy(update={"freeze_norm_statistics": False})).fit(
        new, init=pretrained
    )
    assert not all(torch.equal(drifting.state_dict()[k], v) for k, v in start.items())


def test_resumed_run_equals_an_uninterrupted_one(images, tmp_path):
    whole = PanopticSegNetTrainer(training_config(steps=8)).fit(images, checkpoint_dir=tmp_path / "a")
    assert torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["step"] == 8
    # A run of the same schedule interrupted after its step-4 checkpoint, then resumed to the end.
    trainer = PanopticSegNetTrainer(training_config(steps=8))
    def stop_at_four(log):
        if log.step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer.fit(images, checkpoint_dir=tmp_path / "c", callback=stop_at_four)
    assert torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=False)["step"] == 4
    resumed = PanopticSegNetTrainer(training_config(steps=8)).fit(
        images, checkpoint_dir=tmp_path / "c", resume=True
    )
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_resume_refuses_another_configuration(images, tmp_path):
    PanopticSegNetTrainer(training_config(steps=4)).fit(images, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        PanopticSegNetTrainer(training_config(steps=4, learning_rate=1e-3)).fit(
            images, checkpoint_dir=tmp_path, resume=True
        )
    with pytest.raises(ValueError, match="no checkpoint"):
        PanopticSegNetTrainer(training_config(steps=4)).fit(
            images, checkpoint_dir=tmp_path / "x", resume=True
        )
