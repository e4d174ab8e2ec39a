"""SegNet: a small fully convolutional re-design of the DeepCell pixel classifier.

DeepCell (Van Valen et al. 2016) classifies each pixel of a nucleus image as interior, boundary
or background from a patch around it: a few convolutions with max pooling, a 200-wide dense layer
and a 3-way softmax. SegNet keeps that recipe but makes it fully convolutional:

* 5 convolution layers (3×3, ReLU) whose dilations (1, 2, 3, 5, 8) replace the pooling, so the
  receptive field is 39 px (about 1.6 nucleus diameters at the 24 px training diameter) while
  every layer keeps the full input resolution;
* the 200-wide dense layer and the 3-way output are 1×1 convolutions;
* "same" zero padding everywhere, so the probability maps and every convolution feature map align
  pixel for pixel with the input, odd sizes included (the features feed the correlation-filter
  tracker);
* an ensemble of ``n_members`` independently trained members whose softmax outputs are averaged;
* optional test-time augmentation (:data:`TEST_TIME_AUGMENTATIONS`): the softmax outputs are also
  averaged over flips (and transposes) of the input, each mapped back first. With symmetric "same"
  padding these transforms commute exactly with the network's geometry, so the average is equivariant
  to every transform of its group.

Speed (2-core dev box, quiet, 512 px tiles, channels-last): a 700×1100 frame at model scale takes
≈ 0.18 s on two threads and ≈ 0.40 s on one for the default two-member ensemble; the whole SegNet
segmentation of a HeLa frame (rescale, probabilities, seeded watershed) ≈ 0.25 s on two threads. About
half is the dilated 3×3 trunk, the rest the 200-wide head, which runs in cache-sized blocks of rows
as oneDNN 1×1 convolutions with in-place ReLUs. On an oversubscribed machine two torch threads can be
several times slower than one (thread barriers wait for descheduled threads): use one thread there.

Inputs are normalised per frame by percentiles (:func:`normalize_frame`), which removes camera
offsets (HeLa sits near 33,000 on a uint16 scale) and exposure differences for 8- and 16-bit data.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn
from torch.nn import functional as nnf

from celltrack.io.model_folder import load_network, save_model_folder

logger = logging.getLogger(__name__)

ARCHITECTURE = "segnet"
ARCHITECTURE_VERSION = 1
CLASS_NAMES = ("interior", "boundary", "background")
INTERIOR, BOUNDARY, BACKGROUND = 0, 1, 2
N_CLASSES = 3
#: Weights of conv layers 1-4 in the correlation-filter tracker (coarse layers weigh less).
DEFAULT_FEATURE_LAYER_WEIGHTS = (1.0, 0.5, 0.2, 0.2)
#: The study's network as shipped with celltrack (``--model study``); the default segmenter is
#: :class:`~celltrack.models.panoptic.PanopticSegNet`.
DEFAULT_SEGNET_PATH = Path(__file__).parent / "weights" / "segnet_study"
# Pixels per chunk of the 1×1 head without gradients: the 200-wide activations of a chunk stay in cache.
_HEAD_CHUNK_PIXELS = 8192
# Pixels per block of the ensemble's inference head (SegNet.probabilities): as fast as 8192 on one thread,
# fewer thread synchronisations on two.
_ENSEMBLE_BLOCK_PIXELS = 16384
# Most pixels per batch of test-time-augmented copies of a tile: on GPUs up to a default 512 px tile's worth
# (a 16-channel float32 map of it is 16 MB). On the CPU one copy at a time (budget 0), measured faster on one
# thread: 4 copies of a HeLa tile in one batch took 1.7× as long per copy, of a 256² frame 1.2×.
_TTA_BATCH_PIXELS = 512 * 512
_TTA_BATCH_PIXELS_CPU = 0

#: Test-time augmentation of :meth:`SegNet.predict_frame`: "none"; "flip" (identity + left-right flip);
#: "flips" (identity, left-right, up-down, both = 180° rotation); "d4" (those 4 and their transposes: all
#: 8 rotations and reflections of the square). Costs 1, 2, 4 or 8 network passes.
TestTimeAugmentation = Literal["none", "flip", "flips", "d4"]
TEST_TIME_AUGMENTATIONS: tuple[str, ...] = get_args(TestTimeAugmentation)
# A transform is (dims flipped, then transposed?): x -> flip(x, dims) [-> swap Y and X].
_Transform = tuple[tuple[int, ...], bool]
_FLIPS: tuple[_Transform, ...] = (((), False), ((-1,), False), ((-2,), False), ((-2, -1), False))
_TTA_TRANSFORMS: dict[str, tuple[_Transform, ...]] = {
    "none": _FLIPS[:1],
    "flip": _FLIPS[:2],
    "flips": _FLIPS,
    "d4": _FLIPS + tuple((dims, True) for dims, _ in _FLIPS),
}


class SegNetConfig(BaseModel):
    """Architecture and input conventions of :class:`SegNet` (lengths in pixels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: tuple[int, ...] = Field((16, 16, 16, 16, 16), description="Width of each convolution layer.")
    dilations: tuple[int, ...] = Field((1, 2, 3, 5, 8), description="Dilation of each convolution layer.")
    kernel_size: int = Field(3, ge=1, description="Odd kernel size of the convolution layers.")
    fc_width: int = Field(200, ge=1, description="Width of the dense (1×1 convolution) layer.")
    n_members: int = Field(2, ge=1, description="Ensemble size; softmax outputs are averaged.")
    nucleus_diameter: float = Field(
        24.0, gt=0, description="Typical nucleus diameter (px) of the training data after rescaling."
    )
    low_percentile: float = Field(1.0, ge=0, le=100, description="Frame percentile mapped to 0.")
    high_percentile: float = Field(99.8, ge=0, le=100, description="Frame percentile mapped to 1.")

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SegNetConfig:
        if len(self.channels) != len(self.dilations):
            raise ValueError(
                f"channels ({len(self.channels)} layers) and dilations ({len(self.dilations)}) "
                "differ in length"
            )
        if len(self.channels) < 4:
            raise ValueError(
                f"SegNet needs at least 4 convolution layers (features 1-4), got {len(self.channels)}"
            )
        if min(self.channels) < 1 or min(self.dilations) < 1:
            raise ValueError("channels and dilations must be positive")
        if self.low_percentile >= self.high_percentile:
            raise ValueError(
                f"low_percentile ({self.low_percentile}) must be below high_percentile "
                f"({self.high_percentile})"
            )
        return self

    @property
    def receptive_field(self) -> int:
        """Side of the square input region that influences one output pixel (px)."""
        return 1 + (self.kernel_size - 1) * sum(self.dilations)


def normalize_frame(
    frame: np.ndarray, low_percentile: float = 1.0, high_percentile: float = 99.8
) -> np.ndarray:
    """Map a frame's intensities so its ``low_percentile`` becomes 0 and ``high_percentile`` 1.

    The same function prepares training and inference inputs, which makes models insensitive to
    bit depth, camera offset and exposure. Values are not clipped.

    Parameters
    ----------
    frame : numpy.ndarray, shape (Y, X)
        One frame, any real or integer dtype.
    low_percentile, high_percentile : float
        Percentiles (0-100) mapped to 0 and 1.

    Returns
    -------
    numpy.ndarray, shape (Y, X), float32
        Normalised frame; a constant frame gives zeros.

    Raises
    ------
    ValueError
        For a frame that is not 2-D, is empty, or contains NaN/inf.
    TypeError
        For non-numeric data.
    """
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ValueError(f"normalize_frame expects a 2-D frame (Y, X), got shape {frame.shape}")
    if frame.size == 0:
        raise ValueError(f"normalize_frame got an empty frame of shape {frame.shape}")
    if not (np.issubdtype(frame.dtype, np.number) or frame.dtype == bool):
        raise TypeError(f"normalize_frame expects numeric pixels, got dtype {frame.dtype}")
    if np.iscomplexobj(frame):
        raise TypeError(f"normalize_frame expects real pixels, got dtype {frame.dtype}")
    if not 0 <= low_percentile < high_percentile <= 100:
        raise ValueError(
            f"normalize_frame needs 0 <= low_percentile < high_percentile <= 100, got "
            f"{low_percentile}, {high_percentile}"
        )
    data = frame.astype(np.float32, copy=False)
    if np.issubdtype(frame.dtype, np.floating) and not np.isfinite(data).all():
        raise ValueError("normalize_frame: the frame contains NaN or inf values; mask or repair them first")
    low, high = np.percentile(data, [low_percentile, high_percentile])
    spread = float(high - low)
    if spread <= 0:
        # Nearly flat frames (e.g. one bright speck) fall back to the full range instead of exploding.
        spread = float(data.max() - low)
    if spread <= 0:
        return np.zeros(frame.shape, np.float32)
    return ((data - np.float32(low)) / np.float32(spread)).astype(np.float32, copy=False)


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize (N, C, Y, X) maps to ``size`` (antialiased when shrinking).

    Parameters
    ----------
    maps : torch.Tensor, shape (N, C, Y, X)
    size : (int, int)
        Output (Y, X).

    Returns
    -------
    torch.Tensor, shape (N, C, size[0], size[1])
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    shrinking = size[0] < maps.shape[-2] or size[1] < maps.shape[-1]
    return nnf.interpolate(maps, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an integer label image to ``size`` (Y, X)."""
    if labels.shape == tuple(size):
        return labels
    as_float = torch.from_numpy(labels.astype(np.float64, copy=False))[None, None]
    out = nnf.interpolate(as_float, size=size, mode="nearest-exact")[0, 0]
    return out.numpy().astype(labels.dtype)


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor | list[torch.Tensor]],
    image: torch.Tensor,
    tile_size: int,
    margin: int,
) -> list[torch.Tensor]:
    """Apply a translation-equivariant map tile by tile, with overlapping margins.

    When ``margin`` is at least the receptive-field radius of ``fn``, the result equals (up to
    float rounding) ``fn(image)`` on the whole frame, while memory stays bounded by the tile size.

    Parameters
    ----------
    fn : callable
        Maps (1, C_in, h, w) to one tensor or a list of tensors of shape (1, C_k, h, w).
    image : torch.Tensor, shape (1, C_in, Y, X)
    tile_size : int
        Largest core tile side (px); frames up to this size are processed whole.
    margin : int
        Context added on each side of a tile (px), cropped away afterwards.

    Returns
    -------
    list of torch.Tensor, each (1, C_k, Y, X), float32 on the CPU
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"tiled_apply expects a (1, C, Y, X) tensor, got shape {tuple(image.shape)}")
    if tile_size < 1 or margin < 0:
        raise ValueError(f"tiled_apply needs tile_size >= 1 and margin >= 0, got {tile_size}, {margin}")
    height, width = image.shape[-2:]
    y_edges = _tile_edges(height, tile_size)
    x_edges = _tile_edges(width, tile_size)
    outputs: list[torch.Tensor] | None = None
    for y0, y1 in itertools.pairwise(y_edges):
        for x0, x1 in itertools.pairwise(x_edges):
            py0, py1 = max(0, y0 - margin), min(height, y1 + margin)
            px0, px1 = max(0, x0 - margin), min(width, x1 + margin)
            result = fn(image[..., py0:py1, px0:px1])
            parts = [result] if isinstance(result, torch.Tensor) else list(result)
            if outputs is None:
                outputs = [torch.empty((1, p.shape[1], height, width), dtype=torch.float32) for p in parts]
            for out, part in zip(outputs, parts, strict=True):
                out[..., y0:y1, x0:x1] = part[..., y0 - py0 : y1 - py0, x0 - px0 : x1 - px0].float().cpu()
    return outputs or []


def _tta_transforms(augmentation: str) -> tuple[_Transform, ...]:
    """The transforms of a test-time augmentation name, or a ValueError naming the valid ones."""
    if augmentation not in _TTA_TRANSFORMS:
        raise ValueError(
            f"test_time_augmentation must be one of {', '.join(map(repr, TEST_TIME_AUGMENTATIONS))}, "
            f"got {augmentation!r}"
        )
    return _TTA_TRANSFORMS[augmentation]


def _tile_edges(length: int, tile_size: int) -> list[int]:
    n_tiles = max(1, math.ceil(length / tile_size))
    return [round(i * length / n_tiles) for i in range(n_tiles + 1)]


class SegNetMember(nn.Module):
    """One ensemble member: 5 dilated 3×3 convolutions, a 1×1 dense layer, a 1×1 3-way output.

    Parameters
    ----------
    config : SegNetConfig
    """

    def __init__(self, config: SegNetConfig) -> None:
        super().__init__()
        convs = []
        in_channels = 1
        for width, dilation in zip(config.channels, config.dilations, strict=True):
            pad = dilation * (config.kernel_size - 1) // 2
            convs.append(nn.Conv2d(in_channels, width, config.kernel_size, padding=pad, dilation=dilation))
            in_channels = width
        self.convs = nn.ModuleList(convs)
        self.fc = nn.Conv2d(in_channels, config.fc_width, 1)
        self.out = nn.Conv2d(config.fc_width, N_CLASSES, 1)
        # oneDNN runs these thin convolutions ≈ 1.5× faster in channels-last layout.
        self.to(memory_format=torch.channels_last)

    def conv_maps(self, x: torch.Tensor, n_layers: int | None = None) -> list[torch.Tensor]:
        """ReLU outputs of the first ``n_layers`` convolution layers, each (N, C_k, Y, X)."""
        maps = []
        h = x.contiguous(memory_format=torch.channels_last)
        for conv in self.convs[: n_layers if n_layers is not None else len(self.convs)]:
            # In place: one pass less over a large map (autograd keeps the ReLU output it needs).
            h = conv(h).relu_()
            maps.append(h)
        return maps

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last convolution layer, (N, C, Y, X); earlier maps are freed as it goes."""
        h = x.contiguous(memory_format=torch.channels_last)
        for conv in self.convs:
            h = conv(h).relu_()
        return h

    def head_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The 1×1 dense layer + output on feature rows: (P, C) → (P, 3) logits."""
        hidden = torch.addmm(self.fc.bias, rows, self.fc.weight.flatten(1).t()).relu_()
        return torch.addmm(self.out.bias, hidden, self.out.weight.flatten(1).t())

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """1×1 dense layer + output: (N, C, Y, X) features → (N, 3, Y, X) logits."""
        n, channels, height, width = h.shape
        # Channels-last maps are (pixels, channels) matrices already: the head is two matrix products.
        rows = h.permute(0, 2, 3, 1).reshape(-1, channels)
        if torch.is_grad_enabled() or rows.shape[0] <= _HEAD_CHUNK_PIXELS:
            logits = self.head_rows(rows)
        else:
            # Without gradients the head is memory-bound: cache-sized blocks of rows are ≈ 5× faster.
            logits = rows.new_empty((rows.shape[0], N_CLASSES))
            for start in range(0, rows.shape[0], _HEAD_CHUNK_PIXELS):
                block = slice(start, start + _HEAD_CHUNK_PIXELS)
                logits[block] = self.head_rows(rows[block])
        return logits.view(n, height, width, N_CLASSES).permute(0, 3, 1, 2)

    def logits_at(self, x: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """Logits at chosen pixels only (training on a subset of pixels skips most of the head).

        Parameters
        ----------
        x : torch.Tensor, shape (N, 1, Y, X)
        pixels : torch.Tensor, shape (N, K), int64
            Flat pixel indices ``y * X + x`` per image.

        Returns
        -------
        torch.Tensor, shape (N, 3, K)
        """
        h = self.trunk(x)
        n, channels = h.shape[:2]
        flat = h.permute(0, 2, 3, 1).reshape(n, -1, channels)
        picked = torch.gather(flat, 1, pixels[..., None].expand(-1, -1, channels))
        return self.head_rows(picked.reshape(-1, channels)).view(n, -1, N_CLASSES).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, Y, X) normalised images → (N, 3, Y, X) logits."""
        return self.head(self.trunk(x))


class SegNet(nn.Module):
    """Ensemble of :class:`SegNetMember` pixel classifiers (interior, boundary, background).

    Parameters
    ----------
    config : SegNetConfig, optional
        Architecture; defaults to :class:`SegNetConfig()`.

    Attributes
    ----------
    config : SegNetConfig
    members : torch.nn.ModuleList of SegNetMember
    training_info : dict
        Training provenance written to ``config.json`` (empty for an untrained network).
    """

    def __init__(self, config: SegNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or SegNetConfig()
        self.members = nn.ModuleList(SegNetMember(self.config) for _ in range(self.config.n_members))
        self.training_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ tensors
    @property
    def receptive_field(self) -> int:
        """Side of the input region that influences one output pixel (px)."""
        return self.config.receptive_field

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble logits.

        Parameters
        ----------
        x : torch.Tensor, shape (N, 1, Y, X), float32
            Normalised images (:func:`normalize_frame`).

        Returns
        -------
        torch.Tensor, shape (N, 3, Y, X)
            Log of the member-averaged class probabilities, so that ``softmax(forward(x))`` is the
            ensemble average (for one member these are its log-softmax logits).
        """
        self._check_input(x)
        log_probs = [torch.log_softmax(member(x), dim=1) for member in self.members]
        if len(log_probs) == 1:
            return log_probs[0]
        return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw logits of every member, shape (M, N, 3, Y, X)."""
        self._check_input(x)
        return torch.stack([member(x) for member in self.members])

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble-averaged softmax, shape (N, 3, Y, X); classes are interior, boundary, background."""
        self._check_input(x)
        if torch.is_grad_enabled():
            total = torch.softmax(self.members[0](x), dim=1)
            for member in self.members[1:]:
                total = total + torch.softmax(member(x), dim=1)
            return total / len(self.members)
        # Inference: every member's head, softmax and the average run on blocks of rows while the block
        # is in cache, instead of as whole-frame passes over (pixels × 200) activations; oneDNN's 1×1
        # convolutions on channels-last blocks use both threads of a 2-core machine best.
        trunks = [member.trunk(x) for member in self.members]
        height, width = trunks[0].shape[-2:]
        probs = x.new_empty((x.shape[0], N_CLASSES, height, width))
        # Rows of all images of a batch go into one block: keep the block's pixels cache-sized.
        rows = max(1, _ENSEMBLE_BLOCK_PIXELS // (width * x.shape[0]))
        scale = 1.0 / len(self.members)
        for y in range(0, height, rows):
            total = None
            for member, trunk in zip(self.members, trunks, strict=True):
                logits = member.out(member.fc(trunk[..., y : y + rows, :]).relu_())
                member_probs = torch.softmax(logits, dim=1)
                total = member_probs if total is None else total.add_(member_probs)
            probs[..., y : y + rows, :] = total.mul_(scale)
        return probs

    def augmented_probabilities(
        self, x: torch.Tensor, augmentation: TestTimeAugmentation = "none"
    ) -> torch.Tensor:
        """Ensemble softmax averaged over flips/transposes of the input (test-time augmentation).

        The transformed copies of ``x`` go through the network in batches of up to 512 × 512 pixels
        on a GPU, one at a time on the CPU (faster there; the transposed copies of a non-square input
        always in their own batches), and each output is transformed back before the average. The
        result is equivariant to every transform of the chosen group: transforming ``x`` transforms
        the output the same way (up to float rounding).

        Parameters
        ----------
        x : torch.Tensor, shape (N, 1, Y, X), float32
            Normalised images.
        augmentation : {"none", "flip", "flips", "d4"}
            Transforms averaged (:data:`TestTimeAugmentation`): 1, 2, 4 or 8 network passes.

        Returns
        -------
        torch.Tensor, shape (N, 3, Y, X)
            Class probabilities (interior, boundary, background); sums to 1 per pixel.

        Raises
        ------
        ValueError
            For an unknown ``augmentation``.
        """
        transforms = _tta_transforms(augmentation)
        self._check_input(x)
        if len(transforms) == 1:
            return self.probabilities(x)
        n = x.shape[0]
        budget = _TTA_BATCH_PIXELS_CPU if x.device.type == "cpu" else _TTA_BATCH_PIXELS
        per_batch = max(1, budget // x.numel())
        total = x.new_zeros((n, N_CLASSES, *x.shape[-2:]))
        for transpose in (False, True):
            group = [dims for dims, transposed in transforms if transposed == transpose]
            for start in range(0, len(group), per_batch):
                chunk = group[start : start + per_batch]
                batch = torch.cat([x.flip(dims) if dims else x for dims in chunk])
                probs = self.probabilities(batch.transpose(-2, -1) if transpose else batch)
                if transpose:
                    probs = probs.transpose(-2, -1)
                for k, dims in enumerate(chunk):
                    part = probs[k * n : (k + 1) * n]
                    total.add_(part.flip(dims) if dims else part)
        return total.div_(len(transforms))

    def features(self, x: torch.Tensor, member: int = 0) -> list[torch.Tensor]:
        """ReLU maps of convolution layers 1-4 of one member, each (N, C_k, Y, X), aligned with ``x``.

        Parameters
        ----------
        x : torch.Tensor, shape (N, 1, Y, X)
            Normalised images.
        member : int
            Which ensemble member provides the features (members learn different filters, so
            features of different members must not be mixed within one tracker).
        """
        self._check_input(x)
        if not 0 <= member < len(self.members):
            raise ValueError(f"member must be in [0, {len(self.members)}), got {member}")
        return self.members[member].conv_maps(x, n_layers=4)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"SegNet expects a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"SegNet expects a (N, 1, Y, X) tensor, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(
                f"SegNet expects float32 input, got {x.dtype}; normalise with normalize_frame first"
            )

    # ------------------------------------------------------------------ frames
    def prepare_frame(self, frame: np.ndarray, nucleus_diameter: float | None = None) -> torch.Tensor:
        """Normalise a raw frame and rescale it to the training nucleus diameter.

        Parameters
        ----------
        frame : numpy.ndarray, shape (Y, X)
            Raw frame, any numeric dtype.
        nucleus_diameter : float, optional
            Typical nucleus diameter in ``frame`` (px); ``None`` means it matches the model.

        Returns
        -------
        torch.Tensor, shape (1, 1, Y', X'), float32, on the model's device
            With Y' = round(Y * model_diameter / nucleus_diameter), same for X'.
        """
        normalised = normalize_frame(frame, self.config.low_percentile, self.config.high_percentile)
        tensor = torch.from_numpy(normalised)[None, None].to(self.device)
        size = self.scaled_size(normalised.shape, nucleus_diameter)
        return resize_maps(tensor, size)

    def scaled_size(self, shape: Sequence[int], nucleus_diameter: float | None) -> tuple[int, int]:
        """Frame size (Y, X) after rescaling from ``nucleus_diameter`` to the model's diameter."""
        if nucleus_diameter is None:
            return int(shape[0]), int(shape[1])
        if not nucleus_diameter > 0:
            raise ValueError(f"nucleus_diameter must be positive (px), got {nucleus_diameter}")
        factor = self.config.nucleus_diameter / float(nucleus_diameter)
        return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))

    def default_margin(self) -> int:
        """Tile margin that makes tiled inference equal whole-frame inference (px)."""
        return self.receptive_field // 2 + 2

    def predict_frame(
        self,
        frame: np.ndarray,
        *,
        nucleus_diameter: float | None = None,
        tile_size: int = 512,
        tile_margin: int | None = None,
        test_time_augmentation: TestTimeAugmentation = "none",
    ) -> np.ndarray:
        """Class probabilities of one raw frame, tiled so that memory stays bounded.

        Parameters
        ----------
        frame : numpy.ndarray, shape (Y, X)
            Raw frame, any numeric dtype.
        nucleus_diameter : float, optional
            Typical nucleus diameter in ``frame`` (px); the frame is rescaled to the model's
            diameter and the probabilities are rescaled back.
        tile_size : int
            Largest tile side (px, at model scale).
        tile_margin : int, optional
            Overlap context per side; defaults to the receptive-field radius + 2, which makes the
            result equal whole-frame inference.
        test_time_augmentation : {"none", "flip", "flips", "d4"}
            Average the probabilities over these transforms of each tile
            (:meth:`augmented_probabilities`; exact on tiles as on the whole frame). A tile's
            transformed copies run in batches of at most a default tile's pixels on a GPU, one at a
            time on the CPU, so memory stays bounded; time grows with the number of copies.

        Returns
        -------
        numpy.ndarray, shape (3, Y, X), float32
            P(interior), P(boundary), P(background); sums to 1 per pixel.

        Raises
        ------
        ValueError
            For an unknown ``test_time_augmentation``.
        """
        _tta_transforms(test_time_augmentation)  # fail before any work
        frame = np.asarray(frame)
        image = self.prepare_frame(frame, nucleus_diameter)
        margin = self.default_margin() if tile_margin is None else tile_margin
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                (probs,) = tiled_apply(
                    lambda tile: self.augmented_probabilities(tile, test_time_augmentation),
                    image,
                    tile_size,
                    margin,
                )
                probs = resize_maps(probs, frame.shape)
        finally:
            self.train(was_training)
        if probs.shape[-2:] != image.shape[-2:]:
            probs = probs / probs.sum(dim=1, keepdim=True)  # interpolation keeps the sum, rounding may not
        return probs[0].numpy()

    def frame_features(
        self,
        frame: np.ndarray,
        *,
        member: int = 0,
        nucleus_diameter: float | None = None,
        tile_size: int = 512,
        tile_margin: int | None = None,
    ) -> list[np.ndarray]:
        """Convolution layer 1-4 feature maps of one raw frame at the frame's resolution.

        Parameters
        ----------
        frame : numpy.ndarray, shape (Y, X)
        member : int
            Ensemble member that provides the features.
        nucleus_diameter, tile_size, tile_margin
            As in :meth:`predict_frame`.

        Returns
        -------
        list of numpy.ndarray, each (C_k, Y, X), float32
            Layers 1-4, pixel-aligned with ``frame``.
        """
        frame = np.asarray(frame)
        image = self.prepare_frame(frame, nucleus_diameter)
        margin = self.default_margin() if tile_margin is None else tile_margin
        with torch.inference_mode():
            maps = tiled_apply(lambda x: self.features(x, member), image, tile_size, margin)
            return [resize_maps(m, frame.shape)[0].numpy() for m in maps]

    # ------------------------------------------------------------------ folders
    def save(self, path: str | Path, *, weights_dtype: str = "float16", overwrite: bool = False) -> Path:
        """Write the model folder (``config.json`` + ``weights.pt``).

        Parameters
        ----------
        path : str or pathlib.Path
            Folder to create.
        weights_dtype : {"float16", "float32"}
            Storage dtype; float16 halves the size and is cast back to float32 on load.
        overwrite : bool
            Replace an existing folder.
        """
        config = {
            "architecture_version": ARCHITECTURE_VERSION,
            "classes": list(CLASS_NAMES),
            "hyperparameters": self.config.model_dump(mode="json"),
            "normalisation": {
                "method": "percentile",
                "low_percentile": self.config.low_percentile,
                "high_percentile": self.config.high_percentile,
            },
            "nucleus_diameter": self.config.nucleus_diameter,
            "receptive_field": self.receptive_field,
            "feature_layer_weights": list(DEFAULT_FEATURE_LAYER_WEIGHTS),
            "training": self.training_info,
        }
        return save_model_folder(path, ARCHITECTURE, config, self.state_dict(), weights_dtype=weights_dtype,
                                 overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> SegNet:
        """Read a SegNet model folder.

        Parameters
        ----------
        path : str or pathlib.Path, optional
            Model folder; ``None`` loads the study model shipped with celltrack.
        device : str or torch.device
            Where to put the weights.

        Raises
        ------
        ValueError
            Missing or broken folder, another architecture, or weights that do not fit.
        """
        path = Path(path) if path is not None else DEFAULT_SEGNET_PATH
        model = load_network(path, ARCHITECTURE, ARCHITECTURE_VERSION, SegNetConfig, cls)
        return model.to(device).eval()
