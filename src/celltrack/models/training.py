"""Training of pixel classifiers: targets, augmentation, patch sampling, best checkpoint, SegNet trainer.

The trainer learns from plain arrays — a list of ``(image, instance_mask)`` pairs — so the CLI and
notebooks only have to load data. Masks must label every nucleus of their image: unlabelled
pixels count as background.

Reproducibility without global state: all randomness comes from generators derived from
``config.seed`` (one ``numpy.random.Generator`` per ensemble member draws patches, augmentations and
loss pixels; weight initialisation runs inside ``torch.random.fork_rng``), so a run does not disturb,
nor depend on, the caller's RNG state. A run is defined by its epochs (``max_epochs`` ×
``steps_per_epoch``, cosine learning-rate decay over exactly that many steps), not by wall time, and
torch's deterministic algorithms are on while it trains: the same data, config, torch build and
thread count (recorded as ``torch_threads``) give bit-identical weights.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries
from torch import nn
from torch.nn import functional as nnf
from tqdm import tqdm

from celltrack.models.segnet import (
    BACKGROUND,
    BOUNDARY,
    INTERIOR,
    N_CLASSES,
    SegNet,
    SegNetConfig,
    SegNetMember,
    normalize_frame,
    resize_labels,
    resize_maps,
)

logger = logging.getLogger(__name__)

Pair = tuple[np.ndarray, np.ndarray]


# ---------------------------------------------------------------------------- targets
def make_targets(mask: np.ndarray, boundary_width: int = 1) -> np.ndarray:
    """Three-class targets from an instance mask.

    Parameters
    ----------
    mask : numpy.ndarray, shape (Y, X), integer
        Instance labels, 0 = background.
    boundary_width : int
        Thickness (px) of the boundary band, taken inside each object; two touching objects
        are thus separated by a band of ``2 * boundary_width`` px.

    Returns
    -------
    numpy.ndarray, shape (Y, X), uint8
        0 = interior, 1 = boundary, 2 = background.
    """
    if mask.ndim != 2:
        raise ValueError(f"make_targets expects a 2-D mask, got shape {mask.shape}")
    if boundary_width < 1:
        raise ValueError(f"boundary_width must be >= 1 px, got {boundary_width}")
    labels = mask.copy()
    targets = np.full(mask.shape, BACKGROUND, np.uint8)
    targets[labels > 0] = INTERIOR
    for _ in range(boundary_width):
        ring = find_boundaries(labels, mode="inner") & (labels > 0)
        targets[ring] = BOUNDARY
        labels[ring] = 0
    return targets


# Target codes beyond the three classes: boundary / background pixels where two nuclei (nearly) touch.
CONTACT_BOUNDARY = N_CLASSES
CONTACT_BACKGROUND = N_CLASSES + 1
_TARGET_CLASS = np.array([INTERIOR, BOUNDARY, BACKGROUND, BOUNDARY, BACKGROUND])


def mark_contacts(targets: np.ndarray, mask: np.ndarray, boundary_width: int = 1) -> np.ndarray:
    """Give the boundary and background pixels between two nearby nuclei their own target codes.

    A pixel is a contact pixel when another nucleus lies within ``boundary_width + 1`` px
    (a background pixel: when two different nuclei do). Contact boundary pixels get the code
    ``CONTACT_BOUNDARY`` (3), contact background pixels ``CONTACT_BACKGROUND`` (4); the loss counts them
    as boundary / background with an extra weight, because they alone tell touching nuclei apart.

    Parameters
    ----------
    targets : numpy.ndarray, shape (Y, X), uint8
        Three-class targets of ``mask`` (:func:`make_targets`).
    mask : numpy.ndarray, shape (Y, X), integer
        Instance labels, 0 = background.
    boundary_width : int
        As in :func:`make_targets`.

    Returns
    -------
    numpy.ndarray, shape (Y, X), uint8
        Codes 0-4.
    """
    if targets.shape != mask.shape or mask.ndim != 2:
        raise ValueError(f"targets {targets.shape} and mask {mask.shape} must be 2-D of the same shape")
    if boundary_width < 1:
        raise ValueError(f"boundary_width must be >= 1 px, got {boundary_width}")
    labels = mask.astype(np.int64, copy=False)
    size = 2 * boundary_width + 3
    highest = ndi.maximum_filter(labels, size=size)
    empty = int(labels.max()) + 1  # (scipy's filters overflow near the int64 limit)
    lowest = ndi.minimum_filter(np.where(labels > 0, labels, empty), size=size)
    inside = labels > 0
    # Inside a nucleus: another label in the window; on background: two different labels in it.
    near_other = np.where(
        inside, (highest > labels) | (lowest < labels), (lowest < empty) & (highest > lowest)
    )
    out = targets.copy()
    out[near_other & (targets == BOUNDARY)] = CONTACT_BOUNDARY
    out[near_other & (targets == BACKGROUND)] = CONTACT_BACKGROUND
    return out


def estimate_nucleus_diameter(mask: np.ndarray) -> float:
    """Median equivalent diameter sqrt(4·area/π) of the objects of a mask (px); NaN if empty."""
    areas = np.bincount(np.asarray(mask).ravel().astype(np.int64))[1:]
    areas = areas[areas > 0]
    if areas.size == 0:
        return float("nan")
    return float(np.median(np.sqrt(4.0 * areas / math.pi)))


def class_weights(frequencies: np.ndarray, power: float) -> np.ndarray:
    """Class weights ∝ frequency^-power, scaled so the weighted mean frequency is 1.

    ``power = 1`` balances classes fully, ``0`` leaves them unweighted; in between trades the
    recall of the rare boundary class against over-confident (too large) objects.
    """
    freq = np.clip(np.asarray(frequencies, np.float64), 1e-6, None)
    weights = freq**-power
    return (weights / float((weights * freq).sum() / freq.sum())).astype(np.float32)


# ---------------------------------------------------------------------------- augmentation
class AugmentationConfig(BaseModel):
    """Random augmentation of training patches (intensities are of normalised images)."""

    model_config = ConfigDict(extra="forbid")

    flips: bool = Field(True, description="Random horizontal / vertical flips.")
    rotations: bool = Field(True, description="Random multiples of 90° rotation.")
    scale_range: tuple[float, float] = Field((0.8, 1.25), description="Zoom factor range (1 = none).")
    intensity_scale_range: tuple[float, float] = Field((0.6, 1.6), description="Multiplicative contrast.")
    intensity_offset: float = Field(0.1, ge=0, description="Max additive offset.")
    gamma_range: tuple[float, float] = Field((0.7, 1.4), description="Gamma applied to positive values.")
    noise_std_max: float = Field(0.05, ge=0, description="Max std of additive Gaussian noise.")
    # Silver truth labels faint nuclei (HeLa: 10-30 counts over a 1500-count range) inconsistently, so
    # few confident examples of them exist; dimming labelled nuclei makes such examples.
    dim_probability: float = Field(
        0.35, ge=0, le=1, description="Chance that each nucleus of a patch is dimmed towards the background."
    )
    dim_range: tuple[float, float] = Field(
        (0.03, 0.4), description="Log-uniform range of the contrast factor of a dimmed nucleus."
    )
    blur_sigma_max: float = Field(
        0.0,
        ge=0,
        description="Gaussian blur of the patch, sigma uniform in [0, this] (px at model scale), before the "
        "intensity changes: outlines as another microscope's optics or focus render them; 0 = off.",
    )

    @model_validator(mode="after")
    def _ranges(self) -> AugmentationConfig:
        for name in ("scale_range", "intensity_scale_range", "gamma_range", "dim_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(low, high)}")
        return self


def augment_intensity(image: np.ndarray, rng: np.random.Generator, config: AugmentationConfig) -> np.ndarray:
    """Random contrast, offset, gamma and noise on a normalised patch (Y, X) float32."""
    out = image
    positive = np.maximum(out, 0)
    gamma = math.exp(rng.uniform(*np.log(config.gamma_range)))
    out = positive**gamma + np.minimum(out, 0)
    out = out * math.exp(rng.uniform(*np.log(config.intensity_scale_range)))
    out = out + rng.uniform(-config.intensity_offset, config.intensity_offset)
    if config.noise_std_max > 0:
        out = out + rng.normal(0, rng.uniform(0, config.noise_std_max), out.shape)
    return out.astype(np.float32)


def dim_objects(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, config: AugmentationConfig
) -> np.ndarray:
    """Lower the contrast of random nuclei towards the local background, keeping the noise level.

    Parameters
    ----------
    image : numpy.ndarray, shape (Y, X), float32
        Normalised patch.
    mask : numpy.ndarray, shape (Y, X), integer
        Its instance labels (0 = background).
    rng : numpy.random.Generator
    config : AugmentationConfig
        ``dim_probability`` per nucleus, contrast factor from ``dim_range``.

    Returns
    -------
    numpy.ndarray, shape (Y, X), float32
    """
    n_labels = int(mask.max()) + 1
    # Draw for every label value so the random stream does not depend on which labels a patch holds.
    chosen = rng.random(n_labels) < config.dim_probability
    factors = np.exp(rng.uniform(*np.log(config.dim_range), n_labels))
    present = np.zeros(n_labels, bool)
    present[mask.ravel()] = True
    chosen &= present
    chosen[0] = False
    if not chosen.any():
        return image
    background = image[mask == 0]
    if background.size < 16:
        return image
    level = float(np.median(background))
    noise = 1.4826 * float(np.median(np.abs(background - level)))
    factor_lut = np.where(chosen, factors, 1.0).astype(np.float32)
    factor = factor_lut[mask]
    # The blurred rim just outside a dimmed nucleus is dimmed too, or it would stay as a bright halo.
    factor = np.where(mask == 0, ndi.grey_erosion(factor, size=5), factor)
    out = level + (image - level) * factor
    # Scaling also shrank the camera noise inside the nucleus: add back what it lost.
    lost = noise * np.sqrt(np.clip(1.0 - factor**2, 0.0, None))
    out = out + lost * rng.standard_normal(image.shape).astype(np.float32)
    return out.astype(np.float32)


def augment_geometry(arrays: Sequence[np.ndarray], rng: np.random.Generator, config: AugmentationConfig
                     ) -> list[np.ndarray]:
    """Apply the same random flips / 90° rotation to every (Y, X) array."""
    k = int(rng.integers(4)) if config.rotations else 0
    flip_y = config.flips and rng.random() < 0.5
    flip_x = config.flips and rng.random() < 0.5
    out = []
    for arr in arrays:
        arr = np.rot90(arr, k)
        if flip_y:
            arr = arr[::-1]
        if flip_x:
            arr = arr[:, ::-1]
        out.append(np.ascontiguousarray(arr))
    return out


# ---------------------------------------------------------------------------- sampling
class PatchSampler:
    """Random square patches (image, 3-class target) from prepared images and instance masks.

    Parameters
    ----------
    images : sequence of numpy.ndarray, each (Y, X) float32
        Normalised images, already at the model's scale.
    masks : sequence of numpy.ndarray, each (Y, X) integer
        Matching instance masks.
    patch_size : int
        Patch side (px).
    boundary_width : int
        See :func:`make_targets`.
    foreground_bias : float
        Probability that a patch is centred on a random nucleus pixel rather than anywhere.
    augmentation : AugmentationConfig
    contacts : bool
        Mark contact pixels between nearby nuclei with codes 3 and 4 (:func:`mark_contacts`).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        patch_size: int,
        boundary_width: int,
        foreground_bias: float,
        augmentation: AugmentationConfig,
        contacts: bool = False,
    ) -> None:
        if not images:
            raise ValueError("PatchSampler needs at least one image")
        self.images = list(images)
        self.masks = list(masks)
        self.patch_size = patch_size
        self.boundary_width = boundary_width
        self.foreground_bias = foreground_bias
        self.augmentation = augmentation
        self.contacts = contacts
        self._foreground = [np.flatnonzero(m) for m in self.masks]
        areas = np.array([m.size for m in self.masks], np.float64)
        self._image_p = areas / areas.sum()

    def batch(self, rng: np.random.Generator, size: int, augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch: images (size, 1, P, P) float32 and targets (size, P, P) int64."""
        pairs = [self.patch(rng, augment) for _ in range(size)]
        images = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])
        targets = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        return images, targets

    def patch(self, rng: np.random.Generator, augment: bool) -> tuple[np.ndarray, np.ndarray]:
        """One patch: image (P, P) float32, targets (P, P) uint8 (codes 0-2, or 0-4 with ``contacts``)."""
        index = int(rng.choice(len(self.images), p=self._image_p))
        image, mask, foreground = self.images[index], self.masks[index], self._foreground[index]
        # An extra ring of context so boundaries at the patch edge are computed as in the full mask.
        pad = self.boundary_width + 1
        side = self.patch_size + 2 * pad
        scale = math.exp(rng.uniform(*np.log(self.augmentation.scale_range))) if augment else 1.0
        source = max(2, round(side / scale))
        if foreground.size and rng.random() < self.foreground_bias:
            cy, cx = np.unravel_index(int(foreground[rng.integers(foreground.size)]), mask.shape)
        else:
            cy, cx = int(rng.integers(mask.shape[0])), int(rng.integers(mask.shape[1]))
        y0, x0 = int(cy) - source // 2, int(cx) - source // 2
        image_crop = _crop(image, y0, x0, source)
        mask_crop = _crop(mask, y0, x0, source)
        if source != side:
            image_crop = resize_maps(torch.from_numpy(image_crop)[None, None], (side, side))[0, 0].numpy()
            mask_crop = resize_labels(mask_crop, (side, side))
        targets = make_targets(mask_crop, self.boundary_width)
        if self.contacts:
            targets = mark_contacts(targets, mask_crop, self.boundary_width)
        targets = targets[pad:-pad, pad:-pad]
        if augment and self.augmentation.dim_probability > 0:
            image_crop = dim_objects(image_crop, mask_crop, rng, self.augmentation)
        if augment and self.augmentation.blur_sigma_max > 0:
            # Drawn only when enabled, so that runs without blur keep their random streams.
            sigma = rng.uniform(0, self.augmentation.blur_sigma_max)
            image_crop = ndi.gaussian_filter(image_crop, sigma).astype(np.float32, copy=False)
        image_crop = image_crop[pad:-pad, pad:-pad]
        if augment:
            image_crop, targets = augment_geometry([image_crop, targets], rng, self.augmentation)
            image_crop = augment_intensity(image_crop, rng, self.augmentation)
        return np.ascontiguousarray(image_crop, np.float32), np.ascontiguousarray(targets)


def _crop(array: np.ndarray, y0: int, x0: int, side: int) -> np.ndarray:
    """Square crop that may reach outside the array; outside pixels are 0."""
    out = np.zeros((side, side), array.dtype)
    sy0, sx0 = max(0, y0), max(0, x0)
    sy1, sx1 = min(array.shape[0], y0 + side), min(array.shape[1], x0 + side)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = array[sy0:sy1, sx0:sx1]
    return out


# ---------------------------------------------------------------------------- checkpoints
class BestCheckpoint:
    """Keep a copy of the weights with the lowest validation loss, and count epochs since.

    Parameters
    ----------
    patience : int
        Epochs without improvement after which :attr:`should_stop` becomes true.
    min_delta : float
        Smallest decrease that counts as an improvement.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best_loss = math.inf
        self.best_epoch = 0
        self.epochs_since_best = 0
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, loss: float, module: nn.Module, epoch: int) -> bool:
        """Record an epoch's validation loss; returns True when it is a new best."""
        if loss < self.best_loss - self.min_delta:
            self.best_loss = loss
            self.best_epoch = epoch
            self.epochs_since_best = 0
            self.state = copy.deepcopy(module.state_dict())
            return True
        self.epochs_since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs passed without improvement."""
        return self.epochs_since_best >= self.patience

    def restore(self, module: nn.Module) -> None:
        """Load the best weights back into ``module`` (no-op if none was recorded)."""
        if self.state is not None:
            module.load_state_dict(self.state)


@dataclass(frozen=True)
class EpochLog:
    """One line of the training log, passed to the epoch callback."""

    member: int
    epoch: int
    train_loss: float
    validation_loss: float
    best_validation_loss: float
    improved: bool
    learning_rate: float
    seconds: float


# ---------------------------------------------------------------------------- SegNet trainer
class TrainingRunSettings(BaseModel):
    """How a training run executes (shared by the SegNet and RecogNet trainers), not what it learns."""

    model_config = ConfigDict(extra="forbid")

    deterministic: bool = Field(
        True,
        description="Use torch's deterministic algorithms while training (restored afterwards); on GPUs "
        "only warn where a kernel has no deterministic variant.",
    )
    device: str = Field("cpu", description="torch device, e.g. 'cpu' or 'cuda'.")
    progress: bool = Field(True, description="Show a tqdm bar (only on a terminal).")


class SegNetTrainingConfig(TrainingRunSettings):
    """Parameters of :class:`SegNetTrainer` (lengths in pixels at the model's scale).

    A run is defined by its epochs, not by wall time: with ``max_seconds=None`` (the default) the
    same data, config and torch thread count give bit-identical weights.
    """

    model_config = ConfigDict(extra="forbid")

    network: SegNetConfig = Field(default_factory=SegNetConfig, description="Architecture to train.")
    patch_size: int = Field(128, ge=8, description="Side of the square training patches.")
    batch_size: int = Field(8, ge=1)
    steps_per_epoch: int = Field(200, ge=1)
    max_epochs: int = Field(30, ge=1, description="Epoch limit per ensemble member.")
    max_seconds: float | None = Field(
        None,
        gt=0,
        description="Optional wall-time budget for the whole ensemble, shared equally among members "
        "(stopping on time makes a run irreproducible).",
    )
    patience: int = Field(12, ge=1, description="Stop a member after this many epochs without improvement.")
    learning_rate: float = Field(2e-3, gt=0)
    lr_schedule: Literal["cosine", "plateau"] = Field(
        "cosine",
        description="cosine: decay per step to min_lr_fraction × learning_rate at max_epochs (a fixed-epoch "
        "run ends annealed); plateau: halve when the validation loss stalls.",
    )
    min_lr_fraction: float = Field(
        0.02, ge=0, le=1, description="Final learning rate of the cosine schedule (× learning_rate)."
    )
    weight_decay: float = Field(1e-5, ge=0)
    pixel_fraction: float = Field(
        0.25, gt=0, le=1,
        description="Share of each patch's pixels (random per step) that enter the loss. The 200-wide head "
        "dominates the cost of a step and neighbouring pixels carry nearly the same gradient, so 0.25 makes "
        "steps ≈ 3× cheaper for little loss of information.",
    )
    validation_fraction: float = Field(
        0.15, ge=0, lt=1, description="Share of pairs held out (one pair: a strip of its image)."
    )
    n_validation_patches: int = Field(48, ge=1, description="Fixed, unaugmented validation patches.")
    boundary_width: int = Field(1, ge=1, le=4, description="Boundary band inside each object (px).")
    contact_weight: float = Field(
        1.0,
        ge=1,
        description="Extra loss weight of boundary and background pixels where two nuclei (nearly) touch "
        "(:func:`mark_contacts`); 1 = off. They are few, yet they alone separate touching nuclei.",
    )
    class_balance_power: float = Field(
        0.5, ge=0, le=1, description="Class weights ∝ frequency^-power (1 = fully balanced)."
    )
    foreground_bias: float = Field(0.5, ge=0, le=1, description="Share of patches centred on a nucleus.")
    rescale_to_diameter: bool = Field(
        True, description="Rescale each pair so its nuclei have network.nucleus_diameter (else keep scale)."
    )
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    seed: int = Field(0, description="Seeds weights, patches and the validation split.")


class SegNetTrainer:
    """Train a :class:`SegNet` ensemble from ``(image, instance_mask)`` pairs.

    Parameters
    ----------
    config : SegNetTrainingConfig, optional

    Attributes
    ----------
    history : list of EpochLog
        Every epoch of the last :meth:`fit`.
    """

    def __init__(self, config: SegNetTrainingConfig | None = None) -> None:
        self.config = config or SegNetTrainingConfig()
        self.history: list[EpochLog] = []

    def fit(
        self,
        pairs: Sequence[Pair],
        *,
        validation_pairs: Sequence[Pair] | None = None,
        pair_diameters: Sequence[float] | None = None,
        provenance: Mapping[str, Any] | None = None,
        callback: Callable[[EpochLog], None] | None = None,
    ) -> SegNet:
        """Train every ensemble member and return the model with each member's best weights.

        Parameters
        ----------
        pairs : sequence of (numpy.ndarray (Y, X), numpy.ndarray (Y, X) integer)
            Raw images (any numeric dtype) and complete instance masks (0 = background).
        validation_pairs : sequence of pairs, optional
            Explicit validation data; otherwise ``validation_fraction`` of ``pairs`` is held out.
        pair_diameters : sequence of float, optional
            Nucleus diameter (px) of each training pair, then each validation pair; estimated
            from the masks when omitted.
        provenance : mapping, optional
            JSON-serialisable description of the data (paths, frames), stored in the model folder.
        callback : callable, optional
            Called with an :class:`EpochLog` after every epoch.

        Returns
        -------
        SegNet
            In eval mode on ``config.device``; ``training_info`` holds the provenance.
        """
        cfg = self.config
        started = time.monotonic()
        all_pairs = [_check_pair(i, p) for i, p in enumerate(pairs)]
        if not all_pairs:
            raise ValueError("SegNetTrainer.fit needs at least one (image, mask) pair")
        explicit_val = [_check_pair(i, p) for i, p in enumerate(validation_pairs or [])]
        n_given = len(all_pairs) + len(explicit_val)
        if pair_diameters is not None and len(pair_diameters) != n_given:
            raise ValueError(
                f"pair_diameters has {len(pair_diameters)} values for {n_given} pairs (training + validation)"
            )
        seeds = np.random.SeedSequence(cfg.seed).spawn(cfg.network.n_members + 1)
        split_rng = np.random.default_rng(seeds[0])

        images, masks, diameters = self._prepare(all_pairs + explicit_val, pair_diameters)
        network = cfg.network
        if not cfg.rescale_to_diameter:
            finite = diameters[np.isfinite(diameters)]
            measured = float(np.median(finite)) if finite.size else network.nucleus_diameter
            network = network.model_copy(update={"nucleus_diameter": measured})
        n_train = len(all_pairs)
        train_images, train_masks = images[:n_train], masks[:n_train]
        val_images, val_masks = images[n_train:], masks[n_train:]
        split = "explicit"
        if not val_images and cfg.validation_fraction > 0:
            train_images, train_masks, val_images, val_masks, split = _split(
                train_images, train_masks, cfg.validation_fraction, split_rng
            )
        frequencies = _class_frequencies(train_masks, cfg.boundary_width)
        weights = class_weights(frequencies, cfg.class_balance_power)
        logger.info(
            "SegNet training: %d train / %d validation images (%s split), class frequencies %s, weights %s",
            len(train_images), len(val_images), split, np.round(frequencies, 4), np.round(weights, 3),
        )
        sampler_args = dict(
            patch_size=cfg.patch_size, boundary_width=cfg.boundary_width, foreground_bias=cfg.foreground_bias,
            augmentation=cfg.augmentation, contacts=cfg.contact_weight > 1,
        )
        train_sampler = PatchSampler(train_images, train_masks, **sampler_args)
        val_sampler = PatchSampler(val_images, val_masks, **sampler_args) if val_images else None
        device = torch.device(cfg.device)
        loss_weights = weights
        if cfg.contact_weight > 1:
            # Codes 3 and 4 (contact boundary / background) weigh contact_weight × their class.
            loss_weights = np.concatenate([weights, cfg.contact_weight * weights[[BOUNDARY, BACKGROUND]]])
        weight_tensor = torch.from_numpy(loss_weights.astype(np.float32)).to(device)
        val_batches = []
        if val_sampler is not None:
            for start in range(0, cfg.n_validation_patches, cfg.batch_size):
                size = min(cfg.batch_size, cfg.n_validation_patches - start)
                val_batches.append(val_sampler.batch(split_rng, size, augment=False))

        model = SegNet(network)
        self.history = []
        members_info = []
        # On GPUs some kernels have no deterministic variant: warn there instead of failing.
        with _deterministic_algorithms(cfg.deterministic, warn_only=device.type != "cpu"):
            for index in range(network.n_members):
                elapsed = time.monotonic() - started
                remaining = None if cfg.max_seconds is None else cfg.max_seconds - elapsed
                budget = None if remaining is None else max(0.0, remaining) / (network.n_members - index)
                member, info = self._fit_member(
                    index, network, seeds[index + 1], train_sampler, val_batches, weight_tensor, budget,
                    callback,
                )
                model.members[index] = member
                members_info.append(info)
        model.training_info = {
            "trainer": f"{type(self).__module__}.{type(self).__name__}",
            "started_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 1),
            "config": cfg.model_dump(mode="json"),
            "n_train_images": len(train_images),
            "n_validation_images": len(val_images),
            "validation_split": split,
            "class_frequencies": [round(float(f), 5) for f in frequencies],
            "class_weights": [round(float(w), 5) for w in weights],
            "pair_diameters_px": _summary(diameters),
            "members": members_info,
            "history": [asdict(h) for h in self.history],
            "data": dict(provenance or {}),
            "torch_version": torch.__version__,
            # Float reductions in the convolution kernels depend on the thread count: bit-identical
            # weights need the same count (and torch build) as this run.
            "torch_threads": torch.get_num_threads(),
            "celltrack_version": _celltrack_version(),
        }
        return model.to(device).eval()

    # ------------------------------------------------------------------ internals
    def _prepare(
        self, pairs: list[Pair], pair_diameters: Sequence[float] | None
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        cfg = self.config
        images, masks, diameters = [], [], []
        for i, (image, mask) in enumerate(pairs):
            normalised = normalize_frame(image, cfg.network.low_percentile, cfg.network.high_percentile)
            if pair_diameters is not None:
                diameter = float(pair_diameters[i])
            else:
                diameter = estimate_nucleus_diameter(mask)
            diameters.append(diameter)
            if cfg.rescale_to_diameter and np.isfinite(diameter) and diameter > 0:
                factor = cfg.network.nucleus_diameter / diameter
                # Within ±5 % the interpolation blur costs more than the scale error.
                if abs(math.log(factor)) > math.log(1.05):
                    size = (max(1, round(mask.shape[0] * factor)), max(1, round(mask.shape[1] * factor)))
                    normalised = resize_maps(torch.from_numpy(normalised)[None, None], size)[0, 0].numpy()
                    mask = resize_labels(mask, size)
            images.append(np.ascontiguousarray(normalised, np.float32))
            masks.append(np.ascontiguousarray(mask))
        return images, masks, np.asarray(diameters, np.float64)

    def _fit_member(
        self,
        index: int,
        network: SegNetConfig,
        seed: np.random.SeedSequence,
        sampler: PatchSampler,
        val_batches: list[tuple[torch.Tensor, torch.Tensor]],
        class_weight: torch.Tensor,
        budget: float | None,
        callback: Callable[[EpochLog], None] | None,
    ) -> tuple[SegNetMember, dict[str, Any]]:
        cfg = self.config
        device = class_weight.device
        rng = np.random.default_rng(seed)
        torch_seed = int(seed.generate_state(1, np.uint64)[0] % (2**63))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed)
            member = SegNetMember(network).to(device)
        optimizer = torch.optim.Adam(member.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        total_steps = cfg.max_epochs * cfg.steps_per_epoch
        step_scheduler = None
        plateau = None
        if cfg.lr_schedule == "cosine":
            step_scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: _cosine_factor(step, total_steps, cfg.min_lr_fraction)
            )
        else:
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=0.5, patience=max(1, cfg.patience // 3)
            )
        patch_pixels = cfg.patch_size * cfg.patch_size
        n_loss_pixels = max(1, round(cfg.pixel_fraction * patch_pixels))
        checkpoint = BestCheckpoint(cfg.patience)
        started = time.monotonic()
        initial = _evaluate(member, val_batches, class_weight) if val_batches else math.nan
        out_of_time = False
        epochs_run = 0
        bar = tqdm(
            total=cfg.max_epochs * cfg.steps_per_epoch,
            desc=f"SegNet member {index + 1}/{network.n_members}",
            disable=None if cfg.progress else True,
            leave=False,
        )
        try:
            for epoch in range(1, cfg.max_epochs + 1):
                member.train()
                losses = []
                for _ in range(cfg.steps_per_epoch):
                    images, targets = sampler.batch(rng, cfg.batch_size, augment=True)
                    images, targets = images.to(device), targets.to(device)
                    if n_loss_pixels < patch_pixels:
                        # Drawn with replacement from the member's generator: cheap and reproducible.
                        pixels = torch.from_numpy(
                            rng.integers(0, patch_pixels, (len(images), n_loss_pixels))
                        ).to(device)
                        logits = member.logits_at(images, pixels)
                        targets = torch.gather(targets.flatten(1), 1, pixels)
                    else:
                        logits = member(images)
                    loss = _weighted_loss(logits, targets, class_weight)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if step_scheduler is not None:
                        step_scheduler.step()
                    losses.append(float(loss.detach()))
                    bar.update(1)
                    if budget is not None and time.monotonic() - started > budget:
                        out_of_time = True
                        break
                epochs_run = epoch
                train_loss = float(np.mean(losses))
                # Without validation data the training loss picks the checkpoint (noisier, documented).
                val_loss = _evaluate(member, val_batches, class_weight) if val_batches else train_loss
                if plateau is not None:
                    plateau.step(val_loss)
                improved = checkpoint.update(val_loss, member, epoch)
                log = EpochLog(
                    member=index, epoch=epoch, train_loss=train_loss, validation_loss=val_loss,
                    best_validation_loss=checkpoint.best_loss, improved=improved,
                    learning_rate=float(optimizer.param_groups[0]["lr"]), seconds=time.monotonic() - started,
                )
                self.history.append(log)
                bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
                logger.info(
                    "member %d epoch %d: train %.4f val %.4f%s (%.0f s)", index, epoch, train_loss, val_loss,
                    " *" if improved else "", log.seconds,
                )
                if callback is not None:
                    callback(log)
                if checkpoint.should_stop or out_of_time:
                    break
        finally:
            bar.close()
        checkpoint.restore(member)
        member.eval()
        info = {
            "seed": torch_seed,
            "epochs": epochs_run,
            "best_epoch": checkpoint.best_epoch,
            "initial_validation_loss": _round(initial),
            "best_validation_loss": _round(checkpoint.best_loss),
            "stopped": "time" if out_of_time else ("patience" if checkpoint.should_stop else "max_epochs"),
            "seconds": round(time.monotonic() - started, 1),
        }
        return member, info


def train_segnet(
    pairs: Sequence[Pair],
    config: SegNetTrainingConfig | None = None,
    *,
    validation_pairs: Sequence[Pair] | None = None,
    pair_diameters: Sequence[float] | None = None,
    provenance: Mapping[str, Any] | None = None,
    callback: Callable[[EpochLog], None] | None = None,
) -> SegNet:
    """Train a SegNet ensemble from ``(image, instance_mask)`` pairs; see :meth:`SegNetTrainer.fit`.

    Returns
    -------
    SegNet
        Trained model; save it with ``model.save(folder)``.
    """
    return SegNetTrainer(config).fit(
        pairs, validation_pairs=validation_pairs, pair_diameters=pair_diameters, provenance=provenance,
        callback=callback,
    )


def _cosine_factor(step: int, total: int, floor: float) -> float:
    """Learning-rate factor of a cosine decay from 1 at step 0 to ``floor`` at ``total``."""
    progress = min(1.0, step / max(1, total))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@contextlib.contextmanager
def _deterministic_algorithms(enabled: bool, warn_only: bool = False) -> Iterator[None]:
    """Turn torch's deterministic algorithms on for a block, then restore the caller's setting."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=warn_only)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def _evaluate(
    member: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], class_weight: torch.Tensor
) -> float:
    member.eval()
    total, weight_sum = 0.0, 0.0
    with torch.no_grad():
        for images, targets in batches:
            images, targets = images.to(class_weight.device), targets.to(class_weight.device)
            loss = _weighted_loss(member(images), targets, class_weight, reduction="sum")
            total += float(loss)
            weight_sum += float(class_weight[targets].sum())
    return total / max(weight_sum, 1e-12)


def _weighted_loss(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Class-weighted cross entropy; with 5 weights, target codes 3/4 are contact boundary/background."""
    if weight.numel() == N_CLASSES:
        return nnf.cross_entropy(logits, targets, weight=weight, reduction=reduction)
    classes = torch.from_numpy(_TARGET_CLASS).to(targets.device)[targets]
    pixel_weight = weight[targets]
    total = (nnf.cross_entropy(logits, classes, reduction="none") * pixel_weight).sum()
    return total if reduction == "sum" else total / pixel_weight.sum()


def _check_pair(index: int, pair: Pair) -> Pair:
    try:
        image, mask = pair
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pair {index} must be an (image, mask) tuple") from exc
    return check_image_and_mask(f"pair {index}", image, mask)


def check_image_and_mask(where: str, image: np.ndarray, mask: np.ndarray) -> Pair:
    """``(image, mask as int32)`` after checking a training pair; errors start with ``where``.

    Raises
    ------
    ValueError
        Not two 2-D arrays of one shape, or negative labels.
    TypeError
        A mask that does not hold integers.
    """
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim != 2 or mask.shape != image.shape:
        raise ValueError(
            f"{where}: image {image.shape} and mask {mask.shape} must be 2-D arrays of the same shape"
        )
    if not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(f"{where}: the mask must hold integer labels, got dtype {mask.dtype}")
    if mask.size and mask.min() < 0:
        raise ValueError(f"{where}: the mask has negative labels; use 0 for background, 1..K for nuclei")
    return image, mask.astype(np.int32, copy=False)


def _split(
    images: list[np.ndarray], masks: list[np.ndarray], fraction: float, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray], str]:
    if len(images) >= 2:
        n_val = min(len(images) - 1, max(1, round(fraction * len(images))))
        order = rng.permutation(len(images))
        val_idx, train_idx = set(order[:n_val].tolist()), order[n_val:].tolist()
        return (
            [images[i] for i in train_idx], [masks[i] for i in train_idx],
            [images[i] for i in sorted(val_idx)], [masks[i] for i in sorted(val_idx)], "pairs",
        )
    # One image: hold out a strip along its longer axis.
    image, mask = images[0], masks[0]
    axis = 0 if image.shape[0] >= image.shape[1] else 1
    cut = max(1, round(image.shape[axis] * (1 - fraction)))

    def take(array: np.ndarray, part: slice) -> np.ndarray:
        return array[part] if axis == 0 else array[:, part]

    return (
        [take(image, slice(0, cut))], [take(mask, slice(0, cut))],
        [take(image, slice(cut, None))], [take(mask, slice(cut, None))], "strip",
    )


def _class_frequencies(masks: Sequence[np.ndarray], boundary_width: int) -> np.ndarray:
    counts = np.zeros(N_CLASSES, np.float64)
    for mask in masks:
        counts += np.bincount(make_targets(mask, boundary_width).ravel(), minlength=N_CLASSES)[:N_CLASSES]
    return counts / max(counts.sum(), 1.0)


def _summary(values: np.ndarray) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {}
    return {"median": round(float(np.median(finite)), 2), "min": round(float(finite.min()), 2),
            "max": round(float(finite.max()), 2)}


def _round(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 5)


def _celltrack_version() -> str:
    try:
        from importlib.metadata import version

        return version("celltrack")
    except Exception:  # not installed (source checkout)
        return "unknown"
