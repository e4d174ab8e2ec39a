"""``raw`` features: normalised intensity and gradient magnitude, one layer of two channels."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided, sliding_window_view
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage
from torch.nn.functional import conv2d, pad

from celltrack.cf import centres_array, row_blocks
from celltrack.features.base import (
    FullFrameExtractor,
    as_frame_array,
    as_frame_tensor,
    check_crop_request,
    sample_pixels,
    standardise_windows_,
)

logger = logging.getLogger(__name__)

#: Pixels sampled (on a regular grid) to estimate the frame's percentiles: plenty for a stable
#: background and high level, and it keeps the sort off the per-frame hot path.
_PERCENTILE_SAMPLE = 1 << 14

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
    radius = _blur_radius(sigma)
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
        scale = float(image.max() - image.min()) or 1.0
    intensity = (image - background) / scale
    smoothed = pad(_gaussian_blur(intensity, config.gradient_sigma)[None, None], (1, 1, 1, 1), mode="reflect")
    smoothed = smoothed[0, 0]
    grad_y = smoothed[2:, 1:-1] - smoothed[:-2, 1:-1]
    grad_x = smoothed[1:-1, 2:] - smoothed[1:-1, :-2]
    gradient = 0.5 * torch.sqrt(grad_y**2 + grad_x**2)
    return torch.stack([_gaussian_blur(intensity, config.intensity_sigma), gradient])


def _levels(image: np.ndarray, config: RawConfig) -> tuple[float, float]:
    """Background level and scale (``high - background``) of a frame, from a regular pixel sample."""
    step = max(1, math.ceil(math.sqrt(image.size / _PERCENTILE_SAMPLE)))
    sample = image[::step, ::step]
    background, high = _percentiles(sample, (config.background_percentile, config.high_percentile))
    scale = high - background
    if not scale > 0:
        # A flat frame (e.g. all background): fall back to the full range so maps stay finite.
        scale = float(image.max() - image.min()) or 1.0
    return background, scale


def _percentiles(values: np.ndarray, percents: tuple[float, ...]) -> list[float]:
    """``np.percentile(values, percents)`` (linear interpolation), from a full sort of the values.

    The same numbers as numpy's for integer and float64 values (float32 ones agree to rounding). On
    microscopy frames (few distinct grey levels, many ties) numpy's partial sort is four times slower than
    sorting the ~16,000-pixel sample, and the linker asks on every frame.
    """
    ordered = np.sort(np.asarray(values).ravel())
    if ordered.size == 0:
        raise ValueError("percentiles of an empty sample")
    positions = np.asarray(percents, np.float64) / 100.0 * (ordered.size - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, ordered.size - 1)
    low, high = ordered[lower].astype(np.float64), ordered[upper].astype(np.float64)
    fraction, step = positions - lower, high - low
    # numpy's lerp: from the nearer end, so the result is bit-identical to np.percentile's
    return np.where(fraction >= 0.5, high - step * (1.0 - fraction), low + step * fraction).tolist()


def _blur_last_axes(stack: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the last two axes of (..., Y, X) float32, mirrored borders, ``ceil(3 sigma)`` taps."""
    if sigma <= 0:
        return stack
    radius = _blur_radius(sigma)
    sigmas = (0.0,) * (stack.ndim - 2) + (sigma, sigma)
    return ndimage.gaussian_filter(stack, sigmas, mode="mirror", truncate=radius / sigma)


def _blur_radius(sigma: float) -> int:
    return max(1, math.ceil(3 * sigma)) if sigma > 0 else 0


def _gradient_magnitude(padded: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Central-difference gradient magnitude of (..., Y + 2, X + 2) one-pixel-padded arrays -> (..., Y, X)."""
    grad_y = padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]
    grad_x = padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]
    # sqrt of squares in place: np.hypot's overflow guard costs several times more and is not needed here
    np.multiply(grad_y, grad_y, out=grad_y)
    np.multiply(grad_x, grad_x, out=grad_x)
    grad_y += grad_x
    out = np.sqrt(grad_y, out=out)
    out *= np.float32(0.5)
    return out


def _raw_maps_numpy(image: np.ndarray, config: RawConfig) -> np.ndarray:
    """CPU path of :func:`raw_feature_maps`: the same maps with numpy/scipy, several times faster."""
    background, scale = _levels(image, config)
    intensity = (image - np.float32(background)) * np.float32(1.0 / scale)
    # Mirrored one-pixel border: the gradient at the frame's edge is what a window crossing it computes.
    smoothed = np.pad(_blur_last_axes(intensity, config.gradient_sigma), 1, mode="reflect")
    out = np.empty((2, *image.shape), np.float32)
    out[0] = _blur_last_axes(intensity, config.intensity_sigma)
    _gradient_magnitude(smoothed, out=out[1])
    return out


def _mirror_index(index: np.ndarray, size: int) -> np.ndarray:
    """Indices reflected into ``[0, size)`` about the edge pixels (scipy's ``"mirror"`` padding)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    folded = np.mod(index, period)
    return np.where(folded < size, folded, period - folded)


def _margin(config: RawConfig) -> int:
    """Pixels around a window that its filtering reads."""
    return max(_blur_radius(config.intensity_sigma), _blur_radius(config.gradient_sigma) + 1)


def _gather_patches(
    image: np.ndarray,
    centres: np.ndarray,
    size: int,
    config: RawConfig,
    levels: tuple[float, float],
    views: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised intensity around each window, with its margin mirrored at the frame's edge.

    ``centres`` are validated float64 (N, 2) positions (:func:`celltrack.cf.centres_array`); ``views``
    optionally the frame's ``sliding_window_view`` of the padded window side, reused across calls.

    Returns
    -------
    intensity : numpy.ndarray, shape (N, size + 2 margin, size + 2 margin)
        float32, background subtracted and scaled.
    inside : numpy.ndarray of bool, shape (N, size, size)
        Window pixels inside the frame.
    """
    background, scale = levels
    margin = _margin(config)
    # The window convention of celltrack.cf.window_origins: origin floor(centre + 0.5) - size // 2.
    origins_np = np.floor(centres + 0.5).astype(np.int64) - size // 2
    steps = np.arange(-margin, size + margin)
    rows = origins_np[:, 0:1] + steps  # (N, size + 2 margin)
    cols = origins_np[:, 1:2] + steps
    height, width = image.shape
    span = size + 2 * margin
    raw = np.empty((len(origins_np), span, span), image.dtype)
    interior = np.all(origins_np - margin >= 0, axis=1) & (origins_np[:, 0] - margin + span <= height)
    interior &= origins_np[:, 1] - margin + span <= width
    if interior.any():
        # A strided view gathers whole windows at once, far faster than per-pixel fancy indexing.
        views = sliding_window_view(image, (span, span)) if views is None else views
        raw[interior] = views[origins_np[interior, 0] - margin, origins_np[interior, 1] - margin]
    border = ~interior
    if border.any():
        raw[border] = image[
            _mirror_index(rows[border], height)[:, :, None], _mirror_index(cols[border], width)[:, None, :]
        ]
    intensity = (raw - np.float32(background)) * np.float32(1.0 / scale)
    inner = slice(margin, margin + size)
    inside_rows = (rows[:, inner] >= 0) & (rows[:, inner] < height)
    inside_cols = (cols[:, inner] >= 0) & (cols[:, inner] < width)
    return intensity, inside_rows[:, :, None] & inside_cols[:, None, :]


def _blur_region(stack: np.ndarray, sigma: float, region: slice) -> np.ndarray:
    """Gaussian blur of (N, S, S) patches, computed only on ``region`` of both axes (float32).

    The margin around ``region`` holds every pixel the kernel reads, so this equals blurring the whole
    patches (:func:`_blur_last_axes`, same kernel) and cropping, at a fraction of the cost.
    """
    if sigma <= 0:
        return stack[:, region, region]
    radius = _blur_radius(sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    start, stop = region.start, region.stop
    if start - radius < 0 or stop + radius > stack.shape[-1]:
        raise ValueError(
            f"region {start}:{stop} needs a margin of {radius} px inside patches of {stack.shape[-1]}"
        )
    rows = taps[0] * stack[:, start - radius : stop - radius, :]
    for k in range(1, 2 * radius + 1):
        rows += taps[k] * stack[:, start - radius + k : stop - radius + k, :]
    out = taps[0] * rows[:, :, start - radius : stop - radius]
    for k in range(1, 2 * radius + 1):
        out += taps[k] * rows[:, :, start - radius + k : stop - radius + k]
    return out


def _patch_features(intensity: np.ndarray, inside: np.ndarray, size: int, config: RawConfig) -> np.ndarray:
    """Intensity and gradient-magnitude channels of gathered patches (:func:`_gather_patches`)."""
    margin = _margin(config)
    inner = slice(margin, margin + size)
    ring = slice(margin - 1, margin + size + 1)
    out = np.empty((len(intensity), 2, size, size), np.float32)
    out[:, 0] = _blur_region(intensity, config.intensity_sigma, inner)
    _gradient_magnitude(_blur_region(intensity, config.gradient_sigma, ring), out=out[:, 1])
    # Background (zero after subtraction) outside the frame, as for crops of the full-frame maps.
    out *= inside[:, None]
    return out


class _RawCropper:
    """:meth:`RawExtractor.window_cropper` on CPU: the frame and its levels, windows computed when asked."""

    def __init__(self, extractor: RawExtractor, image: np.ndarray, size: int) -> None:
        self.extractor = extractor
        self.image = image
        self.size = int(size)
        # The frame's background and scale are measured once for every later crop.
        self.levels = _levels(image, extractor.config)
        self._views: np.ndarray | None = None

    def views(self) -> np.ndarray | None:
        """Strided view of every padded window position in the frame (made once); None if none fits.

        A frame smaller than a padded window has no interior window: every window is gathered with
        mirrored indices instead.
        """
        span = self.size + 2 * _margin(self.extractor.config)
        height, width = self.image.shape
        if self._views is None and height >= span and width >= span:
            # as_strided directly: sliding_window_view's checks cost more than the view, once per frame.
            row, col = self.image.strides
            self._views = as_strided(
                self.image,
                shape=(height - span + 1, width - span + 1, span, span),
                strides=(row, col, row, col),
                writeable=False,
            )
        return self._views

    def __call__(self, centres: np.ndarray | torch.Tensor) -> list[torch.Tensor]:
        return self.extractor.crop_many([self], [centres])


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

    def window_cropper(
        self, frame: np.ndarray | torch.Tensor, size: int
    ) -> Callable[[np.ndarray | torch.Tensor], list[torch.Tensor]]:
        """Crop function for this frame: window-local on CPU (see :meth:`extract_windows`), maps on GPU."""
        if self._window_local(frame):
            return _RawCropper(self, self._image(frame), size)
        return super().window_cropper(frame, size)

    def cropper_holds_maps(self, frame: np.ndarray | torch.Tensor) -> bool:
        """Maps only on the GPU; on CPU the cropper keeps the frame and filters inside each window."""
        return not self._window_local(frame)

    def _window_local(self, frame: np.ndarray | torch.Tensor) -> bool:
        on_gpu = isinstance(frame, torch.Tensor) and frame.device.type != "cpu"
        return self.device.type == "cpu" and not on_gpu

    def extract_windows(
        self, frame: np.ndarray | torch.Tensor, centres: np.ndarray | torch.Tensor, size: int
    ) -> list[torch.Tensor]:
        """Feature windows around the centres, computed inside the windows only on CPU.

        Equal to ``windows_from_maps(compute_maps(frame), centres, size)`` (see
        :meth:`celltrack.features.FeatureExtractor.extract_windows`) without filtering the whole frame: the
        tracker needs a few hundred windows per frame, usually far fewer pixels than the frame holds.
        """
        if not self._window_local(frame):
            return super().extract_windows(frame, centres, size)
        return _RawCropper(self, self._image(frame), size)(centres)

    @staticmethod
    def _image(frame: np.ndarray | torch.Tensor) -> np.ndarray:
        image = as_frame_tensor(frame).numpy() if isinstance(frame, torch.Tensor) else as_frame_array(frame)
        if min(image.shape) < 2:
            raise ValueError(f"frame must be at least 2 x 2 pixels, got {tuple(image.shape)}")
        return image

    def crop_many(
        self,
        croppers: Sequence[Callable[[np.ndarray | torch.Tensor], list[torch.Tensor]]],
        centres: Sequence[np.ndarray | torch.Tensor],
    ) -> list[torch.Tensor]:
        """Windows of several frames in one pass: their pixels are gathered frame by frame, then filtered,
        standardised and returned together (see :meth:`FeatureExtractor.crop_many`)."""
        check_crop_request(croppers, centres)
        sizes = {c.size for c in croppers if isinstance(c, _RawCropper) and c.extractor is self}
        if len(sizes) != 1 or not all(isinstance(c, _RawCropper) and c.extractor is self for c in croppers):
            return super().crop_many(croppers, centres)
        size = sizes.pop()
        centre_sets = [centres_array(c) for c in centres]
        owner = np.repeat(np.arange(len(croppers)), [len(c) for c in centre_sets])
        position = (
            np.concatenate([np.arange(len(c)) for c in centre_sets]) if centre_sets else np.zeros(0, int)
        )
        out = torch.empty((len(owner), 2, size, size), dtype=torch.float32)
        # Block by block: temporaries stay small, so the cost stays linear in the number of windows.
        for rows in row_blocks(len(owner)):
            parts = [
                _gather_patches(
                    croppers[k].image,
                    centre_sets[k][position[rows][owner[rows] == k]],
                    size,
                    self.config,
                    croppers[k].levels,
                    croppers[k].views(),
                )
                for k in np.unique(owner[rows]).tolist()
            ]
            intensity = np.concatenate([p[0] for p in parts])
            inside = np.concatenate([p[1] for p in parts])
            windows = _patch_features(intensity, inside, size, self.config)
            out[rows] = standardise_windows_(torch.from_numpy(windows))
        return [out]

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
