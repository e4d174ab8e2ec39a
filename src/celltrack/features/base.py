"""Feature-extractor interface and the shared, vectorised window cropping.

An extractor turns a frame and ``N`` window centres into one tensor per feature layer, each of shape
``(N, C_l, size, size)`` and aligned pixel-for-pixel with the window defined in :mod:`celltrack.cf.windows`
(origin ``floor(centre + 0.5) - size // 2``). The correlation filters take the float centres as well, so the
sub-pixel rounding offset never gets lost.

Border handling: windows reaching past the image are filled with a constant *background* value, never
dropped or shrunk. Reflection would mirror the cell into the padding and create a phantom twin whose
correlation peak pulls the estimate toward the border (the same mirror artefact as a misplaced conjugate);
edge replication smears border pixels into streaks with strong gradients. A constant background is what an
empty field of view looks like, so a cell leaving the image simply loses part of its texture.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from celltrack.cf.filters import CFDetection, FilterBank
from celltrack.cf.windows import as_centres, window_origins

logger = logging.getLogger(__name__)

__all__ = [
    "FeatureExtractor",
    "FullFrameExtractor",
    "as_frame_array",
    "as_frame_tensor",
    "background_fill",
    "check_crop_request",
    "crop_windows",
    "detect_recentred",
    "sample_pixels",
    "standardise_windows",
    "standardise_windows_",
]

_MAX_QUANTILE_ELEMENTS = 1 << 22


def as_frame_tensor(
    frame: np.ndarray | torch.Tensor, device: torch.device | str | None = None
) -> torch.Tensor:
    """Validate a 2-D frame and convert it to a float32 tensor.

    Parameters
    ----------
    frame : np.ndarray or torch.Tensor
        (Y, X) image of any real dtype (e.g. uint16 camera frames).
    device : torch.device or str, optional
        Target device; the tensor's own (CPU for arrays) if omitted.

    Returns
    -------
    torch.Tensor
        (Y, X) float32.
    """
    if isinstance(frame, torch.Tensor):
        tensor = frame.detach()
        if tensor.is_complex():
            raise TypeError(f"frame must be real, got {tensor.dtype}")
        tensor = tensor.to(dtype=torch.float32, device=device if device is not None else tensor.device)
    elif isinstance(frame, np.ndarray):
        # via float32 numpy: torch has no general uint16/uint32 arithmetic
        tensor = torch.as_tensor(np.asarray(as_frame_array(frame), dtype=np.float32), device=device)
    else:
        raise TypeError(
            f"frame must be a numpy array or torch tensor of shape (Y, X), got {type(frame).__name__}"
        )
    if tensor.ndim != 2:
        raise ValueError(f"frame must be 2-D (Y, X), got shape {tuple(tensor.shape)}; pass one time point")
    return tensor


def as_frame_array(frame: np.ndarray) -> np.ndarray:
    """Validate a 2-D real numpy frame, keeping its dtype (no copy).

    Parameters
    ----------
    frame : np.ndarray
        (Y, X) image of any real dtype.

    Returns
    -------
    np.ndarray
        The same array.
    """
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"frame must be a numpy array of shape (Y, X), got {type(frame).__name__}")
    if not (
        np.issubdtype(frame.dtype, np.integer)
        or np.issubdtype(frame.dtype, np.floating)
        or frame.dtype == np.bool_
    ):
        raise TypeError(f"frame must hold real numbers, got dtype {frame.dtype}")
    if frame.ndim != 2:
        raise ValueError(f"frame must be 2-D (Y, X), got shape {frame.shape}; pass one time point")
    return frame


def sample_pixels(values: torch.Tensor, max_elements: int | None = None) -> torch.Tensor:
    """Flatten the trailing two axes of (..., Y, X), striding so torch.quantile stays under its size limit."""
    limit = _MAX_QUANTILE_ELEMENTS if max_elements is None else min(max_elements, _MAX_QUANTILE_ELEMENTS)
    step = 1
    while values.shape[-2] // step * (values.shape[-1] // step) > limit:
        step += 1
    return values[..., ::step, ::step].flatten(-2)


def background_fill(image: torch.Tensor) -> torch.Tensor:
    """Per-channel background level: the median of each channel (nuclei cover well under half a frame).

    Parameters
    ----------
    image : torch.Tensor
        (C, Y, X).

    Returns
    -------
    torch.Tensor
        (C,) float32.
    """
    return torch.quantile(sample_pixels(image.to(torch.float32), 1 << 18), 0.5, dim=-1)


def crop_windows(
    image: torch.Tensor,
    centres: np.ndarray | torch.Tensor,
    size: int,
    *,
    pad_mode: Literal["constant", "edge"] = "constant",
    fill: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop square windows around all centres in one vectorised gather.

    Parameters
    ----------
    image : torch.Tensor
        (C, Y, X) full-frame maps (a (Y, X) tensor is treated as one channel).
    centres : array-like, shape (N, 2)
        Float ``(y, x)`` centres in pixels; rounded to integer origins ``floor(c + 0.5) - size // 2``.
    size : int
        Window side in pixels.
    pad_mode : {"constant", "edge"}
        Outside the image: ``fill`` value, or the nearest border pixel.
    fill : float or torch.Tensor of shape (C,), optional
        Constant for ``pad_mode="constant"``; per-channel median (the background) if omitted.

    Returns
    -------
    torch.Tensor
        (N, C, size, size) on the image's device and dtype; window pixel ``(size // 2, size // 2)`` is the
        rounded centre. Windows partly or wholly outside the image keep their full size.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor (C, Y, X), got {type(image).__name__}")
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"image must have shape (C, Y, X), got {tuple(image.shape)}")
    if pad_mode not in ("constant", "edge"):
        raise ValueError(f"pad_mode must be 'constant' or 'edge', got {pad_mode!r}")
    channels, height, width = image.shape
    origins, _ = window_origins(as_centres(centres), size)
    origins = origins.to(image.device)
    steps = torch.arange(size, device=image.device)
    rows = origins[:, 0:1] + steps  # (N, size)
    cols = origins[:, 1:2] + steps
    windows = image[:, rows.clamp(0, height - 1)[:, :, None], cols.clamp(0, width - 1)[:, None, :]]
    windows = windows.permute(1, 0, 2, 3)  # (C, N, S, S) -> (N, C, S, S)
    if pad_mode == "constant":
        inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
        if not bool(inside.all()):
            if fill is None:
                fill_values = background_fill(image)
            else:
                fill_values = torch.as_tensor(fill, dtype=image.dtype, device=image.device).reshape(-1)
                if fill_values.numel() == 1:
                    fill_values = fill_values.expand(channels)
                if fill_values.shape != (channels,):
                    raise ValueError(
                        f"fill must be a scalar or shape ({channels},), got {tuple(fill_values.shape)}"
                    )
            windows = torch.where(inside[:, None], windows, fill_values.to(image.dtype)[None, :, None, None])
    return windows.contiguous()


def standardise_windows(windows: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Zero mean and unit standard deviation per window and channel.

    Removing the mean keeps a constant (DC) component from correlating with the Hann window, which would pull
    every peak toward the window centre; equal std keeps any channel or layer from dominating.

    Parameters
    ----------
    windows : torch.Tensor
        (N, C, H, W).
    eps : float
        Channels whose std is below ``eps * (1 + |mean|)`` (flat windows) become all zeros.

    Returns
    -------
    torch.Tensor
        (N, C, H, W) float32.
    """
    return standardise_windows_(windows.to(torch.float32, copy=True), eps)


def standardise_windows_(windows: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """:func:`standardise_windows` in place on a float32 (N, C, H, W) tensor the caller owns; returns it.

    Half the passes over memory of the out-of-place version: the windows of a frame are standardised once
    each, and for the small batches of the linker the temporaries cost more than the arithmetic.
    """
    if windows.dtype != torch.float32:
        raise TypeError(f"windows must be float32 to be standardised in place, got {windows.dtype}")
    mean = windows.mean(dim=(-2, -1), keepdim=True)
    windows.sub_(mean)
    pixels = windows.shape[-2] * windows.shape[-1]
    std = torch.linalg.vector_norm(windows, dim=(-2, -1), keepdim=True).div_(math.sqrt(max(pixels, 1)))
    # Dividing a flat channel by infinity zeroes it.
    std.masked_fill_(std <= eps * (1.0 + mean.abs()), math.inf)
    return windows.div_(std)


def to_grid(positions: np.ndarray, scale: float) -> np.ndarray:
    """Frame positions (px) on a grid of ``scale`` pixels per frame pixel: pixel centres map to centres."""
    positions = np.asarray(positions, dtype=np.float64)
    return positions if scale == 1.0 else (positions + 0.5) * scale - 0.5


def from_grid(positions: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of :func:`to_grid`."""
    positions = np.asarray(positions, dtype=np.float64)
    return positions if scale == 1.0 else (positions + 0.5) / scale - 0.5


def check_crop_request(croppers: Sequence[object], centres: Sequence[object]) -> None:
    """Raise ValueError unless there is one set of centres per cropper, and at least one cropper."""
    if len(croppers) != len(centres) or not croppers:
        raise ValueError(
            f"need one set of centres per cropper (at least one), got {len(croppers)} croppers and "
            f"{len(centres)} sets"
        )


class FeatureExtractor(ABC):
    """Turns a frame and window centres into per-layer feature windows for the correlation filters.

    Subclasses set ``name`` and ``layer_weights`` (shallow -> deep, one per layer) and implement
    :meth:`extract_windows`.
    """

    name: str = "base"
    layer_weights: tuple[float, ...] = (1.0,)
    device: torch.device = torch.device("cpu")

    @property
    def grid_scale(self) -> float:
        """Feature-grid pixels per frame pixel; 1: windows at the frame's resolution.

        An extractor whose features live on a rescaled frame (RecogNet at its training nucleus size) takes
        centres and window sizes on that grid; :func:`to_grid` and :func:`from_grid` map positions.
        """
        return 1.0

    @property
    def n_layers(self) -> int:
        """Number of feature layers (``len(layer_weights)``)."""
        return len(self.layer_weights)

    @property
    @abstractmethod
    def layer_channels(self) -> tuple[int, ...]:
        """Channels ``C_l`` of each layer."""

    @abstractmethod
    def extract_windows(
        self, frame: np.ndarray | torch.Tensor, centres: np.ndarray | torch.Tensor, size: int
    ) -> list[torch.Tensor]:
        """Feature windows around the centres.

        Parameters
        ----------
        frame : np.ndarray or torch.Tensor
            (Y, X) raw frame.
        centres : array-like, shape (N, 2)
            Float ``(y, x)`` centres in pixels.
        size : int
            Window side in pixels.

        Returns
        -------
        list of torch.Tensor
            One (N, C_l, size, size) float32 tensor per layer on ``self.device``, aligned with the window
            whose origin is ``floor(centre + 0.5) - size // 2``, each channel standardised per window.
        """

    def window_cropper(
        self, frame: np.ndarray | torch.Tensor, size: int
    ) -> Callable[[np.ndarray | torch.Tensor], list[torch.Tensor]]:
        """A function cropping feature windows of side ``size`` from this frame, for repeated use.

        The tracker crops several sets of windows per frame (search, recentring, update); this keeps whatever
        per-frame work an extractor has (e.g. full-frame maps) to once per frame.

        Returns
        -------
        callable
            ``crop(centres (M, 2)) -> list of (M, C_l, size, size)``, as :meth:`extract_windows`.
        """
        return lambda centres: self.extract_windows(frame, centres, size)

    def crop_many(
        self,
        croppers: Sequence[Callable[[np.ndarray | torch.Tensor], list[torch.Tensor]]],
        centres: Sequence[np.ndarray | torch.Tensor],
    ) -> list[torch.Tensor]:
        """Windows from several croppers (e.g. of different frames), stacked in order.

        Extractors whose per-call cost dominates for a few windows (e.g. ``raw``) do the work in one pass.

        Parameters
        ----------
        croppers : sequence of callable
            From :meth:`window_cropper`, all with the same window size.
        centres : sequence of array-like, shape (M_i, 2)
            Centres for each cropper.

        Returns
        -------
        list of torch.Tensor
            Per layer (sum M_i, C_l, size, size): the windows of ``croppers[0]``, then ``croppers[1]``...
        """
        check_crop_request(croppers, centres)
        parts = [crop(c) for crop, c in zip(croppers, centres, strict=True)]
        return [torch.cat([part[layer] for part in parts]) for layer in range(len(parts[0]))]

    def cropper_holds_maps(self, frame: np.ndarray | torch.Tensor) -> bool:
        """Whether :meth:`window_cropper` keeps full-frame feature maps for this frame.

        Such a cropper is costly to keep for later use (maps of many channels per pixel); one that keeps
        only the frame computes its windows when asked and can be kept for a few frames.
        """
        return False


class FullFrameExtractor(FeatureExtractor):
    """Extractor whose features are full-frame maps, computed once per frame and cropped for every window.

    The tracker can call :meth:`compute_maps` once per frame and :meth:`windows_from_maps` for every set of
    centres (detection, update, candidates) without recomputing the maps.
    """

    @abstractmethod
    def compute_maps(self, frame: np.ndarray | torch.Tensor) -> list[torch.Tensor]:
        """Full-frame feature maps, one (C_l, Y, X) tensor per layer at the frame's resolution."""

    def pad_fill(self, layer_maps: torch.Tensor) -> torch.Tensor | float | None:
        """Background value used outside the image for one layer's maps; per-channel median by default."""
        return None

    def windows_from_maps(
        self, maps: Sequence[torch.Tensor], centres: np.ndarray | torch.Tensor, size: int
    ) -> list[torch.Tensor]:
        """Crop and standardise windows from maps returned by :meth:`compute_maps`.

        Returns
        -------
        list of torch.Tensor
            One (N, C_l, size, size) float32 tensor per layer.
        """
        if len(maps) != self.n_layers:
            raise ValueError(f"{self.name} expects {self.n_layers} layer maps, got {len(maps)}")
        return [
            standardise_windows(crop_windows(layer, centres, size, fill=self.pad_fill(layer)))
            for layer in maps
        ]

    def extract_windows(
        self, frame: np.ndarray | torch.Tensor, centres: np.ndarray | torch.Tensor, size: int
    ) -> list[torch.Tensor]:
        """Feature windows around the centres (see :meth:`FeatureExtractor.extract_windows`)."""
        return self.windows_from_maps(self.compute_maps(frame), centres, size)

    def window_cropper(
        self, frame: np.ndarray | torch.Tensor, size: int
    ) -> Callable[[np.ndarray | torch.Tensor], list[torch.Tensor]]:
        """Crop function over maps computed once for this frame (:meth:`FeatureExtractor.window_cropper`)."""
        maps = self.compute_maps(frame)
        return lambda centres: self.windows_from_maps(maps, centres, size)

    def cropper_holds_maps(self, frame: np.ndarray | torch.Tensor) -> bool:
        """True: the cropper keeps this frame's maps."""
        return True


def detect_recentred(
    bank: FilterBank,
    extractor: FullFrameExtractor,
    maps: Sequence[torch.Tensor],
    centres: np.ndarray,
    size: int,
    iterations: int = 2,
) -> tuple[np.ndarray, CFDetection]:
    """Detect, recentre the windows on the estimates and detect again.

    Thin wrapper over :meth:`celltrack.cf.FilterBank.locate` for full-frame extractors: the Hann taper
    biases a single detection toward the window centre by a few percent of the displacement, and a second
    pass from the recentred windows removes almost all of it.

    Parameters
    ----------
    bank : celltrack.cf.FilterBank
        Filters, row ``i`` for cell ``i``.
    extractor : FullFrameExtractor
        Extractor that produced ``maps``.
    maps : sequence of torch.Tensor
        Full-frame maps of the frame to search, from ``extractor.compute_maps``.
    centres : np.ndarray
        (N, 2) float ``(y, x)`` starting window centres (e.g. previous or predicted positions).
    size : int
        Window side in pixels.
    iterations : int
        Number of detection passes (>= 1).

    Returns
    -------
    positions : np.ndarray
        (N, 2) float64 detected ``(y, x)`` positions.
    detection : celltrack.cf.CFDetection
        The last pass (its displacement is relative to the last window centres).
    """
    return bank.locate(
        lambda positions: extractor.windows_from_maps(maps, positions, size), centres, iterations=iterations
    )
