"""Self-supervised pre-training of RecogNet's trunk on still images of many nuclei (SimCLR / NT-Xent).

Tracked movies hold a few hundred identities; still-image collections (``nuclei-seg``: ≈ 34,000 nuclei of
many cell types, labs and microscopes) hold many more nuclei but no time. Here every nucleus is its own
class: two random views of it (shifted, rotated, mirrored, rescaled, re-exposed, blurred, noised) are
positives, every other crop of the batch a negative (NT-Xent, Chen et al. 2020). Batches are groups of
*neighbouring* nuclei of one image, so the negatives include the look-alikes next door, which is what a
tracker has to tell apart.

Every image is rescaled so that its median nucleus diameter becomes ``model_diameter`` before cropping; the
network then sees nuclei of one size, and :class:`celltrack.features.recognet.RecogNetFeatures` rescales a
movie the same way. Crops are stored larger than the network input so that any rotation and a zoom-out of
the largest ``scale_range`` stay inside real pixels.

Runs are defined by their steps (cosine learning rate over exactly ``steps``) and seeded; a checkpoint file
written every ``checkpoint_every`` steps lets an interrupted run resume and end with the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.spatial import cKDTree
from torch.nn import functional as nnf

from celltrack.graph import measure_detections
from celltrack.models.recognet import RecogNet, RecogNetConfig, save_training_checkpoint, training_record
from celltrack.models.recognet_data import PercentileLevels, crop_nuclei, normalise_frame, rescale_frame
from celltrack.models.training import TrainingRunSettings, _deterministic_algorithms

logger = logging.getLogger(__name__)

__all__ = [
    "NucleusCrops",
    "NucleusCropsConfig",
    "PretrainConfig",
    "ViewAugmentation",
    "build_nucleus_crops",
    "image_nucleus_crops",
    "nt_xent_loss",
    "pretrain_recognet",
    "random_views",
]


class NucleusCropsConfig(PercentileLevels):
    """How nuclei of still images are rescaled and cut (lengths in pixels at the model's scale)."""

    model_diameter: float = Field(16.0, gt=0, description="Median nucleus diameter after rescaling (px).")
    stored_size: int = Field(64, ge=8, description="Side of the stored crops (px), larger than the input.")
    min_area: int = Field(
        12, ge=1, description="Labels smaller than this (px, at the model's scale) are skipped."
    )


@dataclass(frozen=True)
class NucleusCrops:
    """Crops of single nuclei from still images, at the model's nucleus diameter.

    Attributes
    ----------
    crops : numpy.ndarray, shape (M, S, S), float16
        Per-image normalised crops (background 0, bright nuclei about 1) centred on each nucleus.
    image : numpy.ndarray, shape (M,), int32
        Index into :attr:`images`.
    y, x : numpy.ndarray, shape (M,), float32
        Centre in the rescaled image (px): neighbours are found with them.
    images : tuple of str
        ``source/name`` of every image.
    config : NucleusCropsConfig
    """

    crops: np.ndarray
    image: np.ndarray
    y: np.ndarray
    x: np.ndarray
    images: tuple[str, ...]
    config: NucleusCropsConfig

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def summary(self) -> dict[str, Any]:
        """Counts per source, for logs and model provenance."""
        sources = np.array([name.split("/", 1)[0] for name in self.images])
        per_source = {
            str(s): int(np.isin(self.image, np.flatnonzero(sources == s)).sum()) for s in np.unique(sources)
        }
        return {"nuclei": len(self), "images": len(self.images), "per_source": per_source}


def image_nucleus_crops(
    image: np.ndarray, labels: np.ndarray, diameter: float, config: NucleusCropsConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Crops of every labelled nucleus of one image, rescaled to the model's nucleus diameter.

    Parameters
    ----------
    image : numpy.ndarray, shape (Y, X)
        Grey image, any real dtype.
    labels : numpy.ndarray, shape (Y, X)
        Instance labels (0 = background).
    diameter : float
        Median nucleus diameter of the image (px).
    config : NucleusCropsConfig, optional

    Returns
    -------
    crops : numpy.ndarray, shape (N, S, S), float16
    centres : numpy.ndarray, shape (N, 2), float32
        ``(y, x)`` in the rescaled image.
    """
    config = config if config is not None else NucleusCropsConfig()
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim != 2 or image.shape != labels.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} must be equal 2-D shapes")
    if not (math.isfinite(diameter) and diameter > 0):
        raise ValueError(f"diameter must be a positive number of px, got {diameter}")
    normalised = normalise_frame(image, config.background_percentile, config.high_percentile)
    nuclei = measure_detections(labels.astype(np.int64, copy=False), 0)
    factor = config.model_diameter / diameter
    nuclei = nuclei[nuclei["area"].to_numpy() * factor**2 >= config.min_area]
    scaled, centres = rescale_frame(normalised, nuclei[["y", "x"]].to_numpy(np.float64), factor)
    crops = crop_nuclei(scaled, centres, config.stored_size, normalised=True)
    return crops.astype(np.float16), centres.astype(np.float32)


def build_nucleus_crops(
    items: Iterable[Any],
    config: NucleusCropsConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> NucleusCrops:
    """Crops of every nucleus of many images.

    Parameters
    ----------
    items : iterable
        Objects with ``source``, ``name``, ``image``, ``labels`` and ``median_diameter`` attributes (e.g.
        :class:`celltrack.io.nuclei_seg.LabelledImage`), or ``(name, image, labels, diameter)`` tuples.
    config : NucleusCropsConfig, optional
    progress : callable, optional
        Called with each image's name.

    Returns
    -------
    NucleusCrops
    """
    config = config if config is not None else NucleusCropsConfig()
    crops, image_index, ys, xs, names = [], [], [], [], []
    for item in items:
        if isinstance(item, tuple):
            name, image, labels, diameter = item
        else:
            name = f"{item.source}/{item.name}"
            image, labels, diameter = item.image, item.labels, item.median_diameter
        if progress is not None:
            progress(name)
        part, centres = image_nucleus_crops(image, labels, diameter, config)
        if not len(part):
            continue
        crops.append(part)
        image_index.append(np.full(len(part), len(names), np.int32))
        ys.append(centres[:, 0])
        xs.append(centres[:, 1])
        names.append(str(name))
    if not crops:
        raise ValueError("no labelled nuclei in the images given; check the label images")
    return NucleusCrops(
        crops=np.concatenate(crops),
        image=np.concatenate(image_index),
        y=np.concatenate(ys),
        x=np.concatenate(xs),
        images=tuple(names),
        config=config,
    )


# ---------------------------------------------------------------------------- augmentation
class ViewAugmentation(BaseModel):
    """Random views of one nucleus that should keep its identity (intensities of normalised crops)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_shift: float = Field(3.0, ge=0, description="Max shift of the crop centre (px).")
    scale_range: tuple[float, float] = Field((0.8, 1.25), description="Zoom factor range (log-uniform).")
    rotate: bool = Field(True, description="Random rotation (any angle) and mirror.")
    gain_range: tuple[float, float] = Field((0.6, 1.6), description="Intensity gain range (log-uniform).")
    gamma_range: tuple[float, float] = Field((0.7, 1.4), description="Gamma of the positive part.")
    max_offset: float = Field(0.1, ge=0, description="Max additive intensity offset.")
    max_blur: float = Field(1.5, ge=0, description="Max Gaussian blur sigma (px).")
    max_noise: float = Field(0.05, ge=0, description="Max std of additive Gaussian noise.")

    @model_validator(mode="after")
    def _ranges(self) -> ViewAugmentation:
        for name in ("scale_range", "gain_range", "gamma_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(low, high)}")
        return self


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _blur(views: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) with one sigma per view (0: unchanged)."""
    radius = max(1, math.ceil(3 * float(sigma.max()))) if len(sigma) else 1
    steps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (steps[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)
    n = views.shape[0]
    flat = views.reshape(1, n, *views.shape[-2:])
    flat = nnf.conv2d(
        nnf.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel[:, None, :, None], groups=n
    )
    flat = nnf.conv2d(
        nnf.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=n
    )
    return flat.reshape(views.shape)


def random_views(
    stored: torch.Tensor, crop_size: int, augmentation: ViewAugmentation, generator: torch.Generator
) -> torch.Tensor:
    """One random view of every stored crop, cut at the network's input size.

    Parameters
    ----------
    stored : torch.Tensor, shape (B, S, S)
        Stored (larger) crops, float.
    crop_size : int
        Side of the views (px), at most ``S``.
    augmentation : ViewAugmentation
    generator : torch.Generator
        CPU generator: the same state gives the same views.

    Returns
    -------
    torch.Tensor, shape (B, 1, crop_size, crop_size), float32
    """
    if stored.ndim != 3 or stored.shape[1] != stored.shape[2]:
        raise ValueError(f"stored crops must have shape (B, S, S), got {tuple(stored.shape)}")
    n, side = stored.shape[0], stored.shape[-1]
    if crop_size > side:
        raise ValueError(f"views of {crop_size} px need stored crops of at least that, got {side}")
    aug = augmentation
    stored = stored.to(torch.float32)
    log_low, log_high = (math.log(v) for v in aug.scale_range)
    zoom = torch.exp(_uniform(generator, n, log_low, log_high))
    if aug.rotate:
        angle = _uniform(generator, n, 0.0, 2 * math.pi)
        mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    else:
        angle, mirror = torch.zeros(n), torch.ones(n)
    shift = _uniform(generator, 2 * n, -aug.max_shift, aug.max_shift).reshape(n, 2)
    # affine_grid maps output coordinates in [-1, 1] to input ones: crop_size / side of the stored crop.
    extent = zoom * crop_size / side
    cos, sin = torch.cos(angle) * extent, torch.sin(angle) * extent
    theta = torch.stack(
        [
            torch.stack([cos * mirror, -sin, shift[:, 1] * 2 / side], dim=1),
            torch.stack([sin * mirror, cos, shift[:, 0] * 2 / side], dim=1),
        ],
        dim=1,
    )
    grid = nnf.affine_grid(theta, [n, 1, crop_size, crop_size], align_corners=False)
    views = nnf.grid_sample(stored[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if aug.max_blur > 0:
        views = _blur(views, _uniform(generator, n, 0.0, aug.max_blur))
    gamma = torch.exp(_uniform(generator, n, *(math.log(v) for v in aug.gamma_range)))[:, None, None, None]
    positive = views.clamp_min(0)
    views = positive.pow(gamma) + (views - positive)
    gain = torch.exp(_uniform(generator, n, *(math.log(v) for v in aug.gain_range)))[:, None, None, None]
    offset = _uniform(generator, n, -aug.max_offset, aug.max_offset)[:, None, None, None]
    views = views * gain + offset
    if aug.max_noise > 0:
        noise = _uniform(generator, n, 0.0, aug.max_noise)[:, None, None, None]
        views = views + noise * torch.randn(views.shape, generator=generator)
    return views.contiguous()


def nt_xent_loss(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR): row ``i`` of ``first`` and of ``second`` are positives, all other rows negatives.

    Parameters
    ----------
    first, second : torch.Tensor, shape (B, E)
        L2-normalised embeddings of two views of the same B nuclei.
    temperature : float

    Returns
    -------
    torch.Tensor
        Scalar mean cross-entropy over the 2B anchors.
    """
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(
            f"both views need equal (B, E) shapes, got {tuple(first.shape)}, {tuple(second.shape)}"
        )
    n = first.shape[0]
    both = torch.cat([first, second])
    similarity = both @ both.T / temperature
    similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=both.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(both.device)
    return nnf.cross_entropy(similarity, target)


# ---------------------------------------------------------------------------- training
class PretrainConfig(TrainingRunSettings):
    """Parameters of :func:`pretrain_recognet` (lengths in pixels at the model's nucleus diameter)."""

    model_config = ConfigDict(extra="forbid")

    network: RecogNetConfig = Field(default_factory=RecogNetConfig, description="Architecture to train.")
    steps: int = Field(4000, ge=1, description="Optimiser steps (cosine decay over exactly these).")
    nuclei_per_batch: int = Field(128, ge=2, description="Nuclei per batch (two views each).")
    neighbours: int = Field(8, ge=1, description="Nuclei per group: a random nucleus and its nearest ones.")
    temperature: float = Field(0.2, gt=0, description="NT-Xent temperature.")
    augmentation: ViewAugmentation = Field(default_factory=ViewAugmentation)
    learning_rate: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(100, ge=0, description="Linear learning-rate warm-up.")
    weight_decay: float = Field(1e-4, ge=0)
    checkpoint_every: int = Field(200, ge=1, description="Steps between checkpoint writes.")
    log_every: int = Field(50, ge=1, description="Steps averaged into one history entry.")
    seed: int = Field(0, description="Seeds weights, batches and views.")


class NeighbourBatches:
    """Batches of groups of neighbouring nuclei: a random nucleus and its nearest ones in the same image."""

    def __init__(self, crops: NucleusCrops, nuclei_per_batch: int, neighbours: int) -> None:
        self.crops = crops
        self.groups = max(1, nuclei_per_batch // neighbours)
        self.size = nuclei_per_batch
        self.neighbours = neighbours
        self.members: list[np.ndarray] = []
        order = np.argsort(crops.image, kind="stable")
        bounds = np.searchsorted(crops.image[order], np.arange(len(crops.images) + 1))
        self.group_of = np.empty((len(crops), neighbours), np.int64)
        for i in range(len(crops.images)):
            rows = order[bounds[i] : bounds[i + 1]]
            if not len(rows):
                continue
            k = min(neighbours, len(rows))
            points = np.stack([crops.y[rows], crops.x[rows]], 1)
            _, nearest = cKDTree(points).query(points, k=k)
            nearest = np.asarray(nearest).reshape(len(rows), k)
            # Images with fewer nuclei than a group repeat their nearest ones; duplicates are dropped.
            padded = np.concatenate([nearest, np.repeat(nearest[:, :1], neighbours - k, axis=1)], axis=1)
            self.group_of[rows] = rows[padded]

    def indices(self, rng: np.random.Generator) -> np.ndarray:
        """Distinct crop indices of one batch (at most ``nuclei_per_batch``)."""
        seeds = rng.integers(len(self.crops), size=self.groups * 2)
        chosen = np.unique(self.group_of[seeds].ravel(), return_index=True)
        ordered = chosen[0][np.argsort(chosen[1])]
        return ordered[: self.size]


def _learning_rate_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def pretrain_recognet(
    crops: NucleusCrops,
    config: PretrainConfig | None = None,
    *,
    checkpoint: str | Path | None = None,
    provenance: Mapping[str, Any] | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> RecogNet:
    """Pre-train a RecogNet trunk (and its embedding head) with NT-Xent on random views of nuclei.

    Parameters
    ----------
    crops : NucleusCrops
        Stored crops (:func:`build_nucleus_crops`).
    config : PretrainConfig, optional
    checkpoint : path, optional
        File written every ``checkpoint_every`` steps; when it exists the run resumes from it (same
        config required) and ends with the weights of an uninterrupted run.
    provenance : mapping, optional
        JSON-serialisable description of the data, stored in ``training_info``.
    callback : callable, optional
        Called with every history entry (``step``, ``loss``, ``learning_rate``, ``seconds``).

    Returns
    -------
    RecogNet
        In eval mode, ``config.nucleus_diameter`` set to the crops' model diameter.
    """
    config = config or PretrainConfig()
    if not isinstance(crops, NucleusCrops):
        raise TypeError(f"pretrain_recognet expects NucleusCrops, got {type(crops).__name__}")
    if len(crops) < 2:
        raise ValueError("pre-training needs at least two nuclei")
    network = config.network.model_copy(
        update={
            "nucleus_diameter": crops.config.model_diameter,
            "background_percentile": crops.config.background_percentile,
            "high_percentile": crops.config.high_percentile,
        }
    )
    started = time.monotonic()
    seeds = np.random.SeedSequence(config.seed).spawn(3)
    torch_seed = int(seeds[2].generate_state(1, np.uint64)[0] % (2**63))
    with torch.random.fork_rng(devices=[]), _deterministic_algorithms(config.deterministic):
        torch.manual_seed(torch_seed)
        model = RecogNet(network).to(config.device)
    # Input centring and scale from the crops themselves (the network standardises its input).
    sample = crops.crops[:: max(1, len(crops) // 2000)].astype(np.float32)
    mean = float(sample.mean())
    scale = float(np.percentile(np.abs(sample - mean), 99.9)) or 1.0
    model.config = model.config.model_copy(update={"input_mean": mean, "input_scale": scale})
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    rng = np.random.default_rng(seeds[0])
    generator = torch.Generator().manual_seed(int(seeds[1].generate_state(1, np.uint64)[0] % (2**63)))
    batches = NeighbourBatches(crops, config.nuclei_per_batch, config.neighbours)
    history: list[dict[str, float]] = []
    step = 0
    elapsed_before = 0.0
    path = Path(checkpoint) if checkpoint is not None else None
    torch_state = None
    losses: list[float] = []
    if path is not None and path.is_file():
        state = torch.load(path, weights_only=False)
        if state["config"] != config.model_dump(mode="json"):
            raise ValueError(f"{path}: checkpoint of a different configuration; delete it or use another")
        model.config = RecogNetConfig.model_validate(state["network"])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        generator.set_state(state["generator"])
        history, step, elapsed_before = state["history"], state["step"], state["seconds"]
        torch_state, losses = state["torch_rng"], state["losses"]
        logger.info("resuming pre-training at step %d of %d from %s", step, config.steps, path)
    stored = torch.from_numpy(crops.crops)
    size = network.crop_size
    with _deterministic_algorithms(config.deterministic), torch.random.fork_rng(devices=[]):
        # Dropout masks: the global generator, forked, seeded once and carried across resumes.
        torch.manual_seed(torch_seed)
        if torch_state is not None:
            torch.set_rng_state(torch_state)
        model.train()
        while step < config.steps:
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate * _learning_rate_factor(
                    step, config.warmup_steps, config.steps
                )
            index = batches.indices(rng)
            batch = stored[torch.from_numpy(index)]
            views = torch.cat(
                [random_views(batch, size, config.augmentation, generator) for _ in range(2)]
            ).to(model.device)
            embedding = model(views).embedding
            loss = nt_xent_loss(*embedding.split(len(index)), config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            entry = None
            if step % config.log_every == 0 or step == config.steps:
                entry = {
                    "step": step,
                    "loss": float(np.mean(losses)),
                    "learning_rate": float(optimizer.param_groups[0]["lr"]),
                    "seconds": elapsed_before + time.monotonic() - started,
                }
                losses = []
                history.append(entry)
                logger.info(
                    "pre-training step %d: NT-Xent %.4f (%.0f s)", step, entry["loss"], entry["seconds"]
                )
            if path is not None and (step % config.checkpoint_every == 0 or step == config.steps):
                save_training_checkpoint(
                    path,
                    {
                        "config": config.model_dump(mode="json"),
                        "network": model.config.model_dump(mode="json"),
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": rng.bit_generator.state,
                        "generator": generator.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "history": history,
                        "losses": losses,
                        "step": step,
                        "seconds": elapsed_before + time.monotonic() - started,
                    },
                )
            if entry is not None and callback is not None:
                callback(entry)
    model.eval()
    model.training_info = {
        **training_record(
            f"{__name__}.pretrain_recognet",
            config,
            torch_seed,
            elapsed_before + time.monotonic() - started,
            provenance,
        ),
        "crops": crops.summary(),
        "crops_config": crops.config.model_dump(mode="json"),
        "history": history,
    }
    return model
