"""Training of :class:`~celltrack.models.panoptic.PanopticSegNet` on many annotated sources.

The trainer learns from :class:`AnnotatedImage` records — an image, its complete instance mask, the median
nucleus diameter and the name of the source it came from — so loaders of CTC folders and of
``images/`` + ``labels/`` folders only have to produce those.

Every patch is cut from the original image at the scale that gives its nuclei the model's diameter times a
random zoom (so no image is resampled twice), then flipped and rotated, and its targets are computed at the
patch's own scale: the three classes, the inner distance of each nucleus (its distance transform over its
maximum), and the log size ``log(d / model diameter)`` of the nucleus each pixel belongs to, where ``d`` is
the nucleus's equivalent diameter measured on the whole original mask. Intensity augmentation (dimmed
nuclei, blur, gamma, contrast, offset, noise) follows.

Sources are sampled by weight (``source_weights``; by default equally), images within a source by their
area at model scale. All randomness flows from ``seed`` through one generator whose state is saved in every
checkpoint with the weights and the optimiser, so an interrupted run resumed from its checkpoint continues
exactly as it would have run; with torch's deterministic algorithms the same data, config, torch build and
thread count give bit-identical weights.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ConfigDict, Field, model_validator
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries
from torch.nn import functional as nnf
from tqdm import tqdm

from celltrack.io.annotations import AnnotatedImage
from celltrack.models.panoptic import DISTANCE, LOG_SIZE, PanopticConfig, PanopticSegNet
from celltrack.models.segnet import BACKGROUND, BOUNDARY, INTERIOR, N_CLASSES, normalize_frame
from celltrack.models.training import (
    AugmentationConfig,
    TrainingRunSettings,
    _deterministic_algorithms,
    augment_intensity,
    check_image_and_mask,
    dim_objects,
)

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


class PanopticAugmentation(AugmentationConfig):
    """Augmentation of :class:`PanopticSegNetTrainer` patches (zoom relative to the model's diameter)."""

    scale_range: tuple[float, float] = Field(
        (0.7, 1.45), description="Zoom range of most patches (nucleus diameter × zoom after rescaling)."
    )
    wide_scale_range: tuple[float, float] = Field(
        (0.33, 3.0),
        description="Zoom range of a share of patches, so that the size head learns far from the model's "
        "scale and a wrong scale costs the segmentation little.",
    )
    wide_scale_probability: float = Field(0.3, ge=0, le=1, description="Share of patches zoomed widely.")
    blur_sigma_max: float = Field(1.5, ge=0, description="Gaussian blur sigma range [0, this] (px).")
    blur_probability: float = Field(0.3, ge=0, le=1, description="Share of patches blurred.")
    noise_std_max: float = Field(0.08, ge=0, description="Max std of additive Gaussian noise.")
    # Milder than the study model's (0.35, 0.03-0.4): nuclei dimmed to a few % contrast taught it to report
    # faint background specks as nuclei on an unseen cell line, whose truth leaves such nuclei out.
    dim_probability: float = Field(0.2, ge=0, le=1, description="Chance that each nucleus is dimmed.")
    dim_range: tuple[float, float] = Field((0.15, 0.6), description="Contrast factor range of dimmed nuclei.")

    @model_validator(mode="after")
    def _wide(self) -> PanopticAugmentation:
        low, high = self.wide_scale_range
        if not 0 < low <= high:
            raise ValueError(f"wide_scale_range must satisfy 0 < low <= high, got {(low, high)}")
        return self


class PanopticTrainingConfig(TrainingRunSettings):
    """Parameters of :class:`PanopticSegNetTrainer` (lengths at the model's scale)."""

    model_config = ConfigDict(extra="forbid")

    network: PanopticConfig = Field(default_factory=PanopticConfig)
    patch_size: int = Field(128, ge=32, description="Side of the square patches (a multiple of the stride).")
    batch_size: int = Field(8, ge=1)
    steps: int = Field(20000, ge=1, description="Optimiser steps of the run.")
    warmup_steps: int = Field(300, ge=0, description="Linear learning-rate warm-up.")
    learning_rate: float = Field(2e-3, gt=0)
    freeze_norm_statistics: bool = Field(
        True,
        description="When fine-tuning (an init model), batch-norm layers keep the running statistics of the "
        "model they start from instead of drifting to those of a few new images.",
    )
    min_lr_fraction: float = Field(0.02, ge=0, le=1, description="Final learning rate (× learning_rate).")
    weight_decay: float = Field(1e-4, ge=0)
    boundary_width: int = Field(1, ge=1, le=4, description="Boundary band inside each nucleus (px).")
    class_weights: tuple[float, float, float] = Field(
        (1.0, 2.0, 1.0), description="Loss weights of interior, boundary, background."
    )
    distance_weight: float = Field(1.0, ge=0, description="Weight of the inner-distance loss.")
    size_weight: float = Field(0.5, ge=0, description="Weight of the log-size loss.")
    foreground_bias: float = Field(0.6, ge=0, le=1, description="Share of patches centred on a nucleus.")
    source_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Sampling weight per source name; sources not listed weigh 1 (shares are normalised).",
    )
    validation_fraction: float = Field(
        0.05, ge=0, lt=1, description="Share of each source's images held out for the validation loss."
    )
    n_validation_patches: int = Field(64, ge=1)
    log_every: int = Field(250, ge=1, description="Steps between validation losses and checkpoints.")
    augmentation: PanopticAugmentation = Field(default_factory=PanopticAugmentation)
    seed: int = Field(0)

    @model_validator(mode="after")
    def _patch_multiple(self) -> PanopticTrainingConfig:
        if self.patch_size % self.network.stride:
            raise ValueError(
                f"patch_size {self.patch_size} must be a multiple of the network's stride "
                f"{self.network.stride}"
            )
        if any(w < 0 for w in self.source_weights.values()):
            raise ValueError(f"source_weights must be >= 0, got {self.source_weights}")
        return self


# ---------------------------------------------------------------------------- targets
def panoptic_targets(mask: np.ndarray, boundary_width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Three-class targets and the inner distance of an instance mask.

    Parameters
    ----------
    mask : numpy.ndarray, shape (Y, X), integer
        Instance labels, 0 = background.
    boundary_width : int
        Boundary band (px) inside each nucleus.

    Returns
    -------
    classes : numpy.ndarray, shape (Y, X), uint8
        0 interior, 1 boundary, 2 background.
    distance : numpy.ndarray, shape (Y, X), float32
        Each nucleus's Euclidean distance to its own outline divided by its maximum (1 at the centre);
        0 on the background.
    """
    if mask.ndim != 2:
        raise ValueError(f"panoptic_targets expects a 2-D mask, got shape {mask.shape}")
    labels = np.asarray(mask)
    classes = np.full(labels.shape, BACKGROUND, np.uint8)
    inside = labels > 0
    classes[inside] = INTERIOR
    outline = find_boundaries(labels, mode="inner") & inside
    band = outline.copy()
    for _ in range(boundary_width - 1):
        band |= ndi.binary_dilation(band) & inside
    classes[band] = BOUNDARY
    # Distance to the nearest pixel outside the nucleus: outline pixels of touching nuclei count as outside.
    distance = ndi.distance_transform_edt(inside & ~outline).astype(np.float32)
    distance[inside & ~outline] += 1.0
    distance[outline] = 1.0
    n = int(labels.max())
    if n:
        peak = np.zeros(n + 1, np.float32)
        np.maximum.at(peak, labels.ravel(), distance.ravel())
        distance = np.where(inside, distance / np.maximum(peak[labels], 1.0), 0.0).astype(np.float32)
    return classes, distance


def object_diameters(mask: np.ndarray) -> np.ndarray:
    """Equivalent diameter sqrt(4·area/π) of every label value of ``mask`` (index = label; 0 for absent)."""
    areas = np.bincount(np.asarray(mask).ravel().astype(np.int64))
    return np.sqrt(4.0 * areas / math.pi)


# ---------------------------------------------------------------------------- sampling
@dataclass
class _Prepared:
    image: np.ndarray  # normalised float32, original resolution
    mask: np.ndarray  # int32
    foreground: np.ndarray  # flat indices of nucleus pixels
    diameters: np.ndarray  # per label, px at original resolution
    diameter: float  # median nucleus diameter, px
    source: str
    name: str


class PanopticPatchSampler:
    """Random augmented patches (image, classes, distance, log size) from prepared annotated images.

    Parameters
    ----------
    images : sequence of AnnotatedImage
    config : PanopticTrainingConfig
    """

    def __init__(self, images: Sequence[AnnotatedImage], config: PanopticTrainingConfig) -> None:
        if not images:
            raise ValueError("PanopticPatchSampler needs at least one annotated image")
        self.config = config
        net = config.network
        self.items: list[_Prepared] = []
        for item in images:
            mask = np.asarray(item.mask)
            normalised = normalize_frame(item.image, net.low_percentile, net.high_percentile)
            diameters = object_diameters(mask)
            present = diameters[1:][diameters[1:] > 0]
            diameter = item.diameter if math.isfinite(item.diameter) else (
                float(np.median(present)) if present.size else float("nan")
            )
            if not math.isfinite(diameter) or diameter <= 0:
                diameter = net.nucleus_diameter  # an image without nuclei: taken at model scale
            self.items.append(_Prepared(
                normalised, mask.astype(np.int32, copy=False), np.flatnonzero(mask), diameters,
                float(diameter), item.source, item.name,
            ))
        self.sources = sorted({p.source for p in self.items})
        weights = {s: float(config.source_weights.get(s, 1.0)) for s in self.sources}
        if sum(weights.values()) <= 0:
            raise ValueError(f"every source has weight 0: {weights}")
        self.source_share = {s: w / sum(weights.values()) for s, w in weights.items()}
        self._by_source = {s: [i for i, p in enumerate(self.items) if p.source == s] for s in self.sources}
        self._image_p = {}
        for s, indices in self._by_source.items():
            area = np.array([self.items[i].mask.size * (net.nucleus_diameter / self.items[i].diameter) ** 2
                             for i in indices])
            self._image_p[s] = area / area.sum()
        self._source_p = np.array([self.source_share[s] for s in self.sources])

    def batch(self, rng: np.random.Generator, size: int, augment: bool = True) -> dict[str, torch.Tensor]:
        """A batch: ``image`` (N, 1, P, P) float32, ``classes`` (N, P, P) int64, ``distance`` and ``log_size``
        (N, P, P) float32 (``log_size`` NaN off the nuclei)."""
        patches = [self.patch(rng, augment) for _ in range(size)]
        return {
            "image": torch.from_numpy(np.stack([p[0] for p in patches])[:, None]),
            "classes": torch.from_numpy(np.stack([p[1] for p in patches]).astype(np.int64)),
            "distance": torch.from_numpy(np.stack([p[2] for p in patches])),
            "log_size": torch.from_numpy(np.stack([p[3] for p in patches])),
        }

    def patch(self, rng: np.random.Generator, augment: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One patch: image (P, P) float32, classes (P, P) uint8, distance (P, P), log size (P, P) float32."""
        cfg, aug = self.config, self.config.augmentation
        source = self.sources[int(rng.choice(len(self.sources), p=self._source_p))]
        members = self._by_source[source]
        index = members[int(rng.choice(len(members), p=self._image_p[source]))]
        item = self.items[index]
        zoom = 1.0
        if augment:
            wide = rng.random() < aug.wide_scale_probability
            low, high = aug.wide_scale_range if wide else aug.scale_range
            zoom = math.exp(rng.uniform(math.log(low), math.log(high)))
        # Patch pixels per original pixel.
        factor = cfg.network.nucleus_diameter * zoom / item.diameter
        pad = 8  # context so that outlines and distances at the patch edge are those of the whole mask
        side = cfg.patch_size + 2 * pad
        source_side = max(2, round(side / factor))
        if item.foreground.size and rng.random() < cfg.foreground_bias:
            pick = int(item.foreground[rng.integers(item.foreground.size)])
            cy, cx = np.unravel_index(pick, item.mask.shape)
        else:
            cy, cx = int(rng.integers(item.mask.shape[0])), int(rng.integers(item.mask.shape[1]))
        y0, x0 = int(cy) - source_side // 2, int(cx) - source_side // 2
        image = _crop(item.image, y0, x0, source_side, fill=_edge_level(item.image))
        mask = _crop(item.mask, y0, x0, source_side, fill=0)
        if source_side != side:
            image = nnf.interpolate(torch.from_numpy(image)[None, None], size=(side, side), mode="bilinear",
                                    align_corners=False, antialias=source_side > side)[0, 0].numpy()
            mask = nnf.interpolate(torch.from_numpy(mask.astype(np.float64))[None, None], size=(side, side),
                                   mode="nearest-exact")[0, 0].numpy().astype(np.int32)
        if augment:
            k = int(rng.integers(4))
            flip = rng.random() < 0.5
            image, mask = np.rot90(image, k), np.rot90(mask, k)
            if flip:
                image, mask = image[:, ::-1], mask[:, ::-1]
            image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask)
        classes, distance = panoptic_targets(mask, cfg.boundary_width)
        sizes = item.diameters * factor
        log_size = np.full(mask.shape, np.nan, np.float32)
        inside = mask > 0
        log_size[inside] = np.log(np.maximum(sizes[mask[inside]], 1e-3) / cfg.network.nucleus_diameter)
        if augment:
            if aug.dim_probability > 0:
                image = dim_objects(image.astype(np.float32), mask, rng, aug)
            if rng.random() < aug.blur_probability:
                image = ndi.gaussian_filter(image, rng.uniform(0.3, max(0.3, aug.blur_sigma_max)))
        core = (slice(pad, pad + cfg.patch_size), slice(pad, pad + cfg.patch_size))
        image = np.asarray(image[core], np.float32)
        if augment:
            image = augment_intensity(image, rng, aug)
        return (np.ascontiguousarray(image, np.float32), np.ascontiguousarray(classes[core]),
                np.ascontiguousarray(distance[core]), np.ascontiguousarray(log_size[core]))


def _edge_level(image: np.ndarray) -> float:
    """Background level used outside an image (its 5th percentile, sampled)."""
    flat = image.ravel()
    step = max(1, flat.size // 20000)
    return float(np.percentile(flat[::step], 5))


def _crop(array: np.ndarray, y0: int, x0: int, side: int, fill: float) -> np.ndarray:
    """Square crop that may reach outside the array; outside pixels are ``fill``."""
    out = np.full((side, side), fill, array.dtype)
    sy0, sx0 = max(0, y0), max(0, x0)
    sy1, sx1 = min(array.shape[0], y0 + side), min(array.shape[1], x0 + side)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = array[sy0:sy1, sx0:sx1]
    return out


# ---------------------------------------------------------------------------- losses
def panoptic_loss(
    outputs: torch.Tensor, batch: Mapping[str, torch.Tensor], config: PanopticTrainingConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the class, inner-distance and log-size losses, and each term's value.

    Parameters
    ----------
    outputs : torch.Tensor, shape (N, 5, P, P)
        Raw network outputs (:meth:`PanopticSegNet.forward`).
    batch : mapping
        ``classes`` (N, P, P) int64, ``distance`` and ``log_size`` (N, P, P) float32.
    config : PanopticTrainingConfig
    """
    weight = torch.tensor(config.class_weights, dtype=outputs.dtype, device=outputs.device)
    class_loss = nnf.cross_entropy(outputs[:, :N_CLASSES], batch["classes"], weight=weight)
    distance_loss = nnf.binary_cross_entropy_with_logits(outputs[:, DISTANCE], batch["distance"])
    known = torch.isfinite(batch["log_size"])
    if bool(known.any()):
        size_loss = nnf.smooth_l1_loss(outputs[:, LOG_SIZE][known], batch["log_size"][known], beta=0.1)
    else:
        size_loss = outputs[:, LOG_SIZE].sum() * 0.0
    total = class_loss + config.distance_weight * distance_loss + config.size_weight * size_loss
    terms = {"class": class_loss, "distance": distance_loss, "size": size_loss}
    return total, {k: float(v.detach()) for k, v in terms.items()}


# ---------------------------------------------------------------------------- trainer
@dataclass(frozen=True)
class StepLog:
    """One line of the training log (every ``log_every`` steps)."""

    step: int
    train_loss: float
    validation_loss: float
    validation_terms: dict[str, float]
    learning_rate: float
    seconds: float


class PanopticSegNetTrainer:
    """Train a :class:`PanopticSegNet` from annotated images of one or more sources.

    Parameters
    ----------
    config : PanopticTrainingConfig, optional
    """

    def __init__(self, config: PanopticTrainingConfig | None = None) -> None:
        self.config = config or PanopticTrainingConfig()
        self.history: list[StepLog] = []

    def fit(
        self,
        images: Sequence[AnnotatedImage],
        *,
        init: PanopticSegNet | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        provenance: Mapping[str, Any] | None = None,
        callback: Callable[[StepLog], None] | None = None,
    ) -> PanopticSegNet:
        """Train and return the network (eval mode, on ``config.device``).

        Parameters
        ----------
        images : sequence of AnnotatedImage
        init : PanopticSegNet, optional
            Start from these weights (fine-tuning); its architecture replaces ``config.network``.
        checkpoint_dir : path, optional
            Where ``checkpoint.pt`` is written every ``log_every`` steps.
        resume : bool
            Continue from ``checkpoint_dir/checkpoint.pt`` (same data and config required).
        provenance : mapping, optional
            JSON-serialisable description of the data, stored in the model folder.
        callback : callable, optional
            Called with each :class:`StepLog`.
        """
        cfg = self.config
        if init is not None:
            cfg = cfg.model_copy(update={"network": init.config})
        started = time.monotonic()
        images = [_check_image(i, item) for i, item in enumerate(images)]
        if not images:
            raise ValueError("PanopticSegNetTrainer.fit needs at least one annotated image")
        rng = np.random.default_rng(cfg.seed)
        train, validation = _split_by_source(images, cfg.validation_fraction, rng)
        sampler = PanopticPatchSampler(train, cfg)
        val_batches: list[dict[str, torch.Tensor]] = []
        if validation:
            val_sampler = PanopticPatchSampler(validation, cfg)
            val_rng = np.random.default_rng(cfg.seed + 1)
            for start in range(0, cfg.n_validation_patches, cfg.batch_size):
                size = min(cfg.batch_size, cfg.n_validation_patches - start)
                val_batches.append(val_sampler.batch(val_rng, size, augment=False))
        device = torch.device(cfg.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = PanopticSegNet(cfg.network)
        if init is not None:
            model.load_state_dict(init.state_dict())
        model.to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: _schedule(step, cfg.steps, cfg.warmup_steps, cfg.min_lr_fraction)
        )
        step = 0
        checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        self.history = []
        if resume:
            if checkpoint_path is None or not checkpoint_path.is_file():
                raise ValueError(f"{checkpoint_path}: no checkpoint to resume from; start without --resume")
            state = torch.load(checkpoint_path, map_location=device, weights_only=False)
            if state.get("config") != cfg.model_dump(mode="json", exclude={"progress", "device"}):
                raise ValueError(
                    f"{checkpoint_path}: written by a run with other settings; resume with the same options "
                    "or start a new run in another folder"
                )
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            rng.bit_generator.state = state["rng"]
            step = int(state["step"])
            self.history = [StepLog(**h) for h in state.get("history", [])]
            logger.info("resumed from %s at step %d", checkpoint_path, step)
        logger.info(
            "PanopticSegNet training: %d train / %d validation images; sources %s",
            len(train), len(validation), {s: round(p, 3) for s, p in sampler.source_share.items()},
        )
        bar = tqdm(total=cfg.steps, initial=step, desc="SegNet", disable=None if cfg.progress else True)
        losses: list[float] = []
        with _deterministic_algorithms(cfg.deterministic, warn_only=device.type != "cpu"):
            try:
                while step < cfg.steps:
                    model.train()
                    if init is not None and cfg.freeze_norm_statistics:
                        for module in model.modules():
                            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                                module.eval()
                    batch = {k: v.to(device) for k, v in sampler.batch(rng, cfg.batch_size).items()}
                    outputs = model(batch["image"])
                    loss, _ = panoptic_loss(outputs, batch, cfg)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    losses.append(float(loss.detach()))
                    bar.update(1)
                    if step % cfg.log_every == 0 or step == cfg.steps:
                        val_loss, terms = _validate(model, val_batches, cfg)
                        log = StepLog(step, float(np.mean(losses)), val_loss, terms,
                                      float(optimizer.param_groups[0]["lr"]), time.monotonic() - started)
                        losses = []
                        self.history.append(log)
                        bar.set_postfix(train=f"{log.train_loss:.4f}", val=f"{val_loss:.4f}")
                        logger.info("step %d: train %.4f val %.4f %s (%.0f s)", step, log.train_loss,
                                    val_loss, {k: round(v, 4) for k, v in terms.items()}, log.seconds)
                        if checkpoint_path is not None:
                            _save_checkpoint(checkpoint_path, model, optimizer, scheduler, rng, step, cfg,
                                             self.history)
                        if callback is not None:
                            callback(log)
            finally:
                bar.close()
        model.training_info = {
            "trainer": f"{type(self).__module__}.{type(self).__name__}",
            "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "seconds_this_session": round(time.monotonic() - started, 1),
            "config": cfg.model_dump(mode="json"),
            "fine_tuned": init is not None,
            "n_train_images": len(train),
            "n_validation_images": len(validation),
            "source_share": {s: round(p, 4) for s, p in sampler.source_share.items()},
            "images_per_source": {s: len(v) for s, v in sampler._by_source.items()},
            # JSON has no NaN: a run without validation images logs no validation loss.
            "history": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                         for k, v in h.__dict__.items()} for h in self.history],
            "data": dict(provenance or {}),
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        }
        return model.to(device).eval()


def _schedule(step: int, total: int, warmup: int, floor: float) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to ``floor`` at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _validate(
    model: PanopticSegNet, batches: list[dict[str, torch.Tensor]], cfg: PanopticTrainingConfig
) -> tuple[float, dict[str, float]]:
    if not batches:
        return float("nan"), {}
    model.eval()
    totals: dict[str, float] = {}
    total = 0.0
    device = next(model.parameters()).device
    with torch.no_grad():
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, terms = panoptic_loss(model(batch["image"]), batch, cfg)
            total += float(loss)
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + v
    n = len(batches)
    return total / n, {k: v / n for k, v in totals.items()}


def _save_checkpoint(
    path: Path, model: PanopticSegNet, optimizer: torch.optim.Optimizer, scheduler: Any,
    rng: np.random.Generator, step: int, cfg: PanopticTrainingConfig, history: list[StepLog],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": rng.bit_generator.state, "step": step,
        "config": cfg.model_dump(mode="json", exclude={"progress", "device"}),
        "history": [h.__dict__ for h in history],
    }, tmp)
    tmp.replace(path)  # atomic: a run killed while saving keeps the previous checkpoint


def _check_image(index: int, item: AnnotatedImage) -> AnnotatedImage:
    if not isinstance(item, AnnotatedImage):
        raise TypeError(f"image {index}: expected an AnnotatedImage, got {type(item).__name__}")
    check_image_and_mask(item.name or f"image {index}", item.image, item.mask)
    return item


def _split_by_source(
    images: list[AnnotatedImage], fraction: float, rng: np.random.Generator
) -> tuple[list[AnnotatedImage], list[AnnotatedImage]]:
    """Hold out ``fraction`` of each source's images (none from a source with fewer than 4)."""
    train, validation = [], []
    for source in sorted({i.source for i in images}):
        members = [i for i in images if i.source == source]
        n_val = round(fraction * len(members)) if len(members) >= 4 else 0
        order = rng.permutation(len(members))
        held = set(order[:n_val].tolist())
        for k, item in enumerate(members):
            (validation if k in held else train).append(item)
    return train, validation
