"""``recognet`` features: RecogNet conv maps as correlation-filter layers, translation-equivariant.

Why the study's RecogNet tracker failed (precision < 10 %, peaks stuck at the window centre, drift toward
the image origin), and what this extractor does instead:

1. *A fixed pattern at zero shift.* The study ran the network on each 40×40 window. Zero padding in six
   convolutions and three pools makes the maps near the window border depend on the border, not on the
   image: every window carries the same frame-shaped pattern, which correlates with itself best at zero
   shift, so the filter "finds" the window centre whatever the cell does. Here the trunk runs once on the
   whole frame, padded by more than its receptive-field radius with the empty-field (background) value,
   and windows are cropped from the maps afterwards: every window pixel sees real image context, and a
   translated cell gives translated maps (exactly, for shifts that are multiples of the layer's stride).
2. *A large DC component.* Post-ReLU channels are non-negative with a large mean; a constant correlates
   with the Hann-tapered window best at zero shift. Every channel loses its mean per window, and each
   layer is divided by one std per window (:func:`standardise_layer`); giving every channel unit std instead
   (:func:`celltrack.features.base.standardise_windows`, ``normalisation="channel"``) raises the noise of
   channels that are nearly silent in a window to full weight: on SIM+ 01 it cost 0.10 in cf-track P@20.
3. *Misaligned upsampling.* A 2×2 pool puts pooled pixel ``i`` at input ``2 i + 0.5``, and
   ``interpolate(..., align_corners=False)`` adds another ``(s - 1) / 2`` offset: the deep maps sit a few
   pixels toward the origin of the window, and since the tracker re-centres on its own estimate the error
   accumulates into a drift toward the origin. RecogNet pools 3×3 with stride 2 and padding 1, so a layer
   of stride ``s`` has pixel ``i`` centred exactly on input ``s i``, and :func:`upsample_aligned`
   interpolates at exactly those coordinates.

4. *Cost.* The network runs at its training nucleus size (16 px) on the *model grid*, where the filters
   work too (a 55 px SIM+ nucleus is followed in a 40 px window, not a 135 px one); the trunk runs once per
   frame, batched, on the tiles the windows need (the whole frame when that is cheaper); deep layers are
   interpolated per window from their strided maps, never upsampled over the frame; principal components
   cut the channels the filters transform from 48 to 9.

Defaults, chosen by cross-validation in ``benchmarks/recognet.py`` (the best worst-case cf-track P@20 over
HeLa 01 and SIM+ 01, reported on synthetic movies of look-alike nuclei that cross, and each movie's choice
reported on the other; docs/benchmarks.md): the normalised input, conv4 and conv6 (strides 1, 2, 4), equal
weights, each conv layer projected on its first 4 principal components, per-layer normalisation. Chosen on
SIM+ 01 alone, the input and conv6 alone won there and lost to raw features on HeLa 01: the layers
that help depend on the movie, so the default is the one that holds on both. Outside the image, windows
are filled with the features of an empty field of view.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.nn import functional as nnf

from celltrack.cf import centres_array, window_origins
from celltrack.features.base import (
    FeatureExtractor,
    FullFrameExtractor,
    crop_windows,
    standardise_windows_,
)
from celltrack.models.recognet import TRACKING_RECOGNET_PATH, RecogNet
from celltrack.models.recognet_data import normalise_frame
from celltrack.models.segnet import resize_maps

logger = logging.getLogger(__name__)

#: Layer index of the network input (the normalised frame) in :attr:`RecogNetFeaturesConfig.layers`.
INPUT_LAYER = -1

__all__ = [
    "INPUT_LAYER",
    "FrameRegions",
    "RecogNetFeatures",
    "RecogNetFeaturesConfig",
    "StudyWindowFeatures",
    "extract_recognet_windows",
    "grid_input",
    "principal_axes",
    "project_channels",
    "receptive_radius",
    "recognet_feature_maps",
    "sample_strided",
    "standardise_layer",
    "standardise_layer_",
    "upsample_aligned",
]


class RecogNetFeaturesConfig(BaseModel):
    """Parameters of :class:`RecogNetFeatures`.

    Attributes
    ----------
    layers : tuple of int
        0-based conv layers used as feature layers, shallow to deep (input, conv4, conv6 by default);
        :data:`INPUT_LAYER` (-1) adds the normalised frame itself as a one-channel layer.
    layer_weights : tuple of float
        Correlation-filter weight of each layer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: tuple[int, ...] = Field((-1, 3, 5), min_length=1, description="0-based conv layers; -1: input.")
    layer_weights: tuple[float, ...] = Field((1.0, 1.0, 1.0), min_length=1)
    model_diameter: float | None = Field(
        None,
        gt=0,
        description="Nucleus diameter (px) at which the network sees the nuclei: frames are resized from the "
        "movie's nucleus diameter (when the extractor is given one) to this and the maps back. None: native "
        "scale.",
    )
    normalisation: Literal["channel", "layer"] = Field(
        "layer",
        description="Per window, every channel loses its mean; channel: each is then divided by its own std "
        "(equal weight, also for channels nearly silent in the window); layer: all channels of a layer are "
        "divided by one std (a channel keeps its share of the layer's energy).",
    )
    components: int | None = Field(
        4,
        ge=1,
        description="Project every conv layer on its first principal components (fitted on the first frame "
        "the extractor computes, then kept): fewer channels make the filters' FFTs cheaper. None: all.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RecogNetFeaturesConfig:
        if len(self.layers) != len(self.layer_weights):
            raise ValueError(
                f"layers ({len(self.layers)}) and layer_weights ({len(self.layer_weights)}) differ in length"
            )
        if any(b <= a for a, b in zip(self.layers, self.layers[1:], strict=False)):
            raise ValueError(f"layers must be strictly increasing (shallow to deep), got {self.layers}")
        if min(self.layers) < INPUT_LAYER or max(self.layers) > 5:
            raise ValueError(f"layers must be conv indices 0..5 or -1 (the input), got {self.layers}")
        if any(w < 0 for w in self.layer_weights) or sum(self.layer_weights) <= 0:
            raise ValueError(
                f"layer_weights must be non-negative with a positive sum, got {self.layer_weights}"
            )
        return self


def receptive_radius(layer: int) -> int:
    """Receptive-field radius (px) of 0-based conv layer ``layer`` (3×3 convs, 3×3 stride-2 pools); -1: 0."""
    radius, stride = 0, 1
    for index in range(layer + 1):
        if index and index % 2 == 0:
            radius += stride  # the pool's 3×3 window at the current stride
            stride *= 2
        radius += stride
    return radius


def upsample_aligned(maps: torch.Tensor, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of stride-``s`` maps whose pixel ``i`` is centred on input pixel ``s i``.

    Output pixel ``p`` takes the map value at the fractional index ``p / s``: no half-pixel offset, so the
    upsampled maps stay aligned with the input whatever the stride.

    Parameters
    ----------
    maps : torch.Tensor, shape (N, C, h, w)
    stride : int
    size : (int, int)
        Output (Y, X); must satisfy ``Y <= s (h - 1) + 1`` and ``X <= s (w - 1) + 1`` (no extrapolation).

    Returns
    -------
    torch.Tensor, shape (N, C, Y, X)
    """
    if stride == 1:
        return maps[..., : size[0], : size[1]]
    full = (stride * (maps.shape[-2] - 1) + 1, stride * (maps.shape[-1] - 1) + 1)
    if size[0] > full[0] or size[1] > full[1]:
        raise ValueError(f"cannot upsample {tuple(maps.shape[-2:])} maps of stride {stride} to {size}")
    # align_corners=True maps output p to input p * (h - 1) / (full - 1) = p / s exactly.
    return nnf.interpolate(maps, size=full, mode="bilinear", align_corners=True)[..., : size[0], : size[1]]


def grid_input(model: RecogNet, frame: np.ndarray | torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Network input of a raw frame on the model grid: normalised, resized by ``scale``, standardised.

    The resizing keeps pixel centres: frame pixel ``c`` lands on grid coordinate ``(c + 0.5) · scale - 0.5``
    (antialiased when shrinking); the grid has ``floor(Y · scale) × floor(X · scale)`` pixels.

    Returns
    -------
    torch.Tensor, shape (1, 1, Y', X'), float32 on the model's device
    """
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ValueError(f"frame must be 2-D (Y, X), got shape {frame.shape}; pass one time point")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale}")
    cfg = model.config
    # A grid of 2^18 pixels fixes the percentiles to well under a grey level and takes a quarter of the time
    # a whole HeLa frame would.
    levels = normalise_frame(frame, cfg.background_percentile, cfg.high_percentile, max_pixels=1 << 18)
    tensor = torch.from_numpy(levels)[None, None]
    if scale != 1.0:
        tensor = nnf.interpolate(
            tensor,
            scale_factor=scale,
            mode="bilinear",
            align_corners=False,
            antialias=scale < 1.0,
            recompute_scale_factor=False,
        )
        if min(tensor.shape[-2:]) < 1:
            raise ValueError(f"a {frame.shape} frame scaled by {scale:.3g} leaves no pixels")
    return model.standardise(tensor.to(model.device))


def recognet_feature_maps(
    model: RecogNet,
    frame: np.ndarray | torch.Tensor,
    layers: Sequence[int] = (2, 3, 5),
    scale: float = 1.0,
    *,
    grid: bool = False,
) -> list[torch.Tensor]:
    """Full-frame RecogNet conv maps at the frame's (or the model grid's) resolution.

    Parameters
    ----------
    model : RecogNet
    frame : numpy.ndarray or torch.Tensor, shape (Y, X)
        Raw frame (normalised per frame as in training).
    layers : sequence of int
        0-based conv layers; :data:`INPUT_LAYER` (-1) for the standardised input.
    scale : float
        The network runs on the frame resized by this factor (:func:`grid_input`, e.g. to bring nuclei to
        the scale it learnt).
    grid : bool
        Return the maps on that resized grid; otherwise they are resized back to the frame, pixel-aligned.

    Returns
    -------
    list of torch.Tensor
        One (C_l, Y, X) float32 map per layer on the model's device ((C_l, Y', X') with ``grid``).
    """
    frame_size = tuple(np.shape(frame))
    image = grid_input(model, frame, scale)
    cfg = model.config
    height, width = image.shape[-2:]
    deepest = max(layers)
    max_stride = cfg.layer_strides[deepest] if deepest >= 0 else 1
    margin = -(-receptive_radius(deepest) // max_stride) * max_stride + max_stride
    # The padded size is a multiple of the deepest stride so that every layer's grid starts at padded pixel 0.
    pad_bottom = margin + (-(height + 2 * margin)) % max_stride
    pad_right = margin + (-(width + 2 * margin)) % max_stride
    # An empty field of view (normalised background 0) around the frame, not zero after standardisation.
    padded = nnf.pad(
        image, (margin, pad_right, margin, pad_bottom), value=float(model.standardise(torch.zeros(())).item())
    )
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            maps = model.conv_maps(padded, deepest + 1) if deepest >= 0 else []
            out = []
            for layer in layers:
                stride = cfg.layer_strides[layer] if layer >= 0 else 1
                source = maps[layer] if layer >= 0 else padded
                full = upsample_aligned(source, stride, (margin + height, margin + width))[
                    :, :, margin:, margin:
                ]
                out.append((full if grid else resize_maps(full, frame_size))[0].contiguous())
    finally:
        model.train(was_training)
    return out


def standardise_layer(windows: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Zero mean per window and channel, then one std per window for the whole layer.

    Unlike :func:`celltrack.features.base.standardise_windows`, a channel that is nearly silent in a window
    stays small instead of having its noise raised to unit variance.

    Parameters
    ----------
    windows : torch.Tensor, shape (N, C, H, W)
    eps : float
        Windows whose layer std is below ``eps`` (flat windows) become all zeros.

    Returns
    -------
    torch.Tensor, shape (N, C, H, W), float32
        Every window has zero mean per channel and unit mean square over the layer.
    """
    return standardise_layer_(windows.to(torch.float32, copy=True), eps)


def standardise_layer_(windows: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """:func:`standardise_layer` in place on a float32 (N, C, H, W) tensor the caller owns; returns it."""
    if windows.dtype != torch.float32:
        raise TypeError(f"windows must be float32 to be standardised in place, got {windows.dtype}")
    windows.sub_(windows.mean(dim=(-2, -1), keepdim=True))
    elements = windows.shape[1] * windows.shape[2] * windows.shape[3]
    std = torch.linalg.vector_norm(windows, dim=(1, 2, 3), keepdim=True).div_(math.sqrt(max(elements, 1)))
    # Dividing a flat window by infinity zeroes it.
    std.masked_fill_(std <= eps, math.inf)
    return windows.div_(std)


class RecogNetFeatures(FullFrameExtractor):
    """RecogNet conv maps (see :class:`RecogNetFeaturesConfig` for the layers) as correlation-filter layers.

    Windows live on the *model grid*: the frame rescaled so that its nuclei have the diameter the network
    was trained at (``grid_scale`` model pixels per frame pixel; 1 when the movie's nuclei are within 5 % of
    it, or when no diameter is known). The tracker maps positions to that grid, so a SIM+ nucleus of 55 px
    is followed in a 40 px window of 16 px nuclei instead of a 135 px one, and the network never runs on,
    nor upsamples to, a resolution the filters do not use.

    For every frame, the trunk runs once, batched, on the parts of the frame that the requested windows
    need: square tiles (window plus a recentring slack, plus the receptive-field context) around the
    windows, or the whole frame when the tiles would cost more. Deep layers stay at their stride; each
    window is interpolated from its low-resolution block (exactly as :func:`upsample_aligned` would do for
    the whole frame). :meth:`compute_maps` gives the same features as full grid-resolution maps (slow; for
    inspection and tests).

    Parameters
    ----------
    model : RecogNet, str or pathlib.Path, optional
        A network or a model folder; the model shipped for tracking features by default
        (:data:`~celltrack.models.recognet.TRACKING_RECOGNET_PATH`).
    config : RecogNetFeaturesConfig, optional
    device : torch.device or str
        Where maps and windows are computed (CPU default).
    nucleus_diameter : float, optional
        Typical nucleus diameter in the movie (px); frames are resized by ``model_diameter /
        nucleus_diameter`` (within ±5 %: not at all). ``model_diameter`` is the config's, else the model's
        training diameter.
    """

    name = "recognet"

    def __init__(
        self,
        model: RecogNet | str | Path | None = None,
        config: RecogNetFeaturesConfig | None = None,
        device: torch.device | str = "cpu",
        nucleus_diameter: float | None = None,
    ) -> None:
        self.config = config if config is not None else RecogNetFeaturesConfig()
        if nucleus_diameter is not None and not (math.isfinite(nucleus_diameter) and nucleus_diameter > 0):
            raise ValueError(f"nucleus_diameter must be a positive number (px), got {nucleus_diameter}")
        self.device = torch.device(device)
        if model is None or isinstance(model, str | Path):
            model = RecogNet.load(model if model is not None else TRACKING_RECOGNET_PATH, device=self.device)
        elif not isinstance(model, RecogNet):
            raise TypeError(f"model must be a RecogNet or a model folder path, got {type(model).__name__}")
        self.model = model.to(self.device).eval()
        if max(self.config.layers) >= len(self.model.config.channels):
            raise ValueError(f"layers {self.config.layers} exceed the network's conv layers")
        self.model_diameter = (
            self.config.model_diameter
            if self.config.model_diameter is not None
            else self.model.config.nucleus_diameter
        )
        self.scale = 1.0
        if nucleus_diameter is not None and self.model_diameter is not None:
            factor = self.model_diameter / nucleus_diameter
            self.scale = 1.0 if abs(math.log(factor)) <= math.log(1.05) else factor
            if self.scale > 2.0:
                logger.warning(
                    "RecogNet upsamples the frames %.1f× (nucleus diameter %.1f px measured, the network "
                    "sees %.0f px): slow, and wrong if the targets are small markers rather than whole "
                    "nuclei; give whole-nucleus labels",
                    self.scale,
                    nucleus_diameter,
                    self.model_diameter,
                )
        self.layer_weights = tuple(self.config.layer_weights)
        cfg = self.model.config
        deepest = max(self.config.layers)
        self.strides = tuple(cfg.layer_strides[i] if i >= 0 else 1 for i in self.config.layers)
        self.max_stride = cfg.layer_strides[deepest] if deepest >= 0 else 1
        # Context around every computed region: the deepest layer's receptive radius, rounded up to a stride
        # multiple (then every map pixel a window interpolates from sees only real context).
        self.margin = -(-receptive_radius(deepest) // self.max_stride) * self.max_stride
        self._fill = self._background_features()
        #: Per layer, a (C_l, k) projection on the principal components (None: the layer is kept whole);
        #: fitted on the first maps computed when ``config.components`` is set.
        self.projections: list[torch.Tensor | None] | None = None

    @property
    def grid_scale(self) -> float:
        """Model-grid pixels per frame pixel (windows, centres and filters live on that grid)."""
        return self.scale

    @property
    def layer_channels(self) -> tuple[int, ...]:
        """Channels of each feature layer (after the principal-component projection, if any)."""
        whole = (self.model.config.channels[i] if i >= 0 else 1 for i in self.config.layers)
        k = self.config.components
        return tuple(c if k is None or c == 1 else min(k, c) for c in whole)

    def project(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Layer maps (K, C_l, h, w) on their principal components, fitting them on the first call."""
        if self.config.components is None:
            return maps
        if self.projections is None:
            self.projections = [
                principal_axes(m, self.config.components) if m.shape[1] > 1 else None for m in maps
            ]
        return [
            m if p is None else project_channels(m, p) for m, p in zip(maps, self.projections, strict=True)
        ]

    def _fills(self) -> list[torch.Tensor]:
        """Empty-field features per layer, projected like the maps."""
        if not self.projections:
            return self._fill
        return [f if p is None else f @ p for f, p in zip(self._fill, self.projections, strict=True)]

    def _background_features(self) -> list[torch.Tensor]:
        """Feature values of an empty field of view, per layer: (C_l,)."""
        side = 2 * receptive_radius(max(self.config.layers)) + 9
        maps = recognet_feature_maps(self.model, np.zeros((side, side), np.float32), self.config.layers)
        return [m[:, side // 2, side // 2].clone() for m in maps]

    def grid_image(self, frame: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The frame normalised, rescaled to the model grid and standardised: (1, 1, Y', X') float32."""
        return grid_input(self.model, frame, self.scale).to(self.device)

    def compute_maps(self, frame: np.ndarray | torch.Tensor) -> list[torch.Tensor]:
        """Full maps at the model grid's resolution: one (C_l, Y', X') tensor per layer (reference path)."""
        maps = recognet_feature_maps(self.model, frame, self.config.layers, self.scale, grid=True)
        return [m[0] for m in self.project([m[None] for m in maps])]

    def windows_from_maps(
        self, maps: Sequence[torch.Tensor], centres: np.ndarray | torch.Tensor, size: int
    ) -> list[torch.Tensor]:
        """Crop (empty-field fill outside the image) and standardise windows: (N, C_l, S, S) per layer."""
        if len(maps) != self.n_layers:
            raise ValueError(f"{self.name} expects {self.n_layers} layer maps, got {len(maps)}")
        return [
            self._standardise(crop_windows(layer, centres, size, fill=fill.to(layer.device)))
            for layer, fill in zip(maps, self._fills(), strict=True)
        ]

    def _standardise(self, windows: torch.Tensor) -> torch.Tensor:
        """Per-window normalisation of freshly cropped (caller-owned) windows, in place."""
        windows = windows.to(torch.float32).contiguous()
        if self.config.normalisation == "channel":
            return standardise_windows_(windows)
        return standardise_layer_(windows)

    def window_cropper(
        self, frame: np.ndarray | torch.Tensor, size: int
    ) -> Callable[[np.ndarray | torch.Tensor], list[torch.Tensor]]:
        """Crop function over the lazily computed regions of this frame (centres, ``size``: model grid)."""
        regions = FrameRegions(self, frame)
        return lambda centres: regions.windows(centres, size)

    def extract_windows(
        self, frame: np.ndarray | torch.Tensor, centres: np.ndarray | torch.Tensor, size: int
    ) -> list[torch.Tensor]:
        """Feature windows around model-grid ``centres`` (see :meth:`FeatureExtractor.extract_windows`)."""
        return FrameRegions(self, frame).windows(centres, size)


class FrameRegions:
    """One frame's RecogNet maps, computed when windows ask for them (tiles or the whole frame).

    Parameters
    ----------
    extractor : RecogNetFeatures
    frame : numpy.ndarray or torch.Tensor, shape (Y, X)
        Raw frame.
    slack : float
        Tiles cover each window plus this fraction of its side on every side, so that the windows of a
        recentring pass (a few px away) reuse them.

    Attributes
    ----------
    passes : int
        Forward passes run so far (each one batched over all its tiles).
    computed_pixels : int
        Input pixels the trunk has run on, context included.
    """

    def __init__(self, extractor: RecogNetFeatures, frame: np.ndarray | torch.Tensor, slack: float = 0.2):
        self.extractor = extractor
        image = extractor.grid_image(frame)
        self.height, self.width = int(image.shape[-2]), int(image.shape[-1])
        margin, stride = extractor.margin, extractor.max_stride
        # Padded with the empty-field value; the padded size is a multiple of the deepest stride so that
        # every layer's grid starts at padded pixel 0 (and at every tile origin, a multiple of it).
        pad_bottom = margin + (-(self.height + 2 * margin)) % stride
        pad_right = margin + (-(self.width + 2 * margin)) % stride
        empty = float(extractor.model.standardise(torch.zeros(())).item())
        self.padded = nnf.pad(image, (margin, pad_right, margin, pad_bottom), value=empty)
        self.slack = slack
        self.full: list[torch.Tensor] | None = None
        self.tile_side = 0
        self.tile_origins = torch.zeros((0, 2), dtype=torch.int64)
        self.tile_maps: list[torch.Tensor] = []
        self.passes = 0
        self.computed_pixels = 0

    def _run(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """Low-resolution maps (K, C_l, h_l, w_l) of the feature layers for padded inputs (K, 1, H, W)."""
        extractor = self.extractor
        layers = extractor.config.layers
        self.passes += 1
        self.computed_pixels += int(inputs.shape[0] * inputs.shape[-2] * inputs.shape[-1])
        with torch.inference_mode():
            maps = (
                extractor.model.conv_maps(inputs, max(layers) + 1, channels_last=True)
                if max(layers) >= 0
                else []
            )
        return self.extractor.project([maps[layer] if layer >= 0 else inputs for layer in layers])

    def _full_maps(self) -> list[torch.Tensor]:
        if self.full is None:
            self.full = self._run(self.padded)
            self.tile_maps, self.tile_origins = [], self.tile_origins[:0]
        return self.full

    def _ensure_tiles(self, origins: torch.Tensor, size: int) -> torch.Tensor | None:
        """Tile of every window (computing missing tiles in one pass); None: use the whole frame."""
        extractor = self.extractor
        stride, margin = extractor.max_stride, extractor.margin
        side = -(-(size + 2 * math.ceil(self.slack * size)) // stride) * stride
        if self.tile_side not in (0, side) or side > min(self.height, self.width):
            return None
        self.tile_side = side
        low = origins.clamp(min=0)
        high = torch.minimum(origins + size, torch.tensor([self.height, self.width])) - 1
        tile = self._containing(low, high)
        missing = tile < 0
        if bool(missing.any()):
            # One tile per missing window (windows sharing a tile origin share the tile).
            centre = (low[missing] + high[missing]) // 2
            start = (centre - side // 2).div(stride, rounding_mode="floor") * stride
            limit = torch.tensor([self.height - side, self.width - side]) // stride * stride
            start = torch.minimum(start.clamp(min=0), limit)
            start = torch.unique(start, dim=0)
            tile_pixels = (side + 2 * margin) ** 2
            if (len(self.tile_origins) + len(start)) * tile_pixels >= self.padded.shape[
                -2
            ] * self.padded.shape[-1]:
                return None
            span = side + 2 * margin
            rows = start[:, 0:1] + torch.arange(span)
            cols = start[:, 1:2] + torch.arange(span)
            inputs = self.padded[0, 0][rows[:, :, None], cols[:, None, :]][:, None]
            new_maps = self._run(inputs)
            self.tile_maps = (
                [torch.cat([old, new]) for old, new in zip(self.tile_maps, new_maps, strict=True)]
                if self.tile_maps
                else new_maps
            )
            self.tile_origins = torch.cat([self.tile_origins, start])
            tile = self._containing(low, high)
        return tile

    def _containing(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """Index of a tile whose inner square holds [low, high] (inclusive, both axes), -1 if none."""
        if not len(self.tile_origins) or not len(low):
            return torch.full((len(low),), -1, dtype=torch.int64)
        start = self.tile_origins[None]
        inside = ((low[:, None] >= start) & (high[:, None] < start + self.tile_side)).all(dim=2)
        return torch.where(inside.any(dim=1), inside.to(torch.int8).argmax(dim=1), -1)

    def windows(self, centres: np.ndarray | torch.Tensor, size: int) -> list[torch.Tensor]:
        """Standardised feature windows (N, C_l, size, size) per layer around model-grid ``centres``."""
        extractor = self.extractor
        origins, _ = window_origins(centres_array(centres), size)
        n = len(origins)
        if n == 0:
            return [torch.zeros((0, c, size, size)) for c in extractor.layer_channels]
        tile = self._ensure_tiles(origins, size) if self.full is None else None
        if tile is None:
            maps = self._full_maps()
            tile = torch.zeros(n, dtype=torch.int64)
            map_origins = torch.full((1, 2), -extractor.margin, dtype=torch.int64)
        else:
            maps = self.tile_maps
            map_origins = self.tile_origins - extractor.margin
        steps = torch.arange(size)
        rows, cols = origins[:, 0:1] + steps, origins[:, 1:2] + steps
        inside = ((rows >= 0) & (rows < self.height))[:, :, None] & ((cols >= 0) & (cols < self.width))[
            :, None, :
        ]
        partial = torch.nonzero(~inside.flatten(1).all(dim=1))[:, 0]  # windows reaching past the image
        out = []
        for layer_maps, stride, fill in zip(maps, extractor.strides, extractor._fills(), strict=True):
            windows = sample_strided(layer_maps, stride, tile, origins - map_origins[tile], size)
            windows = windows.to(torch.float32).contiguous()
            if len(partial):
                windows[partial] = torch.where(
                    inside[partial][:, None], windows[partial], fill.to(windows.dtype)[None, :, None, None]
                )
            out.append(extractor._standardise(windows))
        return out


def principal_axes(maps: torch.Tensor, components: int, max_samples: int = 1 << 16) -> torch.Tensor:
    """(C, k) principal axes of the channel vectors of maps (K, C, h, w), largest variance first.

    Signs are fixed (the largest loading of every axis positive) so that a fit is reproducible.
    """
    channels = maps.shape[1]
    vectors = maps.permute(0, 2, 3, 1).reshape(-1, channels)
    vectors = vectors[:: max(1, len(vectors) // max_samples)].to(torch.float64)
    centred = vectors - vectors.mean(dim=0)
    _, axes = torch.linalg.eigh(centred.T @ centred)
    axes = axes[:, torch.arange(channels - 1, channels - 1 - min(components, channels), -1)]
    signs = torch.sign(axes.gather(0, axes.abs().argmax(dim=0, keepdim=True)))
    return (axes * signs).to(maps.dtype)


def project_channels(maps: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """Maps (K, C, h, w) on the axes (C, k): (K, k, h, w), in channels-last memory."""
    return (maps.permute(0, 2, 3, 1) @ axes.to(maps.device)).permute(0, 3, 1, 2)


def sample_strided(
    maps: torch.Tensor, stride: int, tile: torch.Tensor, offsets: torch.Tensor, size: int
) -> torch.Tensor:
    """Square windows from stride-``s`` maps, bilinearly at every pixel (as :func:`upsample_aligned`).

    Map pixel ``j`` of a tile is centred on pixel ``s j`` of that tile's grid; window pixel ``r`` sits at
    tile-grid pixel ``offset + r``, i.e. at map coordinate ``(offset + r) / s``. Each window's values come
    from its own small block of map pixels: two interpolation matrices, no full-resolution map.

    Parameters
    ----------
    maps : torch.Tensor, shape (K, C, h, w)
    stride : int
    tile : torch.Tensor, shape (N,), int64
        Tile (row of ``maps``) of every window.
    offsets : torch.Tensor, shape (N, 2), int64
        Window origin in its tile's grid (px).
    size : int
        Window side (px).

    Returns
    -------
    torch.Tensor, shape (N, C, size, size)
        Pixels beyond the maps take the nearest map pixel (the caller fills what lies outside the image).
    """
    height, width = maps.shape[-2:]
    per_pixel = maps.permute(0, 2, 3, 1)  # (K, h, w, C): one gather moves whole channel vectors
    if stride == 1:
        steps = torch.arange(size)
        rows = (offsets[:, 0:1] + steps).clamp(0, height - 1)
        cols = (offsets[:, 1:2] + steps).clamp(0, width - 1)
        return per_pixel[tile[:, None, None], rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    first = offsets.div(stride, rounding_mode="floor")  # (N, 2) first map pixel of each block
    block = (size + 2 * stride - 2) // stride + 1
    steps = torch.arange(block)
    rows = (first[:, 0:1] + steps).clamp(0, height - 1)
    cols = (first[:, 1:2] + steps).clamp(0, width - 1)
    blocks = per_pixel[tile[:, None, None], rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    weights = [
        _interpolation_matrix(offsets[:, axis] - first[:, axis] * stride, stride, size, block)
        for axis in (0, 1)
    ]
    n, channels = blocks.shape[:2]
    # Columns, then rows, as two plain batched products: (N, C·b, b) @ (N, b, S); (N, S, b) @ (N, b, C·S).
    across = torch.bmm(blocks.reshape(n, channels * block, block), weights[1].transpose(1, 2).to(maps.dtype))
    across = across.reshape(n, channels, block, size).transpose(1, 2).reshape(n, block, channels * size)
    return torch.bmm(weights[0].to(maps.dtype), across).reshape(n, size, channels, size).transpose(1, 2)


def _interpolation_matrix(phase: torch.Tensor, stride: int, size: int, block: int) -> torch.Tensor:
    """(N, size, block) linear-interpolation weights: window pixel r at block coordinate (phase + r) / s."""
    position = (phase[:, None] + torch.arange(size)).to(torch.float64) / stride
    low = position.floor()
    weight = (position - low).to(torch.float32)
    low = low.to(torch.int64)
    matrix = torch.zeros((len(phase), size, block), dtype=torch.float32)
    matrix.scatter_(2, low[:, :, None], (1 - weight)[:, :, None])
    matrix.scatter_add_(2, (low + 1).clamp(max=block - 1)[:, :, None], weight[:, :, None])
    return matrix


def extract_recognet_windows(
    frame: np.ndarray | torch.Tensor,
    centres: np.ndarray | torch.Tensor,
    size: int,
    model: RecogNet | str | Path | None = None,
    config: RecogNetFeaturesConfig | None = None,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """Functional form of :meth:`RecogNetFeatures.extract_windows`: one (N, C_l, size, size) per layer."""
    return RecogNetFeatures(model, config, device).extract_windows(frame, centres, size)


class StudyWindowFeatures(FeatureExtractor):
    """The study's per-window recipe, kept as a reference to measure its failure against.

    The network runs on every 40×40 search window separately (zero padding inside each window), the conv
    maps are upsampled with ``interpolate(align_corners=False)`` and nothing is standardised per window.
    Every window therefore carries the same border pattern and the deep maps sit ``(s - 1) / 2`` px toward
    the window origin (see the module docstring); use :class:`RecogNetFeatures` for tracking.

    Parameters
    ----------
    model : RecogNet, str or pathlib.Path, optional
        A network or a model folder; the model shipped with celltrack by default.
    layers : tuple of int
        0-based conv layers (conv2, conv4, conv6 as in the study).
    layer_weights : tuple of float
        Correlation-filter weight of each layer.
    """

    name = "recognet-study"

    def __init__(
        self,
        model: RecogNet | str | Path | None = None,
        layers: tuple[int, ...] = (1, 3, 5),
        layer_weights: tuple[float, ...] = (1.0, 0.5, 0.25),
    ) -> None:
        if model is None or isinstance(model, str | Path):
            model = RecogNet.load(model)
        elif not isinstance(model, RecogNet):
            raise TypeError(f"model must be a RecogNet or a model folder path, got {type(model).__name__}")
        if len(layers) != len(layer_weights):
            raise ValueError(
                f"layers ({len(layers)}) and layer_weights ({len(layer_weights)}) differ in length"
            )
        if not layers or min(layers) < 0 or max(layers) > 5:
            raise ValueError(f"layers must be conv indices 0..5, got {layers}")
        self.model = model.eval()
        self.layers = tuple(int(i) for i in layers)
        self.layer_weights = tuple(float(w) for w in layer_weights)

    @property
    def layer_channels(self) -> tuple[int, ...]:
        """Channels of each feature layer."""
        return tuple(self.model.config.channels[i] for i in self.layers)

    def extract_windows(
        self, frame: np.ndarray | torch.Tensor, centres: np.ndarray | torch.Tensor, size: int
    ) -> list[torch.Tensor]:
        """Run the network on each window: one (N, C_l, size, size) tensor per layer.

        Parameters
        ----------
        frame : numpy.ndarray or torch.Tensor, shape (Y, X)
            Raw frame (normalised per frame as in training).
        centres : numpy.ndarray or torch.Tensor, shape (N, 2)
            Window centres ``(y, x)`` (px).
        size : int
            Window side (px).
        """
        if isinstance(frame, torch.Tensor):
            frame = frame.detach().cpu().numpy()
        frame = np.asarray(frame)
        if frame.ndim != 2:
            raise ValueError(f"frame must be 2-D (Y, X), got shape {frame.shape}; pass one time point")
        cfg = self.model.config
        image = torch.from_numpy(normalise_frame(frame, cfg.background_percentile, cfg.high_percentile))
        windows = crop_windows(image.to(self.model.device), centres, size, fill=0.0)
        with torch.inference_mode():
            maps = self.model.conv_maps(self.model.standardise(windows), max(self.layers) + 1)
        return [
            nnf.interpolate(maps[i], size=(size, size), mode="bilinear", align_corners=False).float()
            for i in self.layers
        ]
