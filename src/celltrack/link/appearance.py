"""Correlation-filter appearance of the active tracks, one batched pass per frame.

:class:`TrackFilters` keeps one filter per active track (rows of a :class:`celltrack.cf.FilterBank`, in
the linker's row order). Per frame it crops one window per track at the track's predicted position,
runs the bank once, and reads each response map at the offsets of that track's candidate detections.
Filters are trained when a track starts and blended (rate ``eta``) at every linked position.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from celltrack.cf import CFConfig, FilterBank, sample_circular
from celltrack.features import FullFrameExtractor, as_frame_tensor, crop_windows

logger = logging.getLogger(__name__)

__all__ = ["TrackFilters", "measure_intensity"]


class TrackFilters:
    """Filters of the active tracks, aligned with the linker's rows.

    Parameters
    ----------
    extractor : FullFrameExtractor
        Feature extractor (e.g. :class:`celltrack.features.RawExtractor`).
    window : int
        Window side (px).
    sigma : float
        Gaussian target std (px).
    lambda_rel : float
        Relative regularisation.
    learning_rate : float
        Update rate ``eta``.
    pool_radius : float
        The response at a candidate is the maximum over integer steps within this radius (px).
    device : torch.device
        Where the filters live.
    centring : {"candidate", "predicted"}
        Where the search windows sit (see the module docstring).
    """

    def __init__(
        self,
        extractor: FullFrameExtractor,
        window: int,
        sigma: float,
        lambda_rel: float,
        learning_rate: float,
        pool_radius: float,
        device: torch.device,
        centring: str = "candidate",
    ) -> None:
        if centring not in ("candidate", "predicted"):
            raise ValueError(f"centring must be 'candidate' or 'predicted', got {centring!r}")
        self.extractor = extractor
        self.centring = centring
        self.window = int(window)
        self.learning_rate = float(learning_rate)
        self.pool = max(0, round(pool_radius))
        self.device = device
        self.cf_config = CFConfig(
            window=max(4, self.window),
            sigma=sigma,
            lambda_rel=lambda_rel,
            learning_rate=learning_rate,
            layer_weights=tuple(extractor.layer_weights),
        )
        self.bank: FilterBank | None = None
        grid = np.arange(-self.pool, self.pool + 1)
        steps = [(dy, dx) for dy in grid for dx in grid if 0 < dy * dy + dx * dx <= self.pool * self.pool]
        self._pool_steps = [torch.tensor([[dy, dx]], dtype=torch.float32) for dy, dx in steps]

    @property
    def n_rows(self) -> int:
        """Number of filters held."""
        return 0 if self.bank is None else self.bank.n_cells

    def maps(self, frame: np.ndarray) -> list[torch.Tensor]:
        """Full-frame feature maps of one frame."""
        return self.extractor.compute_maps(frame)

    def responses(
        self,
        maps: Sequence[torch.Tensor],
        predicted: np.ndarray,
        pair_rows: np.ndarray,
        pair_yx: np.ndarray,
    ) -> np.ndarray:
        """Filter response of row ``pair_rows[p]`` at ``pair_yx[p]``, one detection pass for all pairs.

        Parameters
        ----------
        maps : sequence of torch.Tensor
            Feature maps of the frame searched.
        predicted : numpy.ndarray, shape (R, 2)
            Window centre of every row (its predicted position).
        pair_rows : numpy.ndarray of int, shape (P,)
            Row of each candidate pair.
        pair_yx : numpy.ndarray, shape (P, 2)
            Candidate positions (px).

        Returns
        -------
        numpy.ndarray, shape (P,)
            Response in [0, 1] (1: perfect match); NaN (no evidence) for candidates outside the row's
            window or when there are no filters.
        """
        if self.bank is None or len(pair_rows) == 0:
            return np.full(len(pair_rows), np.nan)
        if len(predicted) != self.bank.n_cells:
            raise RuntimeError(f"{len(predicted)} window centres for {self.bank.n_cells} filters")
        if self.centring == "candidate":
            # One window per candidate pair, centred on the candidate: the response at the window centre is
            # the appearance match alone, free of the Hann taper's pull toward the predicted position.
            centres = np.ascontiguousarray(pair_yx, dtype=np.float64)
            windows = self.extractor.windows_from_maps(maps, centres, self.window)
            detection = self.bank.detect(windows, centres, index=pair_rows, keep_response=True)
            displacement = np.zeros((len(pair_rows), 2))
            rows = np.arange(len(pair_rows))
        else:
            windows = self.extractor.windows_from_maps(maps, predicted, self.window)
            detection = self.bank.detect(windows, predicted, keep_response=True)
            displacement = pair_yx - predicted[pair_rows]
            rows = pair_rows
        response = detection.response
        if response is None:  # pragma: no cover - keep_response=True always keeps it
            raise RuntimeError("filter bank returned no response maps")
        half = self.window / 2.0 - 1.0
        inside = np.all(np.abs(displacement) <= half, axis=1)
        maps_of_pairs = response[torch.as_tensor(rows, device=response.device)]
        shift = torch.as_tensor(
            (displacement + detection.offsets[rows]).astype(np.float32), device=response.device
        )
        # Max over a disc of integer steps around the candidate: a centroid a pixel or two off the
        # filter's peak (irregular shapes, marker placement) should not count as a poor match.
        values = sample_circular(maps_of_pairs, shift)
        for step in self._pool_steps:
            values = torch.maximum(values, sample_circular(maps_of_pairs, shift + step.to(shift.device)))
        values_np = np.clip(values.cpu().numpy().astype(np.float64), 0.0, 1.0)
        return np.where(inside, values_np, np.nan)

    def advance(
        self,
        maps: Sequence[torch.Tensor] | None,
        updated_rows: np.ndarray,
        updated_yx: np.ndarray,
        kept_rows: np.ndarray,
        new_yx: np.ndarray,
    ) -> None:
        """Re-order the bank to ``[updated rows, kept rows, new tracks]`` after a frame.

        Parameters
        ----------
        maps : sequence of torch.Tensor or None
            Feature maps of the frame just linked (needed when rows are updated or added).
        updated_rows : numpy.ndarray of int
            Rows linked in this frame; blended with the features at ``updated_yx`` (K, 2).
        updated_yx : numpy.ndarray, shape (K, 2)
        kept_rows : numpy.ndarray of int
            Rows carried over unchanged (tracks missing this frame).
        new_yx : numpy.ndarray, shape (B, 2)
            Positions of tracks starting in this frame; new filters are trained there.
        """
        parts: list[FilterBank] = []
        positions = np.concatenate([updated_yx.reshape(-1, 2), new_yx.reshape(-1, 2)])
        windows = None
        if len(positions):
            if maps is None:
                raise RuntimeError("feature maps are needed to update or train filters")
            windows = self.extractor.windows_from_maps(maps, positions, self.window)
        n_updated = len(updated_rows)
        if windows is not None and n_updated and self.bank is not None:
            updated = self.bank.select(np.asarray(updated_rows, np.int64))
            updated.update([w[:n_updated] for w in windows], updated_yx, learning_rate=self.learning_rate)
            parts.append(updated)
        if len(kept_rows) and self.bank is not None:
            parts.append(self.bank.select(np.asarray(kept_rows, np.int64)))
        if windows is not None and len(new_yx):
            parts.append(
                FilterBank.train(
                    [w[n_updated:] for w in windows],
                    self.cf_config,
                    centres=new_yx,
                    layer_weights=self.cf_config.layer_weights,
                    device=self.device,
                )
            )
        if not parts:
            self.bank = None
            return
        bank = parts[0]
        for part in parts[1:]:
            bank = bank.concat(part)
        self.bank = bank


def measure_intensity(frame: np.ndarray, yx: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Mean intensity above the frame's median in a disc around each detection.

    Parameters
    ----------
    frame : numpy.ndarray, shape (Y, X)
        Raw frame.
    yx : numpy.ndarray, shape (K, 2)
        Disc centres (px).
    radius : numpy.ndarray, shape (K,)
        Disc radii (px), at least 1 is used.

    Returns
    -------
    numpy.ndarray, shape (K,)
        Mean intensity minus the frame median (background), float64.
    """
    if len(yx) == 0:
        return np.zeros(0, np.float64)
    image = as_frame_tensor(frame)
    step = max(1, int(np.sqrt(image.numel() / 250_000)))
    background = float(np.median(image[::step, ::step].cpu().numpy()))
    radius = np.maximum(np.asarray(radius, np.float64), 1.0)
    size = 2 * int(np.ceil(radius.max())) + 1
    windows = crop_windows(image[None], yx, size, fill=background)[:, 0].numpy().astype(np.float64)
    steps = np.arange(size) - size // 2
    # Window pixel (size // 2) sits on the rounded centre; measure distances from the exact centre.
    offset = yx - np.floor(yx + 0.5)
    dy = steps[None, :, None] - offset[:, 0, None, None]
    dx = steps[None, None, :] - offset[:, 1, None, None]
    inside = dy**2 + dx**2 <= radius[:, None, None] ** 2
    counts = np.maximum(inside.sum(axis=(1, 2)), 1)
    return (windows * inside).sum(axis=(1, 2)) / counts - background
