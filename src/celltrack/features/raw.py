"""``raw`` features: normalised intensity and gradient magnitude, one layer of two channels."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage
from torch.nn.functional import conv2d, pad

from celltrack.features.base import FullFrameExtractor, as_frame_tensor, sample_pixels

logger = logging.getLogger(__name__)

#: Pixels sampled (on a regular grid) to estimate the frame's percentiles: plenty for a stable
#: background and high level, and it keeps the sort off the per-frame hot path.
_PERCENTILE_SAMPLE = 1 << 18

__all__ = ["RawConfig", "RawExtractor", "extract_raw_windows", "raw_feature_maps"]


class RawConfig(BaseModel):
    """Parameters of the ``raw`` extractor.

    Attributes
    ----------
    background_percentile : float
        Percentile of the frame taken as background and subtracted (removes e.g. the HeLa camera offset
        near 33,000; nuclei cover well under half a frame, so the median is background).
    high_percentile : float
        Percentile mapped to 1 after background subtraction (robust to hot pixels).
    intensity_sigma : float
        Gaussian smoothing of the intensity channel, pixels (0: none).
    gradient_sigma : float
        Gaussian smoothing before the gradient, pixels (0: none); suppresses shot noise in the gradient.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    background_percentile: float = Field(50.0, ge=0, lt=100)
    high_percentile: float = Field(99.5, gt=0, le=100)
    intensity_sigma: float = Field(0.0, ge=0, description="pixels")
    gradient_sigma: float = Field(1.0, ge=0, description="pixels")

    @model_validator(mode="after")
    def _percentiles_ordered(self) -> RawConfig:
        if self.high_percentile <= self.background_percentile:
            raise ValueError(
                f"high_percentile ({self.high_percentile}) must exceed background_percentile "
                f"({self.background_percentile})"
            )
        return self


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (Y, X) tensor with reflected borders."""
    if sigma <= 0:
        return image
    radius = max(1, math.ceil(3 * sigma))
    if image.device.type == "cpu" and min(image.shape) > radius:
        # scipy's separable filter is an order of magnitude faster than torch's conv2d on CPU;
        # "mirror" is torch's "reflect", and the truncation matches the radius used below.
        blurred = ndimage.gaussian_filter(image.numpy(), sigma, mode="mirror", truncate=radius / sigma)
        return torch.from_numpy(blurred)
    radius_y = min(radius, image.shape[0] - 1)
    radius_x = min(radius, image.shape[1] - 1)
    out = image[None, None]
    for axis, r in ((0, radius_y), (1, radius_x)):
        if r < 1:
            continue
        taps = torch.arange(-r, r + 1, dtype=image.dtype, device=image.device)
        kernel = torch.exp(-(taps**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        if axis == 0:
            out = conv2d(pad(out, (0, 0, r, r), mode="reflect"), kernel.reshape(1, 1, -1, 1))
        else:
            out = conv2d(pad(out, (r, r, 0, 0), mode="reflect"), kernel.reshape(1, 1, 1, -1))
    return out[0, 0]


def raw_feature_maps(
    frame: np.ndarray | torch.Tensor,
    config: RawConfig | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Full-frame ``raw`` feature maps.

    Parameters
    ----------
    frame : np.ndarray or torch.Tensor
        (Y, X) raw frame, any real dtype.
    config : RawConfig, optional
        Parameters (defaults if omitted).
    device : torch.device or str, optional
        Where to compute; the frame's device (CPU for arrays) if omitted.

    Returns
    -------
    torch.Tensor
        (2, Y, X) float32: channel 0 background-subtracted intensity scaled so that the ``high_percentile``
        maps to 1; channel 1 its gradient magnitude (per pixel).
    """
    config = config if config is not None else RawConfig()
    image = as_frame_tensor(frame, device)
    if min(image.shape) < 2:
        raise ValueError(f"frame must be at least 2 x 2 pixels, got {tuple(image.shape)}")
    if image.device.type == "cpu":
        return torch.from_numpy(_raw_maps_numpy(image.numpy(), config))
    levels = torch.quantile(
        sample_pixels(image, _PERCENTILE_SAMPLE),
        torch.tensor([config.background_percentile / 100, config.high_percentile / 100], device=image.device),
    )
    background, high = float(levels[0]), float(levels[1])
    scale = high - background
    if not scale > 0:
        # A flat frame (e.g. all background): fall back to the full range so maps stay finite.
        scale = float(image.max() - image.min()) or 1.0
    intensity = (image - background) / scale
    smoothed = _gaussian_blur(intensity, config.gradient_sigma)
    grad_y, grad_x = torch.gradient(smoothed)
    gradient = torch.sqrt(grad_y**2 + grad_x**2)
    return torch.stack([_gaussian_blur(intensity, config.intensity_sigma), gradient])


def _raw_maps_numpy(image: np.ndarray, config: RawConfig) -> np.ndarray:
    """CPU path of :func:`raw_feature_maps`: the same maps with numpy/scipy, several times faster."""
    step = max(1, math.ceil(math.sqrt(image.size / _PERCENTILE_SAMPLE)))
    background, high = np.percentile(
        image[::step, ::step], [config.background_percentile, config.high_percentile]
    ).tolist()
    scale = high - background
    if not scale > 0:
        scale = float(image.max() - image.min()) or 1.0
    intensity = (image - np.float32(background)) * np.float32(1.0 / scale)
    smoothed = _gaussian_blur(torch.from_numpy(intensity), config.gradient_sigma).numpy()
    grad_y, grad_x = np.gradient(smoothed)
    out = np.empty((2, *image.shape), np.float32)
    out[0] = _gaussian_blur(torch.from_numpy(intensity), config.intensity_sigma).numpy()
    np.hypot(grad_y, grad_x, out=out[1])
    return out


class RawExtractor(FullFrameExtractor):
    """Normalised intensity plus gradient magnitude: one layer with two channels, weight ``(1.0,)``.

    Parameters
    ----------
    config : RawConfig, optional
        Parameters.
    device : torch.device or str
        Where maps and windows are computed (CPU default).
    """

    name = "raw"
    layer_weights = (1.0,)

    def __init__(self, config: RawConfig | None = None, device: torch.device | str = "cpu") -> None:
        self.config = config if config is not None else RawConfig()
        self.device = torch.device(device)

    @property
    def layer_channels(self) -> tuple[int, ...]:
        """One layer of two channels (intensity, gradient magnitude)."""
        return (2,)

    def compute_maps(self, frame: np.ndarray | torch.Tensor) -> list[torch.Tensor]:
        """Full-frame maps: a one-element list holding the (2, Y, X) raw feature maps."""
        return [raw_feature_maps(frame, self.config, self.device)]

    def pad_fill(self, layer_maps: torch.Tensor) -> torch.Tensor:
        """Background outside the image: zero intensity (background already subtracted) and zero gradient."""
        return torch.zeros(layer_maps.shape[0], dtype=layer_maps.dtype, device=layer_maps.device)


def extract_raw_windows(
    frame: np.ndarray | torch.Tensor,
    centres: np.ndarray | torch.Tensor,
    size: int,
    config: RawConfig | None = None,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """Functional form of :meth:`RawExtractor.extract_windows`: ``[(N, 2, size, size)]``."""
    return RawExtractor(config, device).extract_windows(frame, centres, size)
