"""The tracker's linking stage: detections (+ raw frames) in, :class:`~celltrack.graph.TrackGraph` out.

Two passes:

1. :func:`~celltrack.link.forward.forward_pass` links each frame to the next with a sparse assignment
   (KD-tree candidates, one small LAP per connected component, birth and death alternatives). A link
   costs the motion term (Student-t on the distance to a damped constant-velocity prediction) plus size,
   intensity and correlation-filter appearance terms (one batched filter pass per frame over all
   (track, candidate) pairs), the latter three capped so that a nucleus entering mitosis is not dropped.
2. :func:`~celltrack.link.global_pass.global_pass` joins the segments: divisions (a mother and two
   daughters) and gap closing over up to ``gaps.max_gap`` missing frames, each judged by a small learned
   classifier (:mod:`celltrack.link.divisions`, :mod:`celltrack.link.joins`) whose log-odds are costs on
   the scale of births and deaths, all in one LAP over segment starts, and removal of short-lived false
   daughter branches.

Parameters measured from the detections (nucleus diameter, spacing between neighbours, displacement
scale, size and intensity noise, motion persistence) are resolved once per call; :meth:`Linker.resolve`
returns them for the record, and docs/linking-defaults.md says how each is derived.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from celltrack.features import FeatureExtractor, RawExtractor
from celltrack.graph import NODE_COLUMNS, TrackGraph
from celltrack.link.appearance import TrackFilters, measure_intensity
from celltrack.link.config import LinkerConfig
from celltrack.link.costs import Scene
from celltrack.link.forward import forward_pass
from celltrack.link.global_pass import EventModels, global_pass
from celltrack.models.events import EventClassifier

logger = logging.getLogger(__name__)

__all__ = ["Linker", "link_tracks", "measure_intensities"]

Progress = Callable[[Iterable[int]], Iterable[int]]


def _check_detections(detections: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(detections, pd.DataFrame):
        raise TypeError(f"detections must be a pandas DataFrame, got {type(detections).__name__}")
    missing = [c for c in NODE_COLUMNS if c not in detections.columns]
    if missing:
        raise ValueError(
            f"detections lack columns {missing}; need {list(NODE_COLUMNS)} (have {list(detections.columns)})"
        )
    table = detections.reset_index(drop=True)
    if len(table) == 0:
        return table
    for column in ("frame", "y", "x", "area"):
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"detections column {column!r} has missing or non-finite values; drop those rows"
            )
    if not np.all(np.mod(table["frame"].to_numpy(np.float64), 1) == 0) or table["frame"].min() < 0:
        raise ValueError("detections 'frame' must hold non-negative integer frame numbers")
    for column in ("mean_intensity", "mitosis_score"):
        if column in table.columns:
            values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
            if not np.all(np.isfinite(values)):
                raise ValueError(f"detections column {column!r} has missing or non-finite values")
    return table


def _check_frames(frames: Sequence[np.ndarray], last_frame: int) -> None:
    try:
        count = len(frames)
    except TypeError:
        raise TypeError(
            f"frames must be an indexable sequence of 2-D arrays (e.g. an ImageSequence), got "
            f"{type(frames).__name__}"
        ) from None
    if count <= last_frame:
        raise ValueError(
            f"frames has {count} images but detections reach frame {last_frame}; pass the raw movie whose "
            "frame numbers the detections use"
        )


class Linker:
    """Link detections into lineages with motion, appearance, divisions and gap closing.

    Parameters
    ----------
    config : LinkerConfig, optional
        Parameters; ``"auto"`` fields are measured from the detections at each :meth:`link`.
    extractor : FeatureExtractor, optional
        Features of the correlation filters; ``RawExtractor`` on the linking device if omitted.
    division_model : EventClassifier, optional
        Division classifier (:mod:`celltrack.link.divisions`); the shipped one if omitted.
    join_model : EventClassifier, optional
        Gap-closing classifier (:mod:`celltrack.link.joins`); the shipped one if omitted.
    """

    def __init__(
        self,
        config: LinkerConfig | None = None,
        extractor: FeatureExtractor | None = None,
        division_model: EventClassifier | None = None,
        join_model: EventClassifier | None = None,
    ) -> None:
        if config is not None and not isinstance(config, LinkerConfig):
            raise TypeError(f"config must be a LinkerConfig, got {type(config).__name__}")
        for name, model in (("division_model", division_model), ("join_model", join_model)):
            if model is not None and not isinstance(model, EventClassifier):
                raise TypeError(f"{name} must be an EventClassifier, got {type(model).__name__}")
        self.config = config if config is not None else LinkerConfig()
        self.extractor = extractor
        self.models = EventModels(division_model, join_model)

    def resolve(self, detections: pd.DataFrame, frames: Sequence[np.ndarray] | None = None) -> LinkerConfig:
        """The effective configuration for these detections (``"auto"`` fields measured).

        Parameters
        ----------
        detections : pandas.DataFrame
            As for :meth:`link`.
        frames : sequence of numpy.ndarray, optional
            As for :meth:`link`; used to measure intensities when ``mean_intensity`` is absent.

        Returns
        -------
        LinkerConfig
        """
        return self.config.resolve(self._prepare(detections, frames))

    def _prepare(self, detections: pd.DataFrame, frames: Sequence[np.ndarray] | None) -> pd.DataFrame:
        """Validated table (index reset) with ``mean_intensity`` measured from the frames when missing."""
        table = _check_detections(detections)
        if frames is None or len(table) == 0:
            return table
        _check_frames(frames, int(table["frame"].max()))
        if "mean_intensity" not in table.columns:
            table = table.assign(mean_intensity=measure_intensities(table, frames))
        return table

    def link(
        self,
        detections: pd.DataFrame,
        frames: Sequence[np.ndarray] | None = None,
        device: torch.device | str = "cpu",
        progress: Progress | None = None,
        frame_shape: tuple[int, int] | None = None,
    ) -> TrackGraph:
        """Link a detections table.

        Parameters
        ----------
        detections : pandas.DataFrame
            Columns ``frame, label, y, x, area``; optional ``mean_intensity`` (preferably above
            background; measured from the frames when absent) and ``mitosis_score`` (in [0, 1]) sharpen
            the costs and division calls. Extra columns are kept on the nodes.
        frames : sequence of numpy.ndarray, optional
            Raw (Y, X) frames, lazily indexable by the detections' frame numbers. None: no appearance
            term (motion, size and geometry only; intensities only if given as a column).
        device : torch.device or str
            Where the correlation filters run.
        progress : callable, optional
            Wraps the per-frame iterable (e.g. ``tqdm.tqdm``); no progress output by default.
        frame_shape : tuple of int, optional
            ``(Y, X)`` of the images, locating the border of the field of view when no frames are given
            (taken from the frames otherwise).

        Returns
        -------
        TrackGraph
            Node ids are the row positions of ``detections``.
        """
        nodes = _check_detections(detections)
        if len(nodes) == 0:
            return TrackGraph.from_detections(nodes)
        table = self._prepare(nodes, frames)
        config = self.config.resolve(table)
        if frames is not None:
            first = np.asarray(frames[int(table["frame"].min())])
            if first.ndim != 2:
                raise ValueError(f"frames must be 2-D (Y, X) images, got shape {first.shape}")
            frame_shape = (int(first.shape[0]), int(first.shape[1]))
        elif frame_shape is not None:
            if len(frame_shape) != 2 or min(frame_shape) < 1:
                raise ValueError(f"frame_shape must be (Y, X) with positive sizes, got {frame_shape}")
            frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        scene = Scene.build(table, config, frame_shape)
        filters = None
        if frames is not None and config.appearance.weight > 0:
            torch_device = torch.device(device)
            extractor = self.extractor if self.extractor is not None else RawExtractor(device=torch_device)
            filters = TrackFilters(
                extractor,
                window=int(config.appearance.window),
                sigma=float(config.appearance.sigma),
                lambda_rel=config.appearance.lambda_rel,
                learning_rate=config.appearance.learning_rate,
                memory=config.appearance.memory,
                pool_radius=float(config.appearance.pool_radius),
                device=torch_device,
                centring=config.appearance.centring,
                downsample=int(config.appearance.downsample),
            )
        with torch.no_grad():
            forward = forward_pass(scene, frames, filters, progress)
        state = global_pass(scene, forward, filters is not None, self.models)
        sources, targets = state.edges()
        graph = TrackGraph(nodes, pd.DataFrame({"source": sources, "target": targets}))
        logger.info(
            "linked %d detections into %d edges (%d divisions)",
            len(nodes),
            len(sources),
            len(graph.divisions()),
        )
        return graph


def measure_intensities(detections: pd.DataFrame, frames: Sequence[np.ndarray]) -> np.ndarray:
    """Mean intensity above background of every detection, in a disc of 0.6 equivalent radii.

    Parameters
    ----------
    detections : pandas.DataFrame
        Columns ``frame, y, x, area`` (index reset).
    frames : sequence of numpy.ndarray
        Raw frames indexed by frame number.

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    frame = detections["frame"].to_numpy(np.int64)
    yx = detections[["y", "x"]].to_numpy(np.float64, copy=True)
    radius = 0.6 * np.sqrt(np.maximum(detections["area"].to_numpy(np.float64), 1.0) / np.pi)
    intensity = np.zeros(len(detections))
    for t in np.unique(frame).tolist():
        nodes = np.flatnonzero(frame == t)
        intensity[nodes] = measure_intensity(np.asarray(frames[t]), yx[nodes].copy(), radius[nodes])
    return intensity


def link_tracks(
    detections: pd.DataFrame,
    frames: Sequence[np.ndarray] | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    frame_shape: tuple[int, int] | None = None,
    **config: Any,
) -> TrackGraph:
    """Functional wrapper: ``Linker(LinkerConfig(**config)).link(detections, frames, ...)``."""
    return Linker(LinkerConfig(**config)).link(
        detections, frames, device=device, progress=progress, frame_shape=frame_shape
    )
