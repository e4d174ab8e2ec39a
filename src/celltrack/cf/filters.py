"""Batched hierarchical correlation filters (MOSSE / Ma et al. 2015), pure torch.

One :class:`FilterBank` holds the filters of ``N`` cells for ``L`` feature layers. Every operation runs all
cells, channels and layers of a frame through one batched ``rfft2`` per layer; nothing loops over cells.

Conventions
-----------
- Features of layer ``l`` are tensors of shape ``(N, C_l, H, W)``; row ``i`` of every layer belongs to cell
  ``i`` (or to filter ``index[i]`` in :meth:`FilterBank.detect`). Layers are ordered shallow -> deep (layer 1
  first), and so are ``layer_weights``.
- Windows follow :mod:`celltrack.cf.windows`: the window around a float centre ``c`` starts at
  ``floor(c + 0.5) - size // 2``. The Gaussian target is placed at the rounding offset, so displacements are
  relative to the exact float centre: ``new_position = centre + displacement`` with ``(dy, dx)`` in pixels.
- Training: ``A^d = Y * conj(X^d)``, ``B = sum_d X^d * conj(X^d)``; filter ``W^d = A^d / (B + lambda_eff)``.
- Detection: ``f = irfft2(sum_d W^d * Z^d)``. With ``conj`` already on the training features, multiplying by
  ``Z`` (not ``conj(Z)``) is what makes a translation ``s`` of the input move the peak by ``+s``; putting the
  conjugate on ``Z`` instead mirrors the peak, which looks right only on symmetric blobs.
- ``lambda_eff = lambda_rel * mean_k(B)``, the mean over the full spectrum of each cell's summed channel
  energy. The filter, hence the response, is therefore invariant to scaling the features.
- The response is circular: index ``(0, 0)`` is zero displacement from the training target; indices above
  ``H / 2`` (``W / 2``) wrap to negative displacements.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from celltrack.cf.windows import as_centres, taper_window, window_origins

logger = logging.getLogger(__name__)

__all__ = [
    "ROW_BLOCK",
    "CFConfig",
    "CFDetection",
    "FilterBank",
    "correlation_responses",
    "default_device",
    "detect_displacements",
    "gaussian_target",
    "locate_peaks",
    "max_over_steps",
    "peak_to_sidelobe",
    "row_blocks",
    "sample_circular",
    "signed_index",
    "train_filters",
]

Features = Sequence[torch.Tensor]


class CFConfig(BaseModel):
    """Correlation-filter parameters. Lengths are in pixels.

    Attributes
    ----------
    window : int
        Default square window side in pixels (40 in the study). The filter bank takes its window size from
        the features it is given; this field and :meth:`window_for` tell the tracker what to crop.
    padding : float
        Window side as a multiple of the nucleus diameter; see :meth:`window_for`.
    sigma : float
        Standard deviation of the Gaussian target, pixels.
    lambda_rel : float
        Regularisation relative to each cell's mean spectral energy (``lambda_eff = lambda_rel * mean(B)``).
    learning_rate : float
        Moving-average rate ``eta`` of numerator and denominator in :meth:`FilterBank.update`.
    layer_weights : tuple of float
        Weights ``gamma_l`` of layers 1..L (shallow -> deep). Must match the number of layers, or be
        overridden with the extractor's own ``layer_weights``.
    layer_norm : {"target", "max"}
        How each layer's response is scaled before combining. ``"target"``: as computed, which in units of
        the Gaussian target is ~1 at a perfect match for every layer regardless of its channel count or
        feature scale (because lambda is relative), so no layer dominates and the peak stays a confidence.
        ``"max"``: each layer divided by its own maximum absolute value per cell (peak 1 for every layer).
    coarse_to_fine_radius : int or None
        If set, the argmax after adding each shallower layer is restricted to this circular radius (pixels)
        around the previous (deeper) peak, as in Ma et al.; ``None``: plain argmax of the weighted sum.
    psr_exclude : int
        Half-width of the square excluded around the peak when computing the PSR (5 -> 11 x 11 pixels).
    taper_alpha : float
        Taper multiplied into the features before the FFT: 1 = Hann (default), 0 = none, in between a Tukey
        window with a flat top over the central ``1 - taper_alpha``. Keep a taper: without one, precision
        drops sharply. The Hann taper biases a single detection toward the window centre by a few percent
        of the displacement (~8 % for nuclei half the window wide); :meth:`FilterBank.locate` (recentre and
        detect again) removes that bias, as does a flatter (Tukey) taper.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(40, ge=4, description="default window side, pixels")
    padding: float = Field(2.5, gt=0, description="window side / nucleus diameter")
    sigma: float = Field(2.0, gt=0, description="Gaussian target std, pixels")
    lambda_rel: float = Field(1e-2, gt=0, description="regularisation relative to mean spectral energy")
    learning_rate: float = Field(0.01, ge=0, le=1, description="moving-average rate eta")
    layer_weights: tuple[float, ...] = Field((1.0, 0.5, 0.2, 0.2), min_length=1)
    layer_norm: Literal["target", "max"] = "target"
    coarse_to_fine_radius: int | None = Field(None, ge=1, description="pixels")
    psr_exclude: int = Field(5, ge=0, description="half-width of PSR exclusion, pixels")
    taper_alpha: float = Field(1.0, ge=0, le=1, description="1 = Hann, 0 = no taper, else Tukey")

    @field_validator("layer_weights")
    @classmethod
    def _weights_non_negative(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(w < 0 for w in value) or sum(value) <= 0:
            raise ValueError(f"layer_weights must be non-negative with a positive sum, got {value}")
        return value

    def window_for(self, nucleus_diameter: float) -> int:
        """Window side for a nucleus of the given diameter: ``max(window, ceil(padding * diameter))``."""
        if not math.isfinite(nucleus_diameter) or nucleus_diameter < 0:
            raise ValueError(
                f"nucleus_diameter must be a finite non-negative pixel length, got {nucleus_diameter}"
            )
        return max(self.window, math.ceil(self.padding * nucleus_diameter))


def default_device() -> torch.device:
    """CUDA when present, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class CFDetection:
    """Result of :meth:`FilterBank.detect` for ``M`` windows.

    Attributes
    ----------
    displacement : np.ndarray
        (M, 2) float32 ``(dy, dx)`` pixels from the given window centre to the detected position.
    peak : np.ndarray
        (M,) float32 combined response at the integer peak (~1 for a perfect match, ``layer_norm="target"``).
    psr : np.ndarray
        (M,) float32 peak-to-sidelobe ratio ``(peak - mean_sidelobe) / std_sidelobe`` of the combined map.
    offsets : np.ndarray
        (M, 2) float32 rounding offsets of the detection windows (``centre - integer window centre``).
    response : torch.Tensor or None
        (M, H, W) combined circular response (weights normalised to sum 1); index ``(0, 0)`` is the target
        position of the filter, i.e. displacement ``-offset``. Kept only if requested.
    layer_peaks : np.ndarray
        (M, L) float32 maximum of each layer's response, for diagnostics.
    """

    displacement: np.ndarray
    peak: np.ndarray
    psr: np.ndarray
    offsets: np.ndarray
    response: torch.Tensor | None
    layer_peaks: np.ndarray

    def positions(self, centres: np.ndarray) -> np.ndarray:
        """Detected ``(y, x)`` positions, shape (M, 2): ``centres + displacement``."""
        centre_array = np.asarray(centres, dtype=np.float64)
        if centre_array.shape != self.displacement.shape:
            raise ValueError(
                f"centres shape {centre_array.shape} does not match {self.displacement.shape}; pass the "
                "centres the windows were cropped at"
            )
        return centre_array + self.displacement

    def value_at(self, displacement: np.ndarray | torch.Tensor) -> np.ndarray:
        """Bilinear, circular sample of the combined response at given displacements from the window centres.

        Parameters
        ----------
        displacement : array-like, shape (M, 2)
            ``(dy, dx)`` pixels relative to each window's float centre; e.g. zeros for "is the filter's
            cell at the centre of this candidate window", or ``candidate - centre`` for candidates inside it.

        Returns
        -------
        np.ndarray
            (M,) float32 response values.
        """
        if self.response is None:
            raise ValueError("this detection holds no response map; call detect(..., keep_response=True)")
        shift = torch.as_tensor(np.asarray(displacement, dtype=np.float32), device=self.response.device)
        if shift.shape != (self.response.shape[0], 2):
            raise ValueError(
                f"displacement must have shape ({self.response.shape[0]}, 2), got {tuple(shift.shape)}"
            )
        offsets = torch.as_tensor(self.offsets, device=self.response.device)
        return sample_circular(self.response, shift + offsets).cpu().numpy()


# ----------------------------------------------------------------------------------------------- pure maths


def signed_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map circular indices ``0..size-1`` to signed displacements (indices above ``size / 2`` -> negative)."""
    return torch.where(index > size / 2, index - size, index)


def gaussian_target(
    shape: tuple[int, int],
    sigma: float,
    offsets: torch.Tensor | None = None,
    n: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Circular Gaussian targets centred at index ``(0, 0)`` shifted by sub-pixel offsets.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)``.
    sigma : float
        Standard deviation in pixels.
    offsets : torch.Tensor, optional
        (N, 2) ``(dy, dx)`` sub-pixel positions of the target peak; zeros if omitted (then ``n`` is required).

    Returns
    -------
    torch.Tensor
        (N, 1, H, W) float32, peak value 1 at zero offset.
    """
    height, width = shape
    if offsets is None:
        if n is None:
            raise ValueError("gaussian_target needs either offsets (N, 2) or n")
        offsets = torch.zeros((n, 2), dtype=torch.float32, device=device)
    offsets = offsets.to(dtype=torch.float32, device=device if device is not None else offsets.device)
    dev = offsets.device
    grid_y = signed_index(torch.arange(height, device=dev), height).to(torch.float32)
    grid_x = signed_index(torch.arange(width, device=dev), width).to(torch.float32)
    dy2 = (grid_y[None, :] - offsets[:, 0:1]) ** 2
    dx2 = (grid_x[None, :] - offsets[:, 1:2]) ** 2
    target = torch.exp(-(dy2[:, :, None] + dx2[:, None, :]) / (2.0 * sigma**2))
    return target[:, None]


#: Rows (windows or cells) per block in bulk Fourier-domain work: blocks of a few MB keep temporaries
#: in cache and below the allocator's mmap threshold, so the cost stays linear in the number of cells.
ROW_BLOCK = 512


def row_blocks(n: int, block: int = ROW_BLOCK) -> list[slice]:
    """Consecutive slices of at most ``block`` rows covering ``range(n)`` (none when ``n == 0``)."""
    return [slice(start, min(start + block, n)) for start in range(0, n, block)]


def _blocked_spectrum(features: torch.Tensor, window: torch.Tensor | None) -> torch.Tensor:
    """:func:`_spectrum` computed block by block into one output tensor."""
    if features.shape[0] <= ROW_BLOCK:
        return _spectrum(features, window)
    out = torch.empty(
        (*features.shape[:-1], features.shape[-1] // 2 + 1), dtype=torch.complex64, device=features.device
    )
    for rows in row_blocks(features.shape[0]):
        out[rows] = _spectrum(features[rows], window)
    return out


def _weighted_sums(
    numerators: list[torch.Tensor],
    denominators: list[torch.Tensor],
    owner: np.ndarray | None,
    weight: np.ndarray | None,
    n_windows: int,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-window training terms summed into their owners' filters with the given weights."""
    owner = np.arange(n_windows) if owner is None else np.asarray(owner, np.int64).reshape(-1)
    weight = np.ones(n_windows) if weight is None else np.asarray(weight, np.float64).reshape(-1)
    if owner.shape != (n_windows,) or weight.shape != (n_windows,):
        raise ValueError(
            f"owner and weight need one value per window ({n_windows}), got {owner.shape} and {weight.shape}"
        )
    n_filters = int(owner.max()) + 1 if n_windows else 0
    if n_windows and (owner.min() < 0 or len(np.unique(owner)) != n_filters):
        raise ValueError("owner must number the filters 0 .. N - 1, each owning at least one window")
    device = numerators[0].device
    index = torch.as_tensor(owner, device=device)
    scale = torch.as_tensor(weight, dtype=torch.float32, device=device)[:, None]
    return [_summed_rows(num, index, scale, n_filters) for num in numerators], [
        _summed_rows(den, index, scale, n_filters) for den in denominators
    ]


def _summed_rows(values: torch.Tensor, index: torch.Tensor, scale: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Rows of (M, ...) ``values`` times ``scale`` (M, 1), summed into ``n_rows`` rows by ``index`` (M,).

    Complex values are summed as their real view: the same numbers, and torch's real ``index_add_`` is
    several times faster than its complex one.
    """
    flat = (torch.view_as_real(values) if values.is_complex() else values).reshape(values.shape[0], -1)
    summed = torch.zeros((n_rows, flat.shape[1]), dtype=flat.dtype, device=flat.device)
    summed.index_add_(0, index, flat * scale)
    if values.is_complex():
        return torch.view_as_complex(summed.reshape(n_rows, *values.shape[1:], 2))
    return summed.reshape(n_rows, *values.shape[1:])


def window_spectra(features: Features, config: CFConfig | None = None) -> list[torch.Tensor]:
    """Tapered Fourier transforms of feature windows, as every filter of that configuration sees them.

    Parameters
    ----------
    features : list of torch.Tensor
        Per layer (M, C_l, H, W) real features.
    config : CFConfig, optional
        Gives the taper (defaults if omitted).

    Returns
    -------
    list of torch.Tensor
        Per layer (M, C_l, H, W//2+1) complex64, on the features' device.
    """
    config = config if config is not None else CFConfig()
    _, height, width = _check_features(features)
    window = _taper(config, (height, width), features[0].device)
    return [_blocked_spectrum(layer.to(torch.float32), window) for layer in features]


def _target_spectrum(shape: tuple[int, int], sigma: float, offsets: torch.Tensor) -> torch.Tensor:
    """``rfft2`` of :func:`gaussian_target`, computed from its two 1-D factors (N, 1, H, W//2+1)."""
    height, width = shape
    dev = offsets.device
    grid_y = signed_index(torch.arange(height, device=dev), height).to(torch.float32)
    grid_x = signed_index(torch.arange(width, device=dev), width).to(torch.float32)
    offsets = offsets.to(torch.float32)
    along_y = torch.exp(-((grid_y[None, :] - offsets[:, 0:1]) ** 2) / (2.0 * sigma**2))
    along_x = torch.exp(-((grid_x[None, :] - offsets[:, 1:2]) ** 2) / (2.0 * sigma**2))
    if offsets.shape[0] == 0:  # oneMKL rejects empty batches
        return torch.zeros((0, 1, height, width // 2 + 1), dtype=torch.complex64, device=dev)
    return (torch.fft.fft(along_y)[:, :, None] * torch.fft.rfft(along_x)[:, None, :])[:, None]


def _taper(config: CFConfig, shape: tuple[int, int], device: torch.device | str) -> torch.Tensor | None:
    if config.taper_alpha <= 0:
        return None
    return _cached_taper((int(shape[0]), int(shape[1])), float(config.taper_alpha), str(torch.device(device)))


@functools.lru_cache(maxsize=32)
def _cached_taper(shape: tuple[int, int], alpha: float, device: str) -> torch.Tensor:
    # Read-only by convention: every caller multiplies into a new tensor.
    return taper_window(shape, alpha, device=device)


def _spectrum(features: torch.Tensor, window: torch.Tensor | None) -> torch.Tensor:
    if window is not None:
        features = features * window
    if features.shape[0] == 0:  # oneMKL rejects empty batches
        return torch.zeros(
            (*features.shape[:-1], features.shape[-1] // 2 + 1), dtype=torch.complex64, device=features.device
        )
    return torch.fft.rfft2(features)


def _full_spectrum_mean(half: torch.Tensor, width: int) -> torch.Tensor:
    """Mean over the full Hermitian spectrum of a real-input rfft2 quantity: (..., H, W//2+1) -> (...)."""
    column_weight = torch.full((half.shape[-1],), 2.0, dtype=half.dtype, device=half.device)
    column_weight[0] = 1.0
    if width % 2 == 0:
        column_weight[-1] = 1.0
    return (half * column_weight).sum(dim=(-2, -1)) / (half.shape[-2] * width)


def _train_terms(spectrum: torch.Tensor, target_spectrum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    numerator = target_spectrum * spectrum.conj()
    denominator = (spectrum.real**2 + spectrum.imag**2).sum(dim=1, keepdim=True)
    return numerator, denominator


def correlation_responses(
    numerator: torch.Tensor,
    denominator: torch.Tensor,
    features: torch.Tensor,
    lambda_rel: float,
    window: torch.Tensor | None,
) -> torch.Tensor:
    """Spatial response of one layer's filters to features, batched over cells.

    Parameters
    ----------
    numerator : torch.Tensor
        (M, C, H, W//2+1) complex ``Y * conj(X)``.
    denominator : torch.Tensor
        (M, 1, H, W//2+1) real ``sum_d |X^d|^2``.
    features : torch.Tensor
        (M, C, H, W) real features ``z`` of the search windows.
    lambda_rel : float
        Regularisation relative to the mean spectral energy of each filter.
    window : torch.Tensor or None
        (H, W) taper applied to ``features`` before the FFT.

    Returns
    -------
    torch.Tensor
        (M, H, W) float32 circular responses ``irfft2(sum_d W^d * Z^d)``.
    """
    height, width = features.shape[-2:]
    spectrum = _spectrum(features, window)
    return _spectrum_responses(numerator, denominator, spectrum, lambda_rel, (height, width))


def _spectrum_responses(
    numerator: torch.Tensor,
    denominator: torch.Tensor,
    spectrum: torch.Tensor,
    lambda_rel: float,
    shape: tuple[int, int],
) -> torch.Tensor:
    """:func:`correlation_responses` from the (tapered) spectrum of the features."""
    lam = lambda_rel * _full_spectrum_mean(denominator, shape[1])[..., None, None]
    correlated = (numerator * spectrum).sum(dim=1) / (denominator[:, 0] + lam[:, 0])
    if correlated.shape[0] == 0:
        return torch.zeros((0, *shape), dtype=torch.float32, device=spectrum.device)
    return torch.fft.irfft2(correlated, s=shape)


def _circular_near(peaks: torch.Tensor, size: int, radius: float) -> torch.Tensor:
    """(M, size) bool: positions whose circular distance to ``peaks`` (M,) is at most ``radius``."""
    grid = torch.arange(size, device=peaks.device)
    diff = (grid[None, :] - peaks[:, None]) % size
    return torch.minimum(diff, size - diff) <= radius


def _argmax_2d(response: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(M, 2) int64 ``(iy, ix)`` of each map's maximum, optionally restricted to ``mask`` (M, H, W)."""
    width = response.shape[-1]
    if mask is not None:
        response = response.masked_fill(~mask, -torch.inf)
    flat = response.flatten(1).argmax(dim=1)
    return torch.stack([flat // width, flat % width], dim=1)


def _gather(response: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(response.shape[0], device=response.device)
    return response[rows, iy % response.shape[1], ix % response.shape[2]]


def locate_peaks(
    response: torch.Tensor, peaks: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer and sub-pixel peaks of circular response maps.

    Sub-pixel refinement fits a parabola through the peak and its two neighbours along each axis, with
    wrap-around, clamped to half a pixel.

    Parameters
    ----------
    response : torch.Tensor
        (M, H, W) maps.
    peaks : torch.Tensor, optional
        (M, 2) int64 integer peaks to refine; the global argmax when omitted.

    Returns
    -------
    peaks : torch.Tensor
        (M, 2) int64 circular indices.
    subpixel : torch.Tensor
        (M, 2) float32 signed peak positions (displacement from index ``(0, 0)``).
    """
    if peaks is None:
        peaks = _argmax_2d(response)
    iy, ix = peaks[:, 0], peaks[:, 1]
    centre = _gather(response, iy, ix)
    refined = []
    for axis_index, (prev, nxt) in enumerate(
        [
            (_gather(response, iy - 1, ix), _gather(response, iy + 1, ix)),
            (_gather(response, iy, ix - 1), _gather(response, iy, ix + 1)),
        ]
    ):
        curvature = prev - 2.0 * centre + nxt
        safe = torch.where(curvature < 0, curvature, torch.full_like(curvature, -1.0))
        delta = torch.where(curvature < 0, 0.5 * (prev - nxt) / safe, torch.zeros_like(curvature))
        signed = signed_index(peaks[:, axis_index], response.shape[1 + axis_index]).to(torch.float32)
        refined.append(signed + delta.clamp(-0.5, 0.5))
    return peaks, torch.stack(refined, dim=1)


def peak_to_sidelobe(response: torch.Tensor, peaks: torch.Tensor, exclude: int) -> torch.Tensor:
    """Peak-to-sidelobe ratio of each map, excluding a ``(2 * exclude + 1)``-square around the peak.

    Parameters
    ----------
    response : torch.Tensor
        (M, H, W) maps.
    peaks : torch.Tensor
        (M, 2) int64 circular peak indices.
    exclude : int
        Half-width of the excluded square, pixels (wraps around the border).

    Returns
    -------
    torch.Tensor
        (M,) float32 ``(peak - mean(sidelobe)) / std(sidelobe)``.
    """
    _, height, width = response.shape
    near = (
        _circular_near(peaks[:, 0], height, exclude)[:, :, None]
        & _circular_near(peaks[:, 1], width, exclude)[:, None, :]
    )
    side = (~near).to(response.dtype)
    count = side.sum(dim=(1, 2)).clamp_min(1.0)
    mean = (response * side).sum(dim=(1, 2)) / count
    var = (((response - mean[:, None, None]) ** 2) * side).sum(dim=(1, 2)) / count
    peak = _gather(response, peaks[:, 0], peaks[:, 1])
    return (peak - mean) / var.sqrt().clamp_min(1e-12)


def sample_circular(maps: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of circular maps at signed sub-pixel positions.

    Parameters
    ----------
    maps : torch.Tensor
        (M, H, W).
    positions : torch.Tensor
        (M, 2) ``(y, x)`` signed positions relative to index ``(0, 0)``.

    Returns
    -------
    torch.Tensor
        (M,) sampled values.
    """
    return max_over_steps(maps, positions, torch.zeros((1, 2), dtype=torch.int64))


def max_over_steps(maps: torch.Tensor, positions: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Maximum of bilinear samples of circular maps at ``positions + step`` over integer steps.

    Equals ``max_k sample_circular(maps, positions + steps[k])`` with one gather of a small patch per map.

    Parameters
    ----------
    maps : torch.Tensor
        (M, H, W).
    positions : torch.Tensor
        (M, 2) ``(y, x)`` signed positions relative to index ``(0, 0)``.
    steps : torch.Tensor
        (K, 2) integer ``(dy, dx)`` steps, K >= 1.

    Returns
    -------
    torch.Tensor
        (M,) maxima.
    """
    positions = positions.to(dtype=maps.dtype)
    steps = steps.to(device=maps.device, dtype=torch.int64)
    base = torch.floor(positions)
    fy, fx = (positions - base).unbind(dim=1)
    reach = int(steps.abs().max()) if steps.numel() else 0
    offsets = torch.arange(-reach, reach + 2, device=maps.device)
    rows = (base[:, 0].to(torch.int64)[:, None] + offsets) % maps.shape[1]  # (M, P)
    cols = (base[:, 1].to(torch.int64)[:, None] + offsets) % maps.shape[2]
    cells = torch.arange(maps.shape[0], device=maps.device)[:, None, None]
    patch = maps[cells, rows[:, :, None], cols[:, None, :]]
    a, b = steps[:, 0] + reach, steps[:, 1] + reach  # (K,)
    fy, fx = fy[:, None], fx[:, None]
    values = (
        patch[:, a, b] * (1 - fy) * (1 - fx)
        + patch[:, a + 1, b] * fy * (1 - fx)
        + patch[:, a, b + 1] * (1 - fy) * fx
        + patch[:, a + 1, b + 1] * fy * fx
    )
    return values.amax(dim=1)


# ----------------------------------------------------------------------------------------------- state


def _check_features(features: Features, name: str = "features") -> tuple[int, int, int]:
    if isinstance(features, torch.Tensor) or not isinstance(features, Sequence) or len(features) == 0:
        raise TypeError(f"{name} must be a non-empty list of tensors (one (N, C_l, H, W) tensor per layer)")
    shapes = []
    for layer, tensor in enumerate(features):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}[{layer}] must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.ndim != 4:
            raise ValueError(f"{name}[{layer}] must have shape (N, C, H, W), got {tuple(tensor.shape)}")
        if tensor.is_complex() or not tensor.is_floating_point():
            raise TypeError(f"{name}[{layer}] must be a real floating tensor, got {tensor.dtype}")
        n, _, height, width = tensor.shape
        shapes.append((int(n), int(height), int(width)))
        if shapes[-1] != shapes[0]:
            raise ValueError(
                f"{name}[{layer}] has (N, H, W) = {shapes[-1]} but layer 0 has {shapes[0]}; all layers "
                "must be aligned pixel-for-pixel with the same windows"
            )
    return shapes[0]


def _window_offsets(centres: np.ndarray | torch.Tensor | None, n: int, size: tuple[int, int]) -> torch.Tensor:
    if centres is None:
        return torch.zeros((n, 2), dtype=torch.float32)
    if size[0] != size[1]:
        raise ValueError(f"centres are only meaningful for square windows, got window shape {size}")
    _, offsets = window_origins(centres, size[0])
    if offsets.shape[0] != n:
        raise ValueError(
            f"got {offsets.shape[0]} centres for {n} feature windows; pass one centre per window row"
        )
    return offsets


class FilterBank:
    """Correlation filters of ``N`` cells over ``L`` feature layers, on one torch device.

    Build with :meth:`train`; the constructor takes already computed Fourier-domain state.

    Parameters
    ----------
    numerators : list of torch.Tensor
        Per layer, (N, C_l, H, W//2+1) complex64 ``Y * conj(X)`` (moving averages).
    denominators : list of torch.Tensor
        Per layer, (N, 1, H, W//2+1) float32 ``sum_d |X^d|^2`` (moving averages).
    window_shape : tuple of int
        ``(H, W)`` spatial window shape.
    config : CFConfig
        Parameters.
    layer_weights : sequence of float, optional
        Overrides ``config.layer_weights``; length must equal the number of layers.
    """

    def __init__(
        self,
        numerators: Sequence[torch.Tensor],
        denominators: Sequence[torch.Tensor],
        window_shape: tuple[int, int],
        config: CFConfig | None = None,
        layer_weights: Sequence[float] | None = None,
    ) -> None:
        self.config = config if config is not None else CFConfig()
        if len(numerators) != len(denominators) or len(numerators) == 0:
            raise ValueError(
                "need one numerator and one denominator per layer, got "
                f"{len(numerators)} and {len(denominators)}"
            )
        weights = tuple(
            float(w) for w in (layer_weights if layer_weights is not None else self.config.layer_weights)
        )
        if len(weights) != len(numerators):
            raise ValueError(
                f"{len(weights)} layer weights for {len(numerators)} layers; pass layer_weights= (e.g. the "
                "extractor's layer_weights) or set CFConfig.layer_weights to match"
            )
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"layer_weights must be non-negative with a positive sum, got {weights}")
        height, width = int(window_shape[0]), int(window_shape[1])
        n = numerators[0].shape[0]
        spectrum_shape = (height, width // 2 + 1)
        for layer, (num, den) in enumerate(zip(numerators, denominators, strict=True)):
            if (
                num.ndim != 4
                or num.shape[0] != n
                or tuple(num.shape[2:]) != spectrum_shape
                or not num.is_complex()
            ):
                raise ValueError(
                    f"numerators[{layer}] must be complex (N={n}, C, {height}, {width // 2 + 1}), got "
                    f"{tuple(num.shape)} {num.dtype}"
                )
            if tuple(den.shape) != (n, 1, *spectrum_shape):
                raise ValueError(
                    f"denominators[{layer}] must have shape ({n}, 1, {height}, {width // 2 + 1}), "
                    f"got {tuple(den.shape)}"
                )
        self.numerators = [num.to(torch.complex64) for num in numerators]
        self.denominators = [den.to(torch.float32) for den in denominators]
        self.window_shape = (height, width)
        self.layer_weights = weights

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        features: Features,
        config: CFConfig | None = None,
        *,
        centres: np.ndarray | torch.Tensor | None = None,
        layer_weights: Sequence[float] | None = None,
        device: torch.device | str | None = None,
    ) -> FilterBank:
        """Train one filter per cell and layer from features of windows centred on the cells.

        Parameters
        ----------
        features : list of torch.Tensor
            Per layer (N, C_l, H, W) real features; row ``i`` is cell ``i``.
        config : CFConfig, optional
            Parameters (defaults if omitted).
        centres : array-like, shape (N, 2), optional
            Float ``(y, x)`` centres the windows were cropped at; the target is placed at their rounding
            offsets so later displacements are relative to exact positions. Omitted: target on window pixel
            ``(H // 2, W // 2)``.
        layer_weights : sequence of float, optional
            Overrides ``config.layer_weights`` (e.g. the extractor's defaults).
        device : torch.device or str, optional
            Where the filters live; defaults to the device of ``features[0]``.

        Returns
        -------
        FilterBank
        """
        config = config if config is not None else CFConfig()
        _, height, width = _check_features(features)
        device = torch.device(device) if device is not None else features[0].device
        spectra = window_spectra([layer.to(device=device, dtype=torch.float32) for layer in features], config)
        return cls.from_spectra(
            spectra, (height, width), config, centres=centres, layer_weights=layer_weights
        )

    @classmethod
    def from_spectra(
        cls,
        spectra: Sequence[torch.Tensor],
        window_shape: tuple[int, int],
        config: CFConfig | None = None,
        *,
        centres: np.ndarray | torch.Tensor | None = None,
        layer_weights: Sequence[float] | None = None,
        owner: np.ndarray | None = None,
        weight: np.ndarray | None = None,
    ) -> FilterBank:
        """:meth:`train` from windows already transformed by :func:`window_spectra` (e.g. shared ones).

        With ``owner`` and ``weight``, each filter is trained on several windows: its numerator and
        denominator are the weighted sums of theirs. Training on a cell's first window and blending each
        later one in with :meth:`update` at rate ``eta`` gives the weights ``(1 - eta)**(n - 1)`` for the
        first of ``n`` windows and ``eta * (1 - eta)**(n - 1 - j)`` for window ``j >= 1``.

        Parameters
        ----------
        spectra : list of torch.Tensor
            Per layer (M, C_l, H, W//2+1) complex64, one row per window; the bank lives on their device.
        window_shape : tuple of int
            ``(H, W)`` of the windows.
        config, centres, layer_weights
            As for :meth:`train` (``centres``: one per window, shape (M, 2)).
        owner : numpy.ndarray of int, shape (M,), optional
            Filter each window belongs to, every filter in ``0 .. N - 1`` owning at least one window.
            Default: window ``i`` is filter ``i``.
        weight : numpy.ndarray of float, shape (M,), optional
            Weight of each window in its filter (default 1).

        Returns
        -------
        FilterBank
        """
        config = config if config is not None else CFConfig()
        height, width = int(window_shape[0]), int(window_shape[1])
        if not spectra or any(
            layer.ndim != 4 or tuple(layer.shape[2:]) != (height, width // 2 + 1) or not layer.is_complex()
            for layer in spectra
        ):
            raise ValueError(
                f"spectra must be complex (N, C, {height}, {width // 2 + 1}) tensors, one per layer, got "
                f"{[tuple(layer.shape) for layer in spectra]}"
            )
        n_windows = int(spectra[0].shape[0])
        device = spectra[0].device
        offsets = _window_offsets(centres, n_windows, (height, width)).to(device)
        target_spectrum = _target_spectrum((height, width), config.sigma, offsets)
        numerators, denominators = [], []
        for spectrum in spectra:
            num = torch.empty_like(spectrum)
            den = torch.empty((n_windows, 1, *spectrum.shape[2:]), dtype=torch.float32, device=device)
            for rows in row_blocks(n_windows):
                num[rows], den[rows] = _train_terms(spectrum[rows], target_spectrum[rows])
            numerators.append(num)
            denominators.append(den)
        if owner is not None or weight is not None:
            numerators, denominators = _weighted_sums(numerators, denominators, owner, weight, n_windows)
        return cls(numerators, denominators, (height, width), config, layer_weights)

    # -- properties ---------------------------------------------------------------------------------

    @property
    def n_cells(self) -> int:
        """Number of cells ``N``."""
        return int(self.numerators[0].shape[0])

    def __len__(self) -> int:
        return self.n_cells

    @property
    def n_layers(self) -> int:
        """Number of feature layers ``L``."""
        return len(self.numerators)

    @property
    def layer_channels(self) -> tuple[int, ...]:
        """Channels ``C_l`` per layer."""
        return tuple(int(num.shape[1]) for num in self.numerators)

    @property
    def device(self) -> torch.device:
        """Device holding the filters."""
        return self.numerators[0].device

    def _window(self) -> torch.Tensor | None:
        return _taper(self.config, self.window_shape, self.device)

    def _validate(self, features: Features, n_expected: int | None) -> list[torch.Tensor]:
        n, height, width = _check_features(features)
        if len(features) != self.n_layers:
            raise ValueError(f"got {len(features)} feature layers for a bank of {self.n_layers} layers")
        if (height, width) != self.window_shape:
            raise ValueError(
                f"feature windows are {(height, width)} but the filters were trained on {self.window_shape}"
            )
        channels = tuple(int(layer.shape[1]) for layer in features)
        if channels != self.layer_channels:
            raise ValueError(
                f"feature channels per layer {channels} differ from the filters' {self.layer_channels}"
            )
        if n_expected is not None and n != n_expected:
            raise ValueError(
                f"got {n} feature windows for {n_expected} filters; row i must belong to filter i"
            )
        return [layer.to(device=self.device, dtype=torch.float32) for layer in features]

    def spectra(self, features: Features) -> list[torch.Tensor]:
        """Tapered Fourier transforms of feature windows, reusable by :meth:`detect` and :meth:`update`.

        When several filters meet the same windows (candidate windows shared by competing tracks, then the
        update at the chosen ones), transforming each window once saves most of the FFT work.

        Parameters
        ----------
        features : list of torch.Tensor
            Per layer (M, C_l, H, W) features, H x W the bank's window shape.

        Returns
        -------
        list of torch.Tensor
            Per layer (M, C_l, H, W//2+1) complex64; index rows freely (e.g. ``[s[rows] for s in spectra]``).
        """
        return window_spectra(self._validate(features, None), self.config)

    def _check_spectra(self, spectra: Sequence[torch.Tensor], n_expected: int) -> list[torch.Tensor]:
        height, width = self.window_shape
        expected = [(n_expected, c, height, width // 2 + 1) for c in self.layer_channels]
        shapes = [tuple(layer.shape) for layer in spectra]
        if shapes != expected or not all(layer.is_complex() for layer in spectra):
            raise ValueError(f"spectra must be complex tensors of shapes {expected}, got {shapes}")
        return [layer.to(self.device) for layer in spectra]

    def filters(self) -> list[torch.Tensor]:
        """Regularised Fourier filters ``W^d = A^d / (B + lambda_eff)``, per layer (N, C_l, H, W//2+1)."""
        width = self.window_shape[1]
        result = []
        for num, den in zip(self.numerators, self.denominators, strict=True):
            lam = self.config.lambda_rel * _full_spectrum_mean(den, width)[..., None, None]
            result.append(num / (den + lam))
        return result

    # -- detection ----------------------------------------------------------------------------------

    def detect(
        self,
        features: Features | None,
        centres: np.ndarray | torch.Tensor | None = None,
        *,
        index: np.ndarray | torch.Tensor | None = None,
        keep_response: bool = False,
        spectra: Sequence[torch.Tensor] | None = None,
    ) -> CFDetection:
        """Locate each filter's cell in search windows, all in one batched pass per layer.

        Parameters
        ----------
        features : list of torch.Tensor
            Per layer (M, C_l, H, W) features of the search windows.
        centres : array-like, shape (M, 2), optional
            Float ``(y, x)`` centres the windows were cropped at; displacements are relative to them.
            Omitted: relative to window pixel ``(H // 2, W // 2)``.
        index : array-like of int, shape (M,), optional
            Filter row for each window (e.g. ``K`` candidate windows per track); ``arange(N)`` if omitted.
        keep_response : bool
            Keep the combined response maps in the result (needed for :meth:`CFDetection.value_at`).
        spectra : list of torch.Tensor, optional
            :meth:`spectra` of the search windows, in place of ``features`` (pass ``features=None``).

        Returns
        -------
        CFDetection
        """
        responses = self._layer_responses(features, index, spectra)
        offsets = _window_offsets(centres, responses[0].shape[0], self.window_shape).to(self.device)
        return self._combine(responses, offsets, keep_response)

    def response_maps(
        self,
        features: Features | None,
        *,
        index: np.ndarray | torch.Tensor | None = None,
        spectra: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Combined response maps ``sum_l w_l r_l / sum_l w_l`` only, without locating peaks.

        For callers that read responses at known positions (e.g. a linker scoring candidate detections)
        rather than search for the maximum. Arguments as for :meth:`detect`.

        Returns
        -------
        torch.Tensor
            (M, H, W) float32 circular maps, index ``(0, 0)`` at each window's rounded centre.
        """
        responses = self._layer_responses(features, index, spectra)
        combined = sum(w * r for w, r in zip(self.layer_weights, responses, strict=True))
        return combined / sum(self.layer_weights)

    def _layer_responses(
        self,
        features: Features | None,
        index: np.ndarray | torch.Tensor | None,
        spectra: Sequence[torch.Tensor] | None,
    ) -> list[torch.Tensor]:
        rows = None
        if index is not None:
            rows = torch.as_tensor(np.asarray(index), dtype=torch.int64, device=self.device).reshape(-1)
            if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= self.n_cells):
                raise ValueError(
                    f"index values must lie in [0, {self.n_cells}), got {rows.min()}..{rows.max()}"
                )
        n_windows = self.n_cells if rows is None else int(rows.numel())
        spectra = self._resolve_spectra(features, spectra, n_windows)
        responses = []
        for num, den, spectrum in zip(self.numerators, self.denominators, spectra, strict=True):
            if rows is not None:
                num, den = num[rows], den[rows]
            response = _spectrum_responses(num, den, spectrum, self.config.lambda_rel, self.window_shape)
            if self.config.layer_norm == "max":
                response = response / response.flatten(1).abs().amax(dim=1).clamp_min(1e-12)[:, None, None]
            responses.append(response)
        return responses

    def _resolve_spectra(
        self, features: Features | None, spectra: Sequence[torch.Tensor] | None, n_windows: int
    ) -> list[torch.Tensor]:
        if (features is None) == (spectra is None):
            raise ValueError("pass either features or spectra (exactly one of them)")
        if spectra is not None:
            return self._check_spectra(spectra, n_windows)
        window = self._window()
        return [_blocked_spectrum(layer, window) for layer in self._validate(features, n_windows)]

    def _combine(
        self, responses: list[torch.Tensor], offsets: torch.Tensor, keep_response: bool
    ) -> CFDetection:
        weights = self.layer_weights
        total = sum(weights)
        combined = responses[-1] * weights[-1]
        peaks = _argmax_2d(combined)
        radius = self.config.coarse_to_fine_radius
        height, width = self.window_shape
        # Deepest layer first: each shallower layer refines within a neighbourhood of the deeper peak.
        for response, weight in zip(reversed(responses[:-1]), reversed(weights[:-1]), strict=True):
            combined = combined + weight * response
            mask = None
            if radius is not None:
                mask = (
                    _circular_near(peaks[:, 0], height, radius)[:, :, None]
                    & _circular_near(peaks[:, 1], width, radius)[:, None, :]
                )
            peaks = _argmax_2d(combined, mask)
        combined = combined / total
        peaks, subpixel = locate_peaks(combined, peaks)
        peak_values = _gather(combined, peaks[:, 0], peaks[:, 1])
        psr = peak_to_sidelobe(combined, peaks, self.config.psr_exclude)
        displacement = subpixel - offsets
        layer_peaks = torch.stack([r.flatten(1).amax(dim=1) for r in responses], dim=1)
        return CFDetection(
            displacement=displacement.cpu().numpy().astype(np.float32),
            peak=peak_values.cpu().numpy().astype(np.float32),
            psr=psr.cpu().numpy().astype(np.float32),
            offsets=offsets.cpu().numpy().astype(np.float32),
            response=combined if keep_response else None,
            layer_peaks=layer_peaks.cpu().numpy().astype(np.float32),
        )

    def locate(
        self,
        crop: Callable[[np.ndarray], Features],
        centres: np.ndarray,
        *,
        iterations: int = 2,
        index: np.ndarray | torch.Tensor | None = None,
    ) -> tuple[np.ndarray, CFDetection]:
        """Detect, recentre the windows on the estimates and detect again.

        The taper weights a displaced cell unevenly, which biases a single detection toward the window centre
        by a few percent of the displacement; every further pass from recentred windows shrinks the remaining
        error by the same factor, at the cost of one more batched crop and detection.

        Parameters
        ----------
        crop : callable
            ``crop(centres (M, 2) float64) -> features`` (per layer (M, C_l, H, W)), e.g.
            ``lambda c: extractor.windows_from_maps(maps, c, size)``.
        centres : np.ndarray
            (M, 2) float ``(y, x)`` starting window centres (previous or predicted positions).
        iterations : int
            Number of detection passes (>= 1).
        index : array-like of int, shape (M,), optional
            Filter row for each window, as in :meth:`detect`.

        Returns
        -------
        positions : np.ndarray
            (M, 2) float64 detected ``(y, x)`` positions.
        detection : CFDetection
            The last pass; its displacement is relative to the last centres (``positions - displacement``).
        """
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        positions = as_centres(centres).cpu().numpy()
        detection = self.detect(crop(positions), positions, index=index)
        positions = detection.positions(positions)
        for _ in range(iterations - 1):
            detection = self.detect(crop(positions), positions, index=index)
            positions = detection.positions(positions)
        return positions, detection

    # -- update -------------------------------------------------------------------------------------

    def update(
        self,
        features: Features | None,
        centres: np.ndarray | torch.Tensor | None = None,
        *,
        learning_rate: float | np.ndarray | torch.Tensor | None = None,
        spectra: Sequence[torch.Tensor] | None = None,
    ) -> None:
        """Blend features at the new positions into the filters (in place).

        ``A <- (1 - eta) A + eta A_new`` and ``B <- (1 - eta) B + eta B_new`` in the Fourier domain.

        Parameters
        ----------
        features : list of torch.Tensor
            Per layer (N, C_l, H, W) features of windows centred on the cells' new positions.
        centres : array-like, shape (N, 2), optional
            Float centres of those windows (target placed at their rounding offsets).
        learning_rate : float or array-like of shape (N,), optional
            ``eta`` in [0, 1]; per-cell values allow freezing uncertain cells (0). Defaults to the config's.
        spectra : list of torch.Tensor, optional
            :meth:`spectra` of those windows, in place of ``features`` (pass ``features=None``).
        """
        spectra = self._resolve_spectra(features, spectra, self.n_cells)
        rate = torch.as_tensor(
            self.config.learning_rate if learning_rate is None else learning_rate, dtype=torch.float32
        ).to(self.device)
        if rate.ndim == 0:
            rate = rate.expand(self.n_cells)
        if rate.shape != (self.n_cells,):
            raise ValueError(
                f"learning_rate must be a scalar or shape ({self.n_cells},), got {tuple(rate.shape)}"
            )
        if bool(((rate < 0) | (rate > 1) | ~torch.isfinite(rate)).any()):
            raise ValueError("learning_rate values must lie in [0, 1]")
        rate = rate[:, None, None, None]
        complex_rate = rate.to(torch.complex64)
        offsets = _window_offsets(centres, self.n_cells, self.window_shape).to(self.device)
        target_spectrum = _target_spectrum(self.window_shape, self.config.sigma, offsets)
        for layer_index, spectrum in enumerate(spectra):
            # New tensors (the old ones may be shared with a caller), filled block by block.
            numerator = torch.empty_like(self.numerators[layer_index])
            denominator = torch.empty_like(self.denominators[layer_index])
            for rows in row_blocks(self.n_cells):
                num, den = _train_terms(spectrum[rows], target_spectrum[rows])
                numerator[rows] = torch.lerp(self.numerators[layer_index][rows], num, complex_rate[rows])
                denominator[rows] = torch.lerp(self.denominators[layer_index][rows], den, rate[rows])
            self.numerators[layer_index] = numerator
            self.denominators[layer_index] = denominator

    # -- bookkeeping --------------------------------------------------------------------------------

    def _like(self, numerators: list[torch.Tensor], denominators: list[torch.Tensor]) -> FilterBank:
        return FilterBank(numerators, denominators, self.window_shape, self.config, self.layer_weights)

    def select(self, indices: np.ndarray | torch.Tensor | Sequence[int]) -> FilterBank:
        """New bank with the given cells (int indices or a boolean mask of length N), in that order."""
        selector = torch.as_tensor(np.asarray(indices), device=self.device)
        if selector.dtype == torch.bool:
            if selector.shape != (self.n_cells,):
                raise ValueError(
                    f"boolean mask must have shape ({self.n_cells},), got {tuple(selector.shape)}"
                )
            selector = torch.nonzero(selector).reshape(-1)
        selector = selector.to(torch.int64).reshape(-1)
        if selector.numel() and (int(selector.min()) < -self.n_cells or int(selector.max()) >= self.n_cells):
            raise ValueError(f"indices must lie in [0, {self.n_cells}) for a bank of {self.n_cells} cells")
        return self._like([n[selector] for n in self.numerators], [d[selector] for d in self.denominators])

    def concat(self, other: FilterBank) -> FilterBank:
        """New bank with this bank's cells followed by ``other``'s (same layers, channels and window)."""
        if not isinstance(other, FilterBank):
            raise TypeError(f"can only concat another FilterBank, got {type(other).__name__}")
        if other.window_shape != self.window_shape or other.layer_channels != self.layer_channels:
            raise ValueError(
                f"cannot concat banks of window {other.window_shape} / channels {other.layer_channels} onto "
                f"window {self.window_shape} / channels {self.layer_channels}"
            )
        return self._like(
            [
                torch.cat([a, b.to(self.device)])
                for a, b in zip(self.numerators, other.numerators, strict=True)
            ],
            [
                torch.cat([a, b.to(self.device)])
                for a, b in zip(self.denominators, other.denominators, strict=True)
            ],
        )

    def to(self, device: torch.device | str) -> FilterBank:
        """Copy of the bank on another device."""
        return self._like([n.to(device) for n in self.numerators], [d.to(device) for d in self.denominators])

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Arrays for saving (e.g. ``np.savez(path, **bank.to_numpy())``); inverse of :meth:`from_numpy`."""
        arrays: dict[str, np.ndarray] = {
            "window_shape": np.asarray(self.window_shape, dtype=np.int64),
            "layer_weights": np.asarray(self.layer_weights, dtype=np.float64),
        }
        for layer, (num, den) in enumerate(zip(self.numerators, self.denominators, strict=True)):
            arrays[f"numerator_{layer}"] = num.cpu().numpy()
            arrays[f"denominator_{layer}"] = den.cpu().numpy()
        return arrays

    @classmethod
    def from_numpy(
        cls, arrays: dict[str, np.ndarray], config: CFConfig | None = None, device: torch.device | str = "cpu"
    ) -> FilterBank:
        """Rebuild a bank from :meth:`to_numpy` arrays."""
        try:
            n_layers = sum(1 for key in arrays if key.startswith("numerator_"))
            numerators = [torch.as_tensor(arrays[f"numerator_{i}"], device=device) for i in range(n_layers)]
            denominators = [
                torch.as_tensor(arrays[f"denominator_{i}"], device=device) for i in range(n_layers)
            ]
            shape = tuple(int(v) for v in np.asarray(arrays["window_shape"]))
            weights = tuple(float(w) for w in np.asarray(arrays["layer_weights"]))
        except KeyError as error:
            raise ValueError(
                f"filter arrays lack {error}; expected the keys written by FilterBank.to_numpy"
            ) from None
        return cls(numerators, denominators, (shape[0], shape[1]), config, weights)


# ----------------------------------------------------------------------------------------------- wrappers


def train_filters(
    features: Features,
    config: CFConfig | None = None,
    *,
    centres: np.ndarray | torch.Tensor | None = None,
    layer_weights: Sequence[float] | None = None,
    device: torch.device | str | None = None,
) -> FilterBank:
    """Functional form of :meth:`FilterBank.train`."""
    return FilterBank.train(features, config, centres=centres, layer_weights=layer_weights, device=device)


def detect_displacements(
    bank: FilterBank, features: Features, centres: np.ndarray | torch.Tensor | None = None
) -> CFDetection:
    """Functional form of :meth:`FilterBank.detect` (one window per filter)."""
    return bank.detect(features, centres)
