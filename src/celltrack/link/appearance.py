"""Correlation-filter appearance of the active tracks, one batched pass per frame.

:class:`TrackFilters` keeps one filter per active track (rows of a :class:`celltrack.cf.FilterBank`, in
the linker's row order). Per frame the features are computed once, in one window per detection; every
(track, candidate) pair runs the bank on its candidate's window (or, with ``centring="predicted"``, on a
window at the track's predicted position) in one batched pass, and the same windows update the filters.
Filters are trained when a track starts and blended (rate ``eta``) at every linked position.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from celltrack.cf import CFConfig, FilterBank, max_over_steps, row_blocks, window_origins
from celltrack.features import FeatureExtractor, as_frame_array

logger = logging.getLogger(__name__)

__all__ = ["FrameWindows", "TrackFilters", "bin_frame", "measure_intensity"]


def _on(index: np.ndarray, tensor: torch.Tensor) -> torch.Tensor:
    """int64 index tensor on the tensor's device."""
    return torch.as_tensor(np.asarray(index, np.int64), device=tensor.device)


@dataclass
class FrameWindows:
    """Feature windows of one frame, centred on its detections.

    Attributes
    ----------
    crop : callable
        ``crop(centres (M, 2)) -> list of (M, C_l, S, S)`` for further windows of this frame.
    yx : numpy.ndarray, shape (D, 2)
        Detection positions on the filters' pixel grid (frame px divided by the binning factor).
    windows : list of torch.Tensor
        Per layer (D, C_l, S, S): the standardised window of every detection.
    spectra : list of torch.Tensor or None
        Their tapered Fourier transforms (:meth:`celltrack.cf.FilterBank.spectra`), filled on first use.
    """

    crop: Callable[[np.ndarray], list[torch.Tensor]]
    yx: np.ndarray
    windows: list[torch.Tensor]
    spectra: list[torch.Tensor] | None = None


class TrackFilters:
    """Filters of the active tracks, aligned with the linker's rows.

    Parameters
    ----------
    extractor : FeatureExtractor
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
    downsample : int
        The filters work on frames binned by this factor (block mean); ``window``, ``sigma`` and
        ``pool_radius`` are given in frame pixels and scaled with it.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        window: int,
        sigma: float,
        lambda_rel: float,
        learning_rate: float,
        pool_radius: float,
        device: torch.device,
        centring: str = "candidate",
        downsample: int = 1,
    ) -> None:
        if centring not in ("candidate", "predicted"):
            raise ValueError(f"centring must be 'candidate' or 'predicted', got {centring!r}")
        if int(downsample) < 1:
            raise ValueError(f"downsample must be a positive integer, got {downsample}")
        self.extractor = extractor
        self.centring = centring
        self.downsample = int(downsample)
        # Window, target and pooling live on the binned grid.
        self.window = max(4, round(int(window) / self.downsample))
        self.learning_rate = float(learning_rate)
        self.pool = max(0, round(pool_radius / self.downsample))
        self.device = device
        self.cf_config = CFConfig(
            window=self.window,
            sigma=max(0.5, sigma / self.downsample),
            lambda_rel=lambda_rel,
            learning_rate=learning_rate,
            layer_weights=tuple(extractor.layer_weights),
        )
        self.bank: FilterBank | None = None
        grid = np.arange(-self.pool, self.pool + 1)
        steps = [(dy, dx) for dy in grid for dx in grid if dy * dy + dx * dx <= self.pool * self.pool]
        self._pool_steps = torch.tensor(steps, dtype=torch.int64).reshape(-1, 2)

    @property
    def n_rows(self) -> int:
        """Number of filters held."""
        return 0 if self.bank is None else self.bank.n_cells

    def prepare(self, frame: np.ndarray, detections_yx: np.ndarray) -> FrameWindows:
        """Feature windows of one frame, centred on its detections, computed once for every later use.

        Parameters
        ----------
        frame : numpy.ndarray, shape (Y, X)
            Raw frame.
        detections_yx : numpy.ndarray, shape (D, 2)
            Positions of the frame's detections (px).

        Returns
        -------
        FrameWindows
        """
        if self.downsample > 1:
            frame = bin_frame(frame, self.downsample)
        crop = self.extractor.window_cropper(frame, self.window)
        yx = self._to_grid(detections_yx)
        return FrameWindows(crop=crop, yx=yx, windows=crop(yx))

    def _to_grid(self, yx: np.ndarray) -> np.ndarray:
        """Frame positions (px) on the filters' (binned) pixel grid: pixel centres map to pixel centres."""
        yx = np.ascontiguousarray(yx, dtype=np.float64).reshape(-1, 2)
        return yx if self.downsample == 1 else (yx + 0.5) / self.downsample - 0.5

    def _spectra(self, frame: FrameWindows) -> list[torch.Tensor]:
        """Spectra of the frame's detection windows, transformed once and shared by all filters."""
        if frame.spectra is None:
            if self.bank is None:
                raise RuntimeError("spectra need a filter bank (its taper and window shape)")
            frame.spectra = self.bank.spectra(frame.windows)
        return frame.spectra

    def responses(
        self,
        frame: FrameWindows,
        predicted: np.ndarray,
        pair_rows: np.ndarray,
        pair_cols: np.ndarray,
    ) -> np.ndarray:
        """Filter response of row ``pair_rows[p]`` at detection ``pair_cols[p]``, one pass for all pairs.

        Parameters
        ----------
        frame : FrameWindows
            The searched frame (:meth:`prepare`).
        predicted : numpy.ndarray, shape (R, 2)
            Predicted position of every row in frame pixels (window centre with ``centring="predicted"``).
        pair_rows : numpy.ndarray of int, shape (P,)
            Row of each candidate pair.
        pair_cols : numpy.ndarray of int, shape (P,)
            Detection (index into ``frame.yx``) of each candidate pair.

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
        predicted = self._to_grid(predicted)
        values = np.empty(len(pair_rows))
        # Blocks of pairs: memory stays bounded (a response map per pair) and the cost linear in the pairs.
        for block in row_blocks(len(pair_rows)):
            values[block] = self._block_responses(frame, predicted, pair_rows[block], pair_cols[block])
        return values

    def _block_responses(
        self, frame: FrameWindows, predicted: np.ndarray, pair_rows: np.ndarray, pair_cols: np.ndarray
    ) -> np.ndarray:
        if self.bank is None:  # pragma: no cover - responses() checks
            raise RuntimeError("no filters")
        pair_yx = frame.yx[pair_cols]
        if self.centring == "candidate":
            # One window per candidate pair, centred on the candidate: the response at the window centre is
            # the appearance match alone, free of the Hann taper's pull toward the predicted position.
            spectra = [layer[_on(pair_cols, layer)] for layer in self._spectra(frame)]
            response = self.bank.response_maps(None, index=pair_rows, spectra=spectra)
            centres = pair_yx
        else:
            centres = predicted[pair_rows]
            response = self.bank.response_maps(frame.crop(centres), index=pair_rows)
        displacement = pair_yx - centres
        _, offsets = window_origins(centres, self.window)
        half = self.window / 2.0 - 1.0
        inside = np.all(np.abs(displacement) <= half, axis=1)
        shift = torch.as_tensor(displacement.astype(np.float32), device=response.device)
        shift = shift + offsets.to(response.device)
        # Max over a disc of integer steps around the candidate: a centroid a pixel or two off the
        # filter's peak (irregular shapes, marker placement) should not count as a poor match.
        values = max_over_steps(response, shift, self._pool_steps)
        values_np = np.clip(values.cpu().numpy().astype(np.float64), 0.0, 1.0)
        return np.where(inside, values_np, np.nan)

    def advance(
        self,
        frame: FrameWindows | None,
        updated_rows: np.ndarray,
        updated_cols: np.ndarray,
        kept_rows: np.ndarray,
        new_cols: np.ndarray,
    ) -> None:
        """Re-order the bank to ``[updated rows, kept rows, new tracks]`` after a frame.

        Parameters
        ----------
        frame : FrameWindows or None
            The frame just linked (needed when rows are updated or added).
        updated_rows : numpy.ndarray of int, shape (K,)
            Rows linked in this frame; blended with the windows of detections ``updated_cols`` (K,).
        updated_cols : numpy.ndarray of int, shape (K,)
        kept_rows : numpy.ndarray of int
            Rows carried over unchanged (tracks missing this frame).
        new_cols : numpy.ndarray of int, shape (B,)
            Detections starting tracks in this frame; new filters are trained there.
        """
        parts: list[FilterBank] = []
        if (len(updated_cols) or len(new_cols)) and frame is None:
            raise RuntimeError("feature windows are needed to update or train filters")
        if len(updated_rows) and self.bank is not None and frame is not None:
            updated = self.bank.select(np.asarray(updated_rows, np.int64))
            spectra = [layer[_on(updated_cols, layer)] for layer in self._spectra(frame)]
            updated.update(
                None, frame.yx[updated_cols], learning_rate=self.learning_rate, spectra=spectra
            )
            parts.append(updated)
        if len(kept_rows) and self.bank is not None:
            parts.append(self.bank.select(np.asarray(kept_rows, np.int64)))
        if len(new_cols) and frame is not None:
            parts.append(
                FilterBank.train(
                    [layer[_on(new_cols, layer)] for layer in frame.windows],
                    self.cf_config,
                    centres=frame.yx[new_cols],
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


def bin_frame(frame: np.ndarray, factor: int) -> np.ndarray:
    """Block mean of a (Y, X) frame over ``factor`` x ``factor`` pixels (the trailing partial blocks dropped).

    Returns
    -------
    numpy.ndarray, shape (Y // factor, X // factor), float32
    """
    image = as_frame_array(np.asarray(frame))
    height, width = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    if height == 0 or width == 0:
        raise ValueError(f"frame {image.shape} is smaller than the binning factor {factor}")
    blocks = image[:height, :width].astype(np.float32)
    return blocks.reshape(height // factor, factor, width // factor, factor).mean(axis=(1, 3))


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
    image = as_frame_array(np.asarray(frame))
    height, width = image.shape
    # A regular sample of ~65,000 pixels fixes the median to well under the noise, without sorting the frame.
    step = max(1, int(np.ceil(np.sqrt(image.size / 65_536))))
    background = float(np.median(image[::step, ::step]))
    radius = np.maximum(np.asarray(radius, np.float64), 1.0)
    size = 2 * int(np.ceil(radius.max())) + 1
    origins = np.floor(yx + 0.5).astype(np.int64) - size // 2
    rows = origins[:, 0:1] + np.arange(size)
    cols = origins[:, 1:2] + np.arange(size)
    windows = image[np.clip(rows, 0, height - 1)[:, :, None], np.clip(cols, 0, width - 1)[:, None, :]]
    outside = ~(((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :])
    windows = np.where(outside, background, windows.astype(np.float64))
    steps = np.arange(size) - size // 2
    # Window pixel (size // 2) sits on the rounded centre; measure distances from the exact centre.
    offset = yx - np.floor(yx + 0.5)
    dy = steps[None, :, None] - offset[:, 0, None, None]
    dx = steps[None, None, :] - offset[:, 1, None, None]
    inside = dy**2 + dx**2 <= radius[:, None, None] ** 2
    counts = np.maximum(inside.sum(axis=(1, 2)), 1)
    return (windows * inside).sum(axis=(1, 2)) / counts - background
