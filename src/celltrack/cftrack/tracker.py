"""The study's tracker: every cell followed on its own by hierarchical correlation filters.

All cells of a frame go through one batched correlation pass (crop, FFT, detect, update).
A cell whose confidence (peak-to-sidelobe ratio) collapses, or that lands on another tracked
cell, is reported lost at that frame instead of wandering off. Divisions are not handled here;
:mod:`celltrack.link` puts the same filters inside global assignment linking.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.spatial import cKDTree

from celltrack.cf import CFConfig, FilterBank
from celltrack.features import FeatureExtractor, from_grid, to_grid
from celltrack.graph import TrackGraph

logger = logging.getLogger(__name__)


class CFTrackerConfig(BaseModel):
    """Parameters of :class:`CFTracker` (lengths in pixels)."""

    model_config = ConfigDict(extra="forbid")

    cf: CFConfig = Field(default_factory=CFConfig, description="Correlation-filter parameters.")
    window: int | None = Field(
        None, ge=8, description="Search-window side (px); None: cf.window_for(median nucleus diameter)."
    )
    momentum: bool = Field(False, description="Place the window at a constant-velocity prediction first.")
    passes: int = Field(2, ge=1, le=5, description="Detection passes per frame (recentre and detect again).")
    lost_psr: float = Field(3.0, ge=0, description="A cell is lost when its PSR stays below this ...")
    lost_peak: float = Field(
        0.1, ge=0, description="... or its peak (about 1 for a perfect match) stays below this ..."
    )
    lost_frames: int = Field(2, ge=1, description="... for this many consecutive frames.")
    merge_distance: float = Field(
        2.0, ge=0, description="Two cells closer than this (px) are one; the less confident is lost."
    )


@dataclass
class FrameState:
    """What the tracker knows after a frame; handed to the ``on_frame`` callback (live view, video).

    Attributes
    ----------
    t : int
        Frame index.
    frame : numpy.ndarray, shape (Y, X)
        The raw frame.
    positions : numpy.ndarray, shape (N, 2)
        ``(y, x)`` of every target (NaN once lost).
    active : numpy.ndarray of bool, shape (N,)
    peak, psr : numpy.ndarray, shape (N,)
        Confidence of this frame's detection (NaN for lost cells and frame 0).
    window : int
        Search-window side (px).
    response : numpy.ndarray, shape (window, window) or None
        Combined response map of the selected cell (centred, fftshifted), when requested.
    selected : int
        Index of the highlighted cell.
    """

    t: int
    frame: np.ndarray
    positions: np.ndarray
    active: np.ndarray
    peak: np.ndarray
    psr: np.ndarray
    window: int
    response: np.ndarray | None
    selected: int


@dataclass
class CFTrackResult:
    """Trajectories of a :class:`CFTracker` run.

    Attributes
    ----------
    labels : numpy.ndarray, shape (N,)
        Label of each target in the initial segmentation.
    positions : numpy.ndarray, shape (T, N, 2)
        ``(y, x)`` per frame and target; NaN after a target is lost.
    peak, psr : numpy.ndarray, shape (T, N)
        Confidence per frame and target (NaN at frame 0 and after loss).
    lost_at : numpy.ndarray, shape (N,)
        First frame a target was lost at, -1 if never.
    filters : dict of str to numpy.ndarray
        Final filter state (:meth:`FilterBank.to_numpy`); ``filters["targets"]`` gives the
        target index of each row (targets still tracked at the end).
    window : int
    areas : numpy.ndarray, shape (N,)
        Initial area (px) of each target, 0 when unknown; sizes the disc drawn for a position
        without a detection.
    """

    labels: np.ndarray
    positions: np.ndarray
    peak: np.ndarray
    psr: np.ndarray
    lost_at: np.ndarray
    filters: dict[str, np.ndarray]
    window: int
    areas: np.ndarray

    def trajectories(self) -> pd.DataFrame:
        """Tidy table, one row per target and frame while tracked: ``cell, label, frame, y, x, peak, psr``."""
        t, n = self.positions.shape[:2]
        frame, cell = np.meshgrid(np.arange(t), np.arange(n), indexing="ij")
        table = pd.DataFrame(
            {
                "cell": cell.ravel(),
                "label": self.labels[cell.ravel()],
                "frame": frame.ravel(),
                "y": self.positions[..., 0].ravel(),
                "x": self.positions[..., 1].ravel(),
                "peak": self.peak.ravel(),
                "psr": self.psr.ravel(),
            }
        )
        return table[np.isfinite(table["y"])].sort_values(["cell", "frame"]).reset_index(drop=True)

    def graph(self, detections: Sequence[np.ndarray] | None = None) -> TrackGraph:
        """The trajectories as a :class:`TrackGraph`, one track per target.

        Parameters
        ----------
        detections : sequence of numpy.ndarray, optional
            Per-frame label images. Each tracked position takes the detection under it
            (``label`` > 0, its area); a detection claimed by two targets goes to the more
            confident one. Without detections (or off any detection) ``label`` is 0, which
            the CTC writer renders as a disc marker.
        """
        table = self.trajectories()
        table["area"] = self.areas[table["cell"].to_numpy()].astype(np.int64)
        table["label_in_frame"] = 0
        if detections is not None:
            for t, group in table.groupby("frame"):
                labels = np.asarray(detections[int(t)])
                iy = np.clip(np.rint(group["y"].to_numpy()).astype(int), 0, labels.shape[0] - 1)
                ix = np.clip(np.rint(group["x"].to_numpy()).astype(int), 0, labels.shape[1] - 1)
                under = labels[iy, ix].astype(np.int64)
                confidence = np.nan_to_num(group["peak"].to_numpy(), nan=np.inf)
                order = np.argsort(-confidence, kind="stable")
                claimed = pd.Series(under[order]).duplicated().to_numpy()
                under[order[claimed]] = 0
                areas = np.bincount(labels.ravel().astype(np.int64))
                table.loc[group.index, "label_in_frame"] = under
                table.loc[group.index, "area"] = np.where(
                    under > 0, areas[under], table.loc[group.index, "area"]
                )
        nodes = table.rename(columns={"label": "initial_label", "label_in_frame": "label"})
        nodes.index.name = "node_id"
        same = nodes["cell"].to_numpy()[1:] == nodes["cell"].to_numpy()[:-1]
        ids = nodes.index.to_numpy()
        edges = pd.DataFrame({"source": ids[:-1][same], "target": ids[1:][same]})
        return TrackGraph(nodes, edges)


class CFTracker:
    """Follow every target of the first frame with its own correlation filters.

    Parameters
    ----------
    extractor : FeatureExtractor
        Feature layers for the filters (``raw``, SegNet, RecogNet).
    config : CFTrackerConfig, optional
    device : str or torch.device
        Where the filters live (the extractor's device by default).
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        config: CFTrackerConfig | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.extractor = extractor
        self.config = config or CFTrackerConfig()
        self.device = torch.device(device) if device is not None else extractor.device

    def window_size(self, areas: np.ndarray | None) -> int:
        """Search-window side: the configured one, or padded around the median nucleus diameter."""
        if self.config.window is not None:
            return self.config.window
        if areas is None or len(areas) == 0:
            return self.config.cf.window
        diameter = float(2 * np.sqrt(np.median(areas) / np.pi))
        return self.config.cf.window_for(diameter)

    def _croppers(
        self, frame: np.ndarray
    ) -> tuple[Callable[[np.ndarray], list[torch.Tensor]], Callable[[np.ndarray], list[torch.Tensor]]]:
        """Crop functions of grid and of frame positions (windows, filters: on the extractor's grid)."""
        cropper = self.extractor.window_cropper(frame, self._grid_size)
        if self._scale == 1.0:
            return cropper, cropper
        return cropper, lambda positions: cropper(to_grid(positions, self._scale))

    def _grid(self, positions: np.ndarray) -> np.ndarray:
        return to_grid(positions, self._scale)

    def track(
        self,
        frames: Sequence[np.ndarray],
        initial: pd.DataFrame,
        start: int = 0,
        on_frame: Callable[[FrameState], None] | None = None,
        selected: int = 0,
    ) -> CFTrackResult:
        """Track the targets from frame ``start`` to the end of ``frames``.

        Parameters
        ----------
        frames : sequence of numpy.ndarray
            Lazily indexable raw frames, each (Y, X).
        initial : pandas.DataFrame
            Targets in frame ``start``: columns ``label, y, x`` (and ``area`` to size the window).
        start : int
            Frame the targets are taken from.
        on_frame : callable, optional
            Called with a :class:`FrameState` after every frame (live view, video).
        selected : int
            Target whose response map goes into the :class:`FrameState`.

        Returns
        -------
        CFTrackResult
            Arrays over all ``len(frames)`` frames; frames before ``start`` are NaN.
        """
        missing = {"label", "y", "x"} - set(initial.columns)
        if missing:
            raise ValueError(f"initial targets need columns label, y, x; missing {sorted(missing)}")
        n_frames, n = len(frames), len(initial)
        if not 0 <= start < n_frames:
            raise ValueError(f"start frame {start} outside the movie's {n_frames} frames")
        cfg = self.config
        self._size = self.window_size(initial["area"].to_numpy() if "area" in initial else None)
        # Features on a rescaled grid (RecogNet at its nucleus size): windows, filters, the Gaussian target
        # and the PSR exclusion are in grid pixels, positions in frame pixels.
        self._scale = float(self.extractor.grid_scale)
        self._grid_size = max(8, round(self._size * self._scale))
        positions = np.full((n_frames, n, 2), np.nan)
        peak = np.full((n_frames, n), np.nan, np.float32)
        psr = np.full((n_frames, n), np.nan, np.float32)
        lost_at = np.full(n, -1, np.int64)
        current = initial[["y", "x"]].to_numpy(np.float64)
        if not np.isfinite(current).all():
            raise ValueError("initial target positions contain NaN")
        positions[start] = current
        selected = int(np.clip(selected, 0, max(n - 1, 0)))
        frame = np.asarray(frames[start])
        _, crop = self._croppers(frame)
        bank = (
            FilterBank.train(
                crop(current),
                cfg.cf,
                centres=self._grid(current),
                layer_weights=self.extractor.layer_weights,
                device=self.device,
            )
            if n
            else None
        )
        active = np.arange(n)  # target index of every bank row
        velocity = np.zeros((n, 2))
        weak = np.zeros(n, np.int64)
        if on_frame is not None:
            on_frame(
                FrameState(
                    start,
                    frame,
                    positions[start].copy(),
                    np.ones(n, bool),
                    peak[start],
                    psr[start],
                    self._size,
                    None,
                    selected,
                )
            )
        for t in range(start + 1, n_frames):
            frame = np.asarray(frames[t])
            if bank is None or len(active) == 0:
                if on_frame is not None:
                    on_frame(
                        FrameState(
                            t,
                            frame,
                            positions[t].copy(),
                            np.zeros(n, bool),
                            peak[t],
                            psr[t],
                            self._size,
                            None,
                            selected,
                        )
                    )
                continue
            grid_crop, crop = self._croppers(frame)
            previous = positions[t - 1, active]
            guess = previous + velocity[active] if cfg.momentum else previous
            new, detection = bank.locate(grid_crop, self._grid(guess), iterations=cfg.passes)
            new = from_grid(new, self._scale)
            # Re-detect at the final centres to keep the selected cell's response for display.
            response = None
            if on_frame is not None and selected in active:
                row = int(np.flatnonzero(active == selected)[0])
                shown = bank.detect(
                    crop(new[row : row + 1]),
                    self._grid(new[row : row + 1]),
                    index=np.array([row]),
                    keep_response=True,
                )
                response = np.fft.fftshift(shown.response[0].cpu().numpy())
            keep = self._still_tracked(new, detection.peak, detection.psr, weak, active, frame.shape)
            positions[t, active[keep]] = new[keep]
            peak[t, active] = detection.peak
            psr[t, active] = detection.psr
            velocity[active[keep]] = new[keep] - previous[keep]
            lost_at[active[~keep]] = t
            bank = bank.select(np.flatnonzero(keep))
            active = active[keep]
            if len(active):
                bank.update(crop(positions[t, active]), self._grid(positions[t, active]))
            if on_frame is not None:
                mask = np.zeros(n, bool)
                mask[active] = True
                on_frame(
                    FrameState(
                        t, frame, positions[t].copy(), mask, peak[t], psr[t], self._size, response, selected
                    )
                )
        labels = initial["label"].to_numpy(np.int64)
        filters = bank.to_numpy() if bank is not None else {}
        filters["targets"] = active
        areas = initial["area"].to_numpy(np.int64) if "area" in initial else np.zeros(n, np.int64)
        return CFTrackResult(labels, positions, peak, psr, lost_at, filters, self._size, areas)

    def _still_tracked(
        self,
        new: np.ndarray,
        peak: np.ndarray,
        psr: np.ndarray,
        weak: np.ndarray,
        active: np.ndarray,
        shape: tuple[int, ...],
    ) -> np.ndarray:
        cfg = self.config
        weak_now = (psr < cfg.lost_psr) | (peak < cfg.lost_peak)
        weak[active] = np.where(weak_now, weak[active] + 1, 0)
        keep = weak[active] < cfg.lost_frames
        # A position outside the frame means the cell left the field of view.
        inside = (
            (new[:, 0] >= -0.5)
            & (new[:, 1] >= -0.5)
            & (new[:, 0] <= shape[0] - 0.5)
            & (new[:, 1] <= shape[1] - 0.5)
        )
        keep &= inside & np.isfinite(new).all(axis=1)
        if cfg.merge_distance > 0 and keep.sum() > 1:
            index = np.flatnonzero(keep)
            pairs = cKDTree(new[index]).query_pairs(cfg.merge_distance, output_type="ndarray")
            if len(pairs):
                a, b = index[pairs[:, 0]], index[pairs[:, 1]]
                loser = np.where(peak[a] >= peak[b], b, a)
                keep[loser] = False
        return keep


def cf_track(
    frames: Sequence[np.ndarray],
    initial: pd.DataFrame,
    extractor: FeatureExtractor,
    **config: object,
) -> CFTrackResult:
    """Functional wrapper: ``CFTracker(extractor, CFTrackerConfig(**config)).track(frames, initial)``."""
    return CFTracker(extractor, CFTrackerConfig(**config)).track(frames, initial)
