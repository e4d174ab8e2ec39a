"""Window geometry shared by the correlation filters and the feature extractors.

Conventions (the single source of truth for both floors):

- Centres are ``(y, x)`` in image pixel coordinates, pixel ``(i, j)`` has its centre at ``(i, j)``.
- A window of side ``size`` around a centre ``c`` starts at the integer origin
  ``floor(c + 0.5) - size // 2``; window pixel ``size // 2`` therefore sits on the rounded centre.
- The rounding offset ``c - floor(c + 0.5)`` lies in ``[-0.5, 0.5)``. The filters place their Gaussian
  target at that offset, so every displacement they report is relative to the exact float centre.

``floor(c + 0.5)`` is used instead of ``round`` because round-half-to-even would send 0.5 and 1.5 the same
way, which makes window origins jump non-monotonically as a cell moves.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_centres", "centres_array", "hann_window", "taper_window", "window_origins"]


def as_centres(
    centres: np.ndarray | torch.Tensor | list, device: torch.device | str | None = None
) -> torch.Tensor:
    """Validate and convert window centres to a float64 tensor.

    Parameters
    ----------
    centres : array-like, shape (N, 2)
        Float ``(y, x)`` centres in pixels. ``N`` may be 0.
    device : torch.device or str, optional
        Target device; defaults to the tensor's own device (CPU for arrays).

    Returns
    -------
    torch.Tensor
        Shape (N, 2), float64. float64 keeps sub-pixel offsets exact for coordinates of large frames.
    """
    if isinstance(centres, torch.Tensor):
        tensor = centres.detach().to(
            dtype=torch.float64, device=device if device is not None else centres.device
        )
        _check_centres(tuple(tensor.shape), bool(torch.isfinite(tensor).all()))
        return tensor
    return torch.as_tensor(centres_array(centres), device=device)


def centres_array(centres: np.ndarray | torch.Tensor | list) -> np.ndarray:
    """:func:`as_centres` as a float64 numpy array (N, 2), for CPU code that needs no tensor."""
    if isinstance(centres, torch.Tensor):
        return as_centres(centres, "cpu").numpy()
    # A copy: torch refuses read-only arrays (e.g. views of pandas columns) with a warning.
    array = np.array(centres, dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0, 2)
    _check_centres(array.shape, bool(np.isfinite(array).all()))
    return array


def _check_centres(shape: tuple[int, ...], finite: bool) -> None:
    if len(shape) != 2 or shape[1] != 2:
        raise ValueError(
            f"centres must have shape (N, 2) holding (y, x) pixel positions, got {tuple(shape)}; "
            "reshape a single centre with centres.reshape(1, 2)"
        )
    if not finite:
        raise ValueError("centres contain NaN or inf; drop or predict those cells before cropping windows")


def window_origins(centres: np.ndarray | torch.Tensor | list, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer window origins and sub-pixel rounding offsets for square windows.

    Parameters
    ----------
    centres : array-like, shape (N, 2)
        Float ``(y, x)`` window centres in pixels.
    size : int
        Window side in pixels.

    Returns
    -------
    origins : torch.Tensor
        Shape (N, 2), int64: image coordinates of window pixel ``(0, 0)``.
    offsets : torch.Tensor
        Shape (N, 2), float32 in ``[-0.5, 0.5)``: ``centre - (origin + size // 2)``.
    """
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"window size must be a positive int (pixels), got {size!r}")
    centre_tensor = as_centres(centres)
    rounded = torch.floor(centre_tensor + 0.5)
    origins = rounded.to(torch.int64) - int(size) // 2
    offsets = (centre_tensor - rounded).to(torch.float32)
    return origins, offsets


def _taper_1d(n: int, alpha: float, device: torch.device | str | None, dtype: torch.dtype) -> torch.Tensor:
    if n <= 1:
        return torch.ones(n, dtype=dtype, device=device)
    # Even sides: periodic taper (exact maximum at n // 2); odd sides: symmetric (maximum at (n - 1) / 2).
    if alpha <= 0:
        return torch.ones(n, dtype=dtype, device=device)
    period = n if n % 2 == 0 else n - 1
    distance = (torch.arange(n, dtype=torch.float64, device=device) - n // 2).abs() / period  # 0 .. 0.5
    flat = (1.0 - alpha) / 2.0
    ramp = 0.5 * (1.0 + torch.cos(torch.pi * (distance - flat) / (alpha / 2.0)))
    return torch.where(distance <= flat, torch.ones_like(ramp), ramp).to(dtype)


def taper_window(
    shape: tuple[int, int],
    alpha: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """2-D separable Tukey (tapered cosine) window with its maximum on window pixel ``(H // 2, W // 2)``.

    ``alpha = 1`` is the Hann window; smaller ``alpha`` keeps a flat top over the central ``1 - alpha`` of the
    window and tapers only the outer part; ``alpha = 0`` is no taper.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` window shape in pixels.
    alpha : float
        Tapered fraction of the window, in [0, 1].

    Returns
    -------
    torch.Tensor
        Shape (H, W).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"taper alpha must lie in [0, 1], got {alpha}")
    rows = _taper_1d(int(shape[0]), alpha, device, dtype)
    cols = _taper_1d(int(shape[1]), alpha, device, dtype)
    return rows[:, None] * cols[None, :]


def hann_window(
    shape: tuple[int, int], device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """2-D Hann (cosine) window whose maximum sits on window pixel ``(H // 2, W // 2)``.

    Even sides use the periodic Hann (peak exactly at ``n // 2``); odd sides use the symmetric one (peak at
    ``(n - 1) / 2 == n // 2``). Either way the taper is centred on the pixel the tracker centres on.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` window shape in pixels.

    Returns
    -------
    torch.Tensor
        Shape (H, W).
    """
    return taper_window(shape, 1.0, device, dtype)
