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

Layers (0-based conv indices) default to conv3, conv4 and conv6 (strides 2, 2, 4) with weights 0.5, 1 and
0.5: in cf-track on HeLa 01 and SIM+ 01 (``benchmarks/recognet.py``) the stride-1 layers conv1/conv2 lowered
precision (their 5×5 px receptive fields see noise and edges, not the nucleus), and per-layer normalisation
beat per-channel normalisation on SIM+ and matched it on HeLa. Outside the image, windows are filled with
the features of an empty field of view.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.nn import functional as nnf

from celltrack.features.base import FeatureExtractor, FullFrameExtractor, crop_windows, standardise_windows
from celltrack.models.recognet import RecogNet
from celltrack.models.recognet_data import normalise_frame
from celltrack.models.segnet import resize_maps

logger = logging.getLogger(__name__)

#: Layer index of the network input (the normalised frame) in :attr:`RecogNetFeaturesConfig.layers`.
INPUT_LAYER = -1

__all__ = [
    "INPUT_LAYER",
    "RecogNetFeatures",
    "RecogNetFeaturesConfig",
    "StudyWindowFeatures",
    "extract_recognet_windows",
    "receptive_radius",
    "recognet_feature_maps",
    "standardise_layer",
    "upsample_aligned",
]


class RecogNetFeaturesConfig(BaseModel):
    """Parameters of :class:`RecogNetFeatures`.

    Attributes
    ----------
    layers : tuple of int
        0-based conv layers used as feature layers, shallow to deep (conv3, conv4, conv6 by default);
        :data:`INPUT_LAYER` (-1) adds the normalised frame itself as a one-channel layer.
    layer_weights : tuple of float
        Correlation-filter weight of each layer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: tuple[int, ...] = Field((2, 3, 5), min_length=1, description="0-based conv layers; -1: input.")
    layer_weights: tuple[float, ...] = Field((0.5, 1.0, 0.5), min_length=1)
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


def recognet_feature_maps(
    model: RecogNet,
    frame: np.ndarray | torch.Tensor,
    layers: Sequence[int] = (2, 3, 5),
    scale: float = 1.0,
) -> list[torch.Tensor]:
    """Full-frame RecogNet conv maps at the frame's resolution.

    Parameters
    ----------
    model : RecogNet
    frame : numpy.ndarray or torch.Tensor, shape (Y, X)
        Raw frame (normalised per frame as in training).
    layers : sequence of int
        0-based conv layers; :data:`INPUT_LAYER` (-1) for the standardised input.
    scale : float
        The network runs on the frame resized by this factor (e.g. to bring nuclei to the scale it learnt);
        its maps are resized back, so they stay pixel-aligned with the frame.

    Returns
    -------
    list of torch.Tensor
        One (C_l, Y, X) float32 map per layer on the model's device, pixel-aligned with the frame.
    """
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ValueError(f"frame must be 2-D (Y, X), got shape {frame.shape}; pass one time point")
    cfg = model.config
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale}")
    image = normalise_frame(frame, cfg.background_percentile, cfg.high_percentile)
    frame_size = image.shape
    if scale != 1.0:
        size = (max(1, round(frame_size[0] * scale)), max(1, round(frame_size[1] * scale)))
        image = resize_maps(torch.from_numpy(image)[None, None], size)[0, 0].numpy()
    height, width = image.shape
    deepest = max(layers)
    max_stride = cfg.layer_strides[deepest] if deepest >= 0 else 1
    margin = -(-receptive_radius(deepest) // max_stride) * max_stride + max_stride
    # The padded size is a multiple of the deepest stride so that every layer's grid starts at padded pixel 0.
    pad_bottom = margin + (-(height + 2 * margin)) % max_stride
    pad_right = margin + (-(width + 2 * margin)) % max_stride
    tensor = torch.from_numpy(image).to(model.device)[None, None]
    # An empty field of view (normalised background 0) around the frame, not zero after standardisation.
    padded = nnf.pad(
        model.standardise(tensor),
        (margin, pad_right, margin, pad_bottom),
        value=float(model.standardise(torch.zeros(())).item()),
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
                full = upsample_aligned(source, stride, (margin + height, margin + width))
                out.append(resize_maps(full[:, :, margin:, margin:], frame_size)[0].contiguous())
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
    windows = windows.to(torch.float32)
    centred = windows - windows.mean(dim=(-2, -1), keepdim=True)
    std = centred.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    flat = std <= eps
    return torch.where(
        flat, torch.zeros_like(centred), centred / torch.where(flat, torch.ones_like(std), std)
    )


class RecogNetFeatures(FullFrameExtractor):
    """RecogNet conv maps (conv3, conv4, conv6 by default) computed once per frame and cropped per window.

    Parameters
    ----------
    model : RecogNet, str or pathlib.Path, optional
        A network or a model folder; the model shipped with celltrack by default.
    config : RecogNetFeaturesConfig, optional
    device : torch.device or str
        Where maps and windows are computed (CPU default).
    nucleus_diameter : float, optional
        Typical nucleus diameter in the movie (px); with ``config.model_diameter`` set, frames are resized
        by ``model_diameter / nucleus_diameter`` (within ±5 %: not at all).
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
        self.scale = 1.0
        if nucleus_diameter is not None and self.config.model_diameter is not None:
            factor = self.config.model_diameter / nucleus_diameter
            self.scale = 1.0 if abs(math.log(factor)) <= math.log(1.05) else factor
        self.device = torch.device(device)
        if model is None or isinstance(model, str | Path):
            model = RecogNet.load(model, device=self.device)
        elif not isinstance(model, RecogNet):
            raise TypeError(f"model must be a RecogNet or a model folder path, got {type(model).__name__}")
        self.model = model.to(self.device).eval()
        self.layer_weights = tuple(self.config.layer_weights)
        self._fill = self._background_features()

    @property
    def layer_channels(self) -> tuple[int, ...]:
        """Channels of each feature layer."""
        return tuple(self.model.config.channels[i] if i >= 0 else 1 for i in self.config.layers)

    def _background_features(self) -> list[torch.Tensor]:
        """Feature values of an empty field of view, per layer: (C_l,)."""
        side = 2 * receptive_radius(max(self.config.layers)) + 9
        maps = recognet_feature_maps(self.model, np.zeros((side, side), np.float32), self.config.layers)
        return [m[:, side // 2, side // 2].clone() for m in maps]

    def compute_maps(self, frame: np.ndarray | torch.Tensor) -> list[torch.Tensor]:
        """Full-frame maps: one (C_l, Y, X) tensor per layer."""
        return recognet_feature_maps(self.model, frame, self.config.layers, self.scale)

    def windows_from_maps(
        self, maps: Sequence[torch.Tensor], centres: np.ndarray | torch.Tensor, size: int
    ) -> list[torch.Tensor]:
        """Crop (empty-field fill outside the image) and standardise windows: (N, C_l, S, S) per layer."""
        if len(maps) != self.n_layers:
            raise ValueError(f"{self.name} expects {self.n_layers} layer maps, got {len(maps)}")
        standardise = standardise_windows if self.config.normalisation == "channel" else standardise_layer
        return [
            standardise(crop_windows(layer, centres, size, fill=fill.to(layer.device)))
            for layer, fill in zip(maps, self._fill, strict=True)
        ]


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
