"""PanopticSegNet: the default nucleus segmenter, a compact DeepCell-PanopticNet-style encoder–decoder.

DeepCell's nuclear model grew from the study's 5-layer pixel classifier (:class:`~celltrack.models.SegNet`,
kept as the study model) into a multi-scale encoder–decoder that predicts, per pixel, an inner-distance map
and a foreground/boundary map; seeds at the maxima of the inner distance and a watershed then separate
touching nuclei without temporal heuristics. PanopticSegNet is that family sized for CPUs:

* a U-Net with ``widths`` channels per level (default 16, 32, 64, 96, 128: 5 levels, 16× downsampling, a
  receptive field of several nucleus diameters), batch-normalised 3×3 convolutions with "same" padding;
* four heads on the full-resolution decoder layer (1×1 convolutions): the three classes interior /
  boundary / background, the inner distance (each nucleus's distance transform divided by its maximum: 1 at
  its centre, falling to 0 at its outline), and the log nucleus size (``log(d / nucleus_diameter)`` of the
  nucleus a pixel belongs to, the learned scale estimator: like Cellpose's size model it regresses the
  diameter, here per pixel, and the movie's diameter is the median over the nuclei found);
* inputs are padded at the bottom and right to a multiple of the total stride and cropped back, so the
  full-resolution maps stay pixel-aligned with the input for any size (they feed the correlation filters).

Inputs are normalised per frame by percentiles (:func:`~celltrack.models.normalize_frame`) and rescaled so
that nuclei are ``nucleus_diameter`` px across (:meth:`PanopticSegNet.prepare_frame`); the maps are
interpolated back to the frame so that outlines are drawn at the frame's own resolution.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.nn import functional as nnf

from celltrack.io.model_folder import load_network, save_model_folder
from celltrack.models.segnet import CLASS_NAMES, N_CLASSES, normalize_frame, resize_maps

logger = logging.getLogger(__name__)

ARCHITECTURE = "segnet-panoptic"
ARCHITECTURE_VERSION = 1
#: Output maps of :meth:`PanopticSegNet.predict_frame`, in order.
MAP_NAMES = (*CLASS_NAMES, "inner_distance", "log_size")
DISTANCE, LOG_SIZE = N_CLASSES, N_CLASSES + 1
N_OUTPUTS = N_CLASSES + 2
#: Weights of the four feature layers in the correlation-filter tracker (encoder 1, encoder 2, decoder 2,
#: decoder 1: fine to coarse to fine).
DEFAULT_FEATURE_LAYER_WEIGHTS = (1.0, 0.5, 0.2, 0.2)
#: The model shipped with celltrack (the default segmenter).
DEFAULT_PANOPTIC_PATH = Path(__file__).parent / "weights" / "segnet_default"
# Frames larger than this (model-scale px per side) are processed in tiles.
_TILE_SIZE = 1024


class PanopticConfig(BaseModel):
    """Architecture and input conventions of :class:`PanopticSegNet` (lengths in pixels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    widths: tuple[int, ...] = Field((16, 32, 64, 96, 128), description="Channels of each U-Net level.")
    nucleus_diameter: float = Field(20.0, gt=0, description="Nucleus diameter (px) the network works at.")
    low_percentile: float = Field(1.0, ge=0, le=100, description="Frame percentile mapped to 0.")
    high_percentile: float = Field(99.8, ge=0, le=100, description="Frame percentile mapped to 1.")

    @model_validator(mode="after")
    def _consistent(self) -> PanopticConfig:
        if len(self.widths) < 3:
            raise ValueError(f"PanopticSegNet needs at least 3 levels, got widths {self.widths}")
        if min(self.widths) < 1:
            raise ValueError(f"widths must be positive, got {self.widths}")
        if self.low_percentile >= self.high_percentile:
            raise ValueError(
                f"low_percentile ({self.low_percentile}) must be below high_percentile "
                f"({self.high_percentile})"
            )
        return self

    @property
    def stride(self) -> int:
        """Total downsampling of the deepest level (inputs are padded to a multiple of it)."""
        return 2 ** (len(self.widths) - 1)


def _fold_batch_norms(block: nn.Sequential) -> nn.Sequential:
    """Conv → BatchNorm (eval statistics) pairs of a block as single biased convolutions."""
    layers = list(block)
    out: list[nn.Module] = []
    k = 0
    while k < len(layers):
        layer = layers[k]
        if isinstance(layer, nn.Conv2d) and k + 1 < len(layers) and isinstance(layers[k + 1], nn.BatchNorm2d):
            norm = layers[k + 1]
            scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
            conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, padding=layer.padding)
            conv = conv.to(layer.weight.device)
            with torch.no_grad():
                conv.weight.copy_(layer.weight * scale[:, None, None, None])
                conv.bias.copy_(norm.bias - norm.running_mean * scale)
            out.append(conv)
            k += 2
        else:
            out.append(layer)
            k += 1
    return nn.Sequential(*out)


def _conv_block(in_channels: int, out_channels: int, n_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(n_convs):
        layers += [
            nn.Conv2d(in_channels if k == 0 else out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


@dataclass
class DiameterEstimate:
    """A movie's nucleus diameter as measured by the network's size head.

    Attributes
    ----------
    diameter : float
        Median over frames (px), or NaN when no nucleus was found.
    per_frame : list of float
        The estimate of each frame examined (NaN where nothing was found).
    frames : list of int
        Which frames were examined.
    spread : float
        Relative spread of the per-frame estimates (interquartile range / median; 0 = all agree).
    n_nuclei : int
        Nuclei behind the estimate, over all frames.
    stable : bool
        True when the frames agree (``spread`` below the tolerance) and nuclei were found.
    notes : list of str
        Why the estimate is not stable, when it is not.
    """

    diameter: float
    per_frame: list[float] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    spread: float = float("nan")
    n_nuclei: int = 0
    stable: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for run records)."""
        return {
            "diameter_px": _rounded(self.diameter),
            "per_frame_px": [_rounded(v) for v in self.per_frame],
            "frames": list(self.frames),
            "spread": _rounded(self.spread),
            "n_nuclei": self.n_nuclei,
            "stable": self.stable,
            "notes": list(self.notes),
        }


def _rounded(value: float) -> float | None:
    return round(float(value), 2) if math.isfinite(value) else None


class PanopticSegNet(nn.Module):
    """U-Net with class, inner-distance and log-size heads (see the module docstring).

    Parameters
    ----------
    config : PanopticConfig, optional

    Attributes
    ----------
    config : PanopticConfig
    training_info : dict
        Training provenance written to ``config.json``.
    """

    #: The correlation-filter feature layers come in 4 (as for the study SegNet).
    n_feature_layers = 4

    def __init__(self, config: PanopticConfig | None = None) -> None:
        super().__init__()
        self.config = config or PanopticConfig()
        widths = self.config.widths
        self.encoders = nn.ModuleList(
            _conv_block(1 if k == 0 else widths[k - 1], w, 1 if k == 0 else 2) for k, w in enumerate(widths)
        )
        self.decoders = nn.ModuleList(
            _conv_block(widths[k + 1] + widths[k], widths[k], 2) for k in range(len(widths) - 2, -1, -1)
        )
        self.head = nn.Conv2d(widths[0], N_OUTPUTS, 1)
        self.training_info: dict[str, Any] = {}
        # oneDNN runs these thin convolutions faster in channels-last layout.
        self.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ tensors
    def train(self, mode: bool = True) -> PanopticSegNet:
        """As torch's; entering training drops the fused inference copy (its weights would go stale)."""
        if mode:
            self.__dict__.pop("_fused", None)
        return super().train(mode)

    def inference_copy(self) -> PanopticSegNet:
        """This network with every batch norm folded into its convolution (same outputs, one pass less over
        each feature map); built once and reused until the network trains again or loads new weights."""
        fused = self.__dict__.get("_fused")
        if fused is None or fused.device != self.device:
            fused = PanopticSegNet(self.config).to(self.device)
            fused.load_state_dict(self.state_dict())
            for blocks in (fused.encoders, fused.decoders):
                for index, block in enumerate(blocks):
                    blocks[index] = _fold_batch_norms(block)
            fused.eval().to(memory_format=torch.channels_last)
            self.__dict__["_fused"] = fused
        return fused

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return next(self.parameters()).device

    def _run(self, x: torch.Tensor, keep: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Final full-resolution features and (with ``keep``) the encoder/decoder maps, on padded input."""
        self._check_input(x)
        height, width = x.shape[-2:]
        stride = self.config.stride
        pad_y, pad_x = (-height) % stride, (-width) % stride
        h = x.contiguous(memory_format=torch.channels_last)
        if pad_y or pad_x:
            # Replicated edges: normalised background continues past the frame instead of a dark border.
            h = nnf.pad(h, (0, pad_x, 0, pad_y), mode="replicate")
        skips = []
        for k, encoder in enumerate(self.encoders):
            if k:
                h = nnf.max_pool2d(h, 2)
            h = encoder(h)
            skips.append(h)
        decoded = []
        for decoder, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            h = nnf.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = decoder(torch.cat([h, skip], dim=1))
            decoded.append(h)
        maps = [skips[0], skips[1], decoded[-2], decoded[-1]] if keep else []
        return h[..., :height, :width], maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw head outputs.

        Parameters
        ----------
        x : torch.Tensor, shape (N, 1, Y, X), float32
            Normalised images at model scale.

        Returns
        -------
        torch.Tensor, shape (N, 5, Y, X)
            Class logits (interior, boundary, background), inner-distance logit, log size.
        """
        h, _ = self._run(x, keep=False)
        return self.head(h)

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Head outputs as maps: class probabilities, inner distance in [0, 1], log size; (N, 5, Y, X)."""
        raw = self.forward(x)
        return torch.cat(
            [torch.softmax(raw[:, :N_CLASSES], dim=1), torch.sigmoid(raw[:, DISTANCE : DISTANCE + 1]),
             raw[:, LOG_SIZE:]],
            dim=1,
        )

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (interior, boundary, background), shape (N, 3, Y, X)."""
        return torch.softmax(self.forward(x)[:, :N_CLASSES], dim=1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Four feature maps aligned pixel for pixel with ``x``, each (N, C_k, Y, X).

        Encoder level 1 (full resolution), encoder level 2 and decoder level 2 (half resolution, upsampled
        bilinearly on pixel centres), decoder level 1 (full resolution): fine to coarse to fine.
        """
        height, width = x.shape[-2:]
        _, maps = self._run(x, keep=True)
        full = maps[0].shape[-2:]
        out = []
        for m in maps:
            if m.shape[-2:] != full:
                m = nnf.interpolate(m, size=full, mode="bilinear", align_corners=False)
            out.append(m[..., :height, :width].contiguous())
        return out

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"PanopticSegNet expects a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"PanopticSegNet expects a (N, 1, Y, X) tensor, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(
                f"PanopticSegNet expects float input, got {x.dtype}; normalise with normalize_frame"
            )

    # ------------------------------------------------------------------ frames
    @property
    def feature_channels(self) -> tuple[int, ...]:
        """Channels of the four feature layers."""
        w = self.config.widths
        return (w[0], w[1], w[1], w[0])

    def scaled_size(self, shape: Sequence[int], nucleus_diameter: float | None) -> tuple[int, int]:
        """Frame size (Y, X) after rescaling from ``nucleus_diameter`` to the model's diameter."""
        if nucleus_diameter is None:
            return int(shape[0]), int(shape[1])
        if not (isinstance(nucleus_diameter, int | float) and math.isfinite(nucleus_diameter)
                and nucleus_diameter > 0):
            raise ValueError(f"nucleus_diameter must be a positive number of pixels, got {nucleus_diameter}")
        factor = self.config.nucleus_diameter / float(nucleus_diameter)
        return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))

    def prepare_frame(self, frame: np.ndarray, nucleus_diameter: float | None = None) -> torch.Tensor:
        """Normalise a raw (Y, X) frame and rescale it to the model's nucleus diameter: (1, 1, Y', X')."""
        normalised = normalize_frame(frame, self.config.low_percentile, self.config.high_percentile)
        tensor = torch.from_numpy(normalised)[None, None].to(self.device)
        return resize_maps(tensor, self.scaled_size(normalised.shape, nucleus_diameter))

    def _tiled(self, fn: Any, image: torch.Tensor) -> list[torch.Tensor]:
        """``fn`` over tiles whose origins sit on the pooling grid, with a context margin (bounded memory)."""
        height, width = image.shape[-2:]
        if height <= _TILE_SIZE and width <= _TILE_SIZE:
            out = fn(image)
            return [out] if isinstance(out, torch.Tensor) else list(out)
        stride = self.config.stride
        margin = 4 * stride
        outputs: list[torch.Tensor] | None = None
        for y0 in range(0, height, _TILE_SIZE):
            for x0 in range(0, width, _TILE_SIZE):
                y1, x1 = min(height, y0 + _TILE_SIZE), min(width, x0 + _TILE_SIZE)
                py0, px0 = max(0, y0 - margin), max(0, x0 - margin)
                py1, px1 = min(height, y1 + margin), min(width, x1 + margin)
                result = fn(image[..., py0:py1, px0:px1])
                parts = [result] if isinstance(result, torch.Tensor) else list(result)
                if outputs is None:
                    outputs = [image.new_empty((1, p.shape[1], height, width)) for p in parts]
                for out, part in zip(outputs, parts, strict=True):
                    out[..., y0:y1, x0:x1] = part[..., y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
        return outputs or []

    def predict_frame(self, frame: np.ndarray, *, nucleus_diameter: float | None = None) -> np.ndarray:
        """All output maps of one raw frame at the frame's resolution.

        Parameters
        ----------
        frame : numpy.ndarray, shape (Y, X)
            Raw frame, any numeric dtype.
        nucleus_diameter : float, optional
            Nucleus diameter in ``frame`` (px); the frame is rescaled to the model's diameter and the maps
            are interpolated back. None = the frame is at model scale.

        Returns
        -------
        numpy.ndarray, shape (5, Y, X), float32
            P(interior), P(boundary), P(background), inner distance in [0, 1], and the log size
            ``log(d / model diameter)`` at model scale (add ``log(nucleus_diameter / model diameter)`` for
            the frame's scale).
        """
        frame = np.asarray(frame)
        image = self.prepare_frame(frame, nucleus_diameter)
        with torch.inference_mode():
            (maps,) = self._tiled(self.inference_copy().outputs, image)
            maps = resize_maps(maps, frame.shape)
        return maps[0].float().cpu().numpy()

    def frame_features(self, frame: np.ndarray, *, nucleus_diameter: float | None = None) -> list[np.ndarray]:
        """The four feature maps of one raw frame at the frame's resolution, each (C_k, Y, X) float32."""
        frame = np.asarray(frame)
        image = self.prepare_frame(frame, nucleus_diameter)
        with torch.inference_mode():
            maps = self._tiled(self.inference_copy().features, image)
            return [resize_maps(m, frame.shape)[0].float().cpu().numpy() for m in maps]

    # ------------------------------------------------------------------ scale
    def frame_diameters(
        self, frame: np.ndarray, nucleus_diameter: float | None = None, min_area_fraction: float = 0.15
    ) -> np.ndarray:
        """Per-nucleus diameters (px, frame scale) read from the size head, one value per object found.

        Objects are the connected components of confident interior (P > 0.5); each one's diameter is
        ``exp(mean log size)`` over its pixels, mapped back to the frame's scale.

        Parameters
        ----------
        frame : numpy.ndarray, shape (Y, X)
        nucleus_diameter : float, optional
            The scale the frame is run at (None = model scale).
        min_area_fraction : float
            Components smaller than this share of a model-scale nucleus area are ignored.

        Returns
        -------
        numpy.ndarray, shape (K,), float64
        """
        from scipy import ndimage as ndi

        image = self.prepare_frame(np.asarray(frame), nucleus_diameter)
        with torch.inference_mode():
            (maps,) = self._tiled(self.inference_copy().outputs, image)
        maps = maps[0].float().cpu().numpy()
        interior = maps[0] > 0.5
        labels, n = ndi.label(interior)
        if n == 0:
            return np.zeros(0)
        areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        sums = np.bincount(labels.ravel(), weights=maps[LOG_SIZE].ravel(), minlength=n + 1)[1:]
        model_area = math.pi * (self.config.nucleus_diameter / 2) ** 2
        keep = areas >= min_area_fraction * model_area
        log_size = sums[keep] / areas[keep]
        scale = 1.0 if nucleus_diameter is None else float(nucleus_diameter) / self.config.nucleus_diameter
        return self.config.nucleus_diameter * np.exp(log_size) * scale

    def estimate_diameter(
        self,
        frames: Sequence[np.ndarray],
        frame_numbers: Sequence[int] | None = None,
        *,
        iterations: int = 3,
        tolerance: float = 0.25,
        start: float | None = None,
    ) -> DiameterEstimate:
        """Measure the nucleus diameter of a movie from a few of its frames with the size head.

        Each frame is run at the current guess of its scale and re-run at the scale the head reports until
        the guess stops moving (the head is most accurate near the model's own scale). The movie's diameter
        is the median of the frames' medians; the estimate is flagged unstable when frames disagree by more
        than ``tolerance`` (interquartile range over median), when no nuclei are found, or when the
        iteration does not settle.

        Parameters
        ----------
        frames : sequence of numpy.ndarray, each (Y, X)
            Frames spread through the movie.
        frame_numbers : sequence of int, optional
            Their frame numbers (for the record).
        iterations : int
            Most re-runs per frame.
        tolerance : float
            Largest relative spread of the per-frame estimates still called stable.
        start : float, optional
            First guess (px) for the first frame; default: the model's diameter (frames taken as they are).
            Each later frame starts from the median of the frames before it.

        Returns
        -------
        DiameterEstimate
        """
        if len(frames) == 0:
            raise ValueError("estimate_diameter needs at least one frame")
        model_d = self.config.nucleus_diameter
        per_frame, notes, n_nuclei = [], [], 0
        for k, frame in enumerate(frames):
            frame = np.asarray(frame)
            # Later frames start where the earlier ones settled: one pass each when the movie agrees.
            earlier = [v for v in per_frame if math.isfinite(v)]
            guess = float(np.median(earlier)) if earlier else float(start) if start else model_d
            value = float("nan")
            settled = False
            for _ in range(max(1, iterations)):
                # Keep the rescaled frame within sensible bounds (4 px nuclei or 64× the pixels).
                guess = float(np.clip(guess, model_d * max(frame.shape) / 8192, model_d * 16))
                diameters = self.frame_diameters(frame, guess)
                if diameters.size == 0:
                    value = float("nan")
                    break
                value = float(np.median(diameters))
                settled = abs(math.log(value / guess)) < 0.1
                n_found = diameters.size
                guess = value
                if settled:
                    break
            if math.isfinite(value):
                n_nuclei += n_found
                if not settled:
                    notes.append(f"frame {frame_numbers[k] if frame_numbers else k}: did not settle")
            per_frame.append(value)
        finite = np.array([v for v in per_frame if math.isfinite(v)])
        if finite.size == 0:
            return DiameterEstimate(
                float("nan"), per_frame, list(frame_numbers or range(len(frames))), float("nan"), 0, False,
                ["no nuclei found in the frames examined"],
            )
        diameter = float(np.median(finite))
        q1, q3 = np.percentile(finite, [25, 75])
        spread = float((q3 - q1) / diameter)
        if spread > tolerance:
            notes.append(f"frames disagree: {', '.join(f'{v:.1f}' for v in finite)} px")
        stable = spread <= tolerance and finite.size >= max(1, len(frames) // 2) and not notes
        return DiameterEstimate(
            diameter, per_frame, list(frame_numbers or range(len(frames))), spread, n_nuclei, stable, notes
        )

    # ------------------------------------------------------------------ folders
    def save(self, path: str | Path, *, weights_dtype: str = "float16", overwrite: bool = False) -> Path:
        """Write the model folder (``config.json`` + ``weights.pt``)."""
        config = {
            "architecture_version": ARCHITECTURE_VERSION,
            "outputs": list(MAP_NAMES),
            "hyperparameters": self.config.model_dump(mode="json"),
            "normalisation": {
                "method": "percentile",
                "low_percentile": self.config.low_percentile,
                "high_percentile": self.config.high_percentile,
            },
            "nucleus_diameter": self.config.nucleus_diameter,
            "feature_layer_weights": list(DEFAULT_FEATURE_LAYER_WEIGHTS),
            "training": self.training_info,
        }
        state = {k: v for k, v in self.state_dict().items() if not k.endswith("num_batches_tracked")}
        return save_model_folder(path, ARCHITECTURE, config, state, weights_dtype=weights_dtype,
                                 overwrite=overwrite)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """As torch's, tolerating absent BatchNorm step counters (not saved)."""
        self.__dict__.pop("_fused", None)
        state = dict(state_dict)
        for key, value in self.state_dict().items():
            if key.endswith("num_batches_tracked"):
                state.setdefault(key, value)
        return super().load_state_dict(state, strict=strict, assign=assign)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """As torch's, without BatchNorm step counters (so saved and loaded keys match)."""
        state = super().state_dict(*args, **kwargs)
        for key in [k for k in state if k.endswith("num_batches_tracked")]:
            del state[key]
        return state

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> PanopticSegNet:
        """Read a PanopticSegNet model folder (None = the shipped default); ValueError naming the fix."""
        path = Path(path) if path is not None else DEFAULT_PANOPTIC_PATH
        model = load_network(path, ARCHITECTURE, ARCHITECTURE_VERSION, PanopticConfig, cls)
        return model.to(device).eval()
