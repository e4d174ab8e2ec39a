"""The small interface every metric speaks: what it is given and what it returns.

A metric sees a :class:`TrackingData` bundle (ground-truth and predicted graphs, lazy access
to the label images their node labels refer to, and — when the data came from CTC folders —
those folders) and returns named scores. This is the traccuracy idea reduced to one protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from celltrack.graph import TrackGraph

#: Per-frame access to label images: ``source(t)``, or ``source[t]`` (ImageSequence, (T, Y, X) array, list).
LabelSource = Callable[[int], np.ndarray] | Sequence[np.ndarray] | np.ndarray


def read_label_frame(source: LabelSource, t: int, what: str = "label image") -> np.ndarray:
    """Frame ``t`` of a :data:`LabelSource`, checked to be a 2-D integer image.

    Parameters
    ----------
    source : LabelSource
        Callable ``t -> (Y, X)`` or indexable sequence of ``(Y, X)`` frames.
    t : int
        Frame index.
    what : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray, shape (Y, X), integer
    """
    frame = np.asarray(source(t) if callable(source) else source[t])
    if frame.ndim != 2:
        raise ValueError(f"{what} of frame {t} has shape {frame.shape}; expected a 2-D (Y, X) label image")
    if not np.issubdtype(frame.dtype, np.integer):
        raise TypeError(f"{what} of frame {t} has dtype {frame.dtype}; label images must be integer")
    return frame


@dataclass(frozen=True)
class TrackingData:
    """Everything a metric may look at.

    Attributes
    ----------
    gt_graph : TrackGraph
        Ground-truth lineage; node ``label`` = marker label in ``gt_markers``, ``y, x`` = marker centroid.
    gt_markers : LabelSource
        GT TRA marker images, frame by frame, shape (Y, X) each.
    pred_graph : TrackGraph
        Predicted lineage; node ``label`` = object label in ``pred_labels``, ``y, x`` = object centroid.
    pred_labels : LabelSource
        Predicted label images, shape (Y, X) each.
    res_dir, gt_dir : pathlib.Path or None
        The CTC folders the data came from (needed by metrics that read files, e.g. py-ctcmetrics).
    validated : bool
        True when ``res_dir`` has already passed :func:`celltrack.metrics.ctc.check_ctc_result`.
    """

    gt_graph: TrackGraph
    gt_markers: LabelSource
    pred_graph: TrackGraph
    pred_labels: LabelSource
    res_dir: Path | None = None
    gt_dir: Path | None = None
    validated: bool = False


@runtime_checkable
class Metric(Protocol):
    """A tracking metric: a name and a ``compute`` that turns :class:`TrackingData` into scores."""

    name: str

    def compute(self, data: TrackingData) -> dict[str, float]:
        """Named scores (NaN where a score is undefined for this data)."""
        ...
