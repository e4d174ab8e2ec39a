"""RecogNet self-supervised pre-training: crops at one nucleus size, views, NT-Xent, resumable runs."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from celltrack.io.nuclei_seg import iter_labelled_images, nuclei_seg_sources
from celltrack.models.recognet import RecogNetConfig
from celltrack.models.recognet_pretrain import (
    NeighbourBatches,
    NucleusCropsConfig,
    PretrainConfig,
    ViewAugmentation,
    build_nucleus_crops,
    image_nucleus_crops,
    nt_xent_loss,
    pretrain_recognet,
    random_views,
)
from celltrack.synthetic import generate_movie

torch.set_num_threads(1)

TINY = RecogNetConfig(
    crop_size=16, channels=(4, 4, 8, 8, 8, 8), fc_width=32, n_identities=4, embedding_size=16, dropout=0.0
)
IDENTITY_VIEW = ViewAugmentation(
    max_shift=0.0,
    scale_range=(1.0, 1.0),
    rotate=False,
    gain_range=(1.0, 1.0),
    gamma_range=(1.0, 1.0),
    max_offset=0.0,
    max_blur=0.0,
    max_noise=0.0,
)


@pytest.fixture(scope="module")
def crops():
    """Every nucleus of a few synthetic frames, as still images (radius ~6 px -> rescaled to 8 px nuclei)."""
    movie = generate_movie(frames=3, height=128, width=128, nuclei=25, radius_mean=6.0, seed=5)
    items = [(f"synthetic/{t}", movie.images[t], movie.labels[t], 12.0) for t in range(3)]
    return build_nucleus_crops(items, NucleusCropsConfig(model_diameter=8.0, stored_size=32))


def test_crops_are_rescaled_to_the_model_diameter() -> None:
    image = np.zeros((120, 160), np.uint16)
    labels = np.zeros((120, 160), np.uint16)
    yy, xx = np.mgrid[:120, :160]
    for label, (y, x) in enumerate([(40, 40), (80, 120)], start=1):
        disc = (yy - y) ** 2 + (xx - x) ** 2 <= 12**2  # diameter ~24 px
        image[disc] = 200
        labels[disc] = label
    crops, centres = image_nucleus_crops(image, labels, 24.0, NucleusCropsConfig(model_diameter=12.0))
    assert crops.shape == (2, 64, 64) and crops.dtype == np.float16
    np.testing.assert_allclose(centres, [[19.75, 19.75], [39.75, 59.75]], atol=0.01)
    # the nucleus is now ~12 px wide in the middle of its crop
    width = (crops[0, 32] > 0.5).sum()
    assert 10 <= width <= 14
    with pytest.raises(ValueError, match="diameter"):
        image_nucleus_crops(image, labels, 0.0)
    with pytest.raises(ValueError, match="shapes"):
        image_nucleus_crops(image, labels[:10], 24.0)


def test_views_without_augmentation_are_the_centre_crop(crops) -> None:
    stored = torch.from_numpy(crops.crops[:5].astype(np.float32))
    views = random_views(stored, 16, IDENTITY_VIEW, torch.Generator().manual_seed(0))
    torch.testing.assert_close(views[:, 0], stored[:, 8:24, 8:24], rtol=0, atol=1e-5)
    # random views of a nucleus differ from each other, and from the centre crop
    augmented = random_views(stored, 16, ViewAugmentation(), torch.Generator().manual_seed(0))
    assert augmented.shape == (5, 1, 16, 16)
    assert float((augmented[:, 0] - stored[:, 8:24, 8:24]).abs().mean()) > 0.02
    with pytest.raises(ValueError, match="at least"):
        random_views(stored, 40, IDENTITY_VIEW, torch.Generator())


def test_nt_xent_prefers_matching_views() -> None:
    generator = torch.Generator().manual_seed(1)
    first = torch.nn.functional.normalize(torch.randn(8, 16, generator=generator), dim=1)
    noisy = torch.nn.functional.normalize(first + 0.1 * torch.randn(8, 16, generator=generator), dim=1)
    matched = nt_xent_loss(first, noisy, 0.2)
    shuffled = nt_xent_loss(first, noisy[torch.roll(torch.arange(8), 1)], 0.2)
    assert float(matched) < float(shuffled) - 1.0
    with pytest.raises(ValueError, match="equal"):
        nt_xent_loss(first, noisy[:4], 0.2)


def test_neighbour_batches_hold_groups_of_close_nuclei(crops) -> None:
    batches = NeighbourBatches(crops, nuclei_per_batch=24, neighbours=4)
    index = batches.indices(np.random.default_rng(0))
    assert len(index) == 24 and len(np.unique(index)) == 24
    # a group is a nucleus and its nearest ones of the same image: closer than random pairs of that image
    group = batches.group_of[index[0]]
    assert len(set(crops.image[group])) == 1
    same_image = np.flatnonzero(crops.image == crops.image[index[0]])
    spread = np.hypot(crops.y[same_image] - crops.y[index[0]], crops.x[same_image] - crops.x[index[0]])
    near = np.hypot(crops.y[group] - crops.y[index[0]], crops.x[group] - crops.x[index[0]])
    assert near.max() <= np.sort(spread)[3] + 1e-6


def _config(**overrides) -> PretrainConfig:
    settings = {
        "network": TINY,
        "steps": 30,
        "nuclei_per_batch": 24,
        "neighbours": 4,
        "learning_rate": 5e-3,
        "warmup_steps": 0,
        "log_every": 5,
        "progress": False,
        "seed": 3,
    }
    return PretrainConfig(**(settings | overrides))


def test_self_supervised_loss_falls_in_a_few_steps(crops) -> None:
    # Mild views: 30 steps of a tiny network suffice to learn them (full augmentation takes longer).
    mild = ViewAugmentation(
        gain_range=(0.9, 1.1),
        gamma_range=(0.9, 1.1),
        scale_range=(0.9, 1.1),
        max_offset=0.02,
        max_blur=0.5,
        max_noise=0.02,
    )
    model = pretrain_recognet(crops, _config(learning_rate=1e-2, augmentation=mild))
    losses = [entry["loss"] for entry in model.training_info["history"]]
    assert len(losses) == 6
    assert np.mean(losses[-2:]) < losses[0] - 0.3, losses
    assert model.config.nucleus_diameter == 8.0 and not model.training


class _StopError(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_weights(crops, tmp_path) -> None:
    config = _config(steps=6, log_every=1, checkpoint_every=2)
    whole = pretrain_recognet(crops, config)

    def stop_at_step_5(entry: dict) -> None:
        if entry["step"] == 5:
            raise _StopError

    path = tmp_path / "pretrain.pt"
    with pytest.raises(_StopError):
        pretrain_recognet(crops, config, checkpoint=path, callback=stop_at_step_5)
    assert torch.load(path, weights_only=False)["step"] == 4
    resumed = pretrain_recognet(crops, config, checkpoint=path)
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    assert [e["step"] for e in resumed.training_info["history"]] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="different configuration"):
        pretrain_recognet(crops, _config(steps=7), checkpoint=path)


def test_nuclei_seg_folders_are_read_and_checked(tmp_path) -> None:
    source = tmp_path / "nuclei-seg" / "SET"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    labels = np.zeros((32, 32), np.uint16)
    labels[5:15, 5:15] = 1
    labels[20:28, 18:30] = 2
    tifffile.imwrite(source / "images" / "a.tif", (labels > 0).astype(np.uint8) * 200)
    tifffile.imwrite(source / "labels" / "a.tif", labels)
    (source / "manifest.csv").write_text("name,median_diameter_px\na,10.5\n")
    assert nuclei_seg_sources(tmp_path / "nuclei-seg") == [source]
    (item,) = list(iter_labelled_images(tmp_path / "nuclei-seg"))
    assert (item.source, item.name, item.median_diameter) == ("SET", "a", 10.5)
    assert item.image.shape == item.labels.shape == (32, 32)
    crops = build_nucleus_crops([item], NucleusCropsConfig(model_diameter=10.5, stored_size=24))
    assert len(crops) == 2 and crops.images == ("SET/a",)
    with pytest.raises(ValueError, match="no manifest.csv"):
        nuclei_seg_sources(tmp_path)
    (source / "manifest.csv").write_text("name,median_diameter_px\na,10.5\nb,12\n")
    with pytest.raises(ValueError, match=r"b\.tif: image listed in the manifest is missing"):
        list(iter_labelled_images(source))
