"""Evaluation entry point: a CTC result folder against its ground truth, with provenance.

:func:`evaluate` is the one function here that reads folders (through :mod:`celltrack.io`);
the measures it combines — py-ctcmetrics' CTC scores and the Wu precision curve — are in
:mod:`celltrack.metrics.ctc` and :mod:`celltrack.metrics.precision`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import celltrack
from celltrack.graph import TrackGraph
from celltrack.io import detections_from_sequence, final_path, open_sequence
from celltrack.metrics.base import TrackingData
from celltrack.metrics.ctc import (
    CTCMetrics,
    CTCMetricsConfig,
    check_ctc_result,
    ctc_metrics_version,
    is_ctc_metric,
)
from celltrack.metrics.precision import PrecisionCurve, WuPrecision

logger = logging.getLogger(__name__)

#: The metric name selecting the Wu precision curve in :func:`evaluate`.
PRECISION = "precision"


def _clean(value: float) -> float | None:
    # JSON has no NaN; an undefined score is null.
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass(frozen=True)
class EvaluationResult:
    """Scores of one result folder and where they came from.

    Attributes
    ----------
    metrics : dict of str to float
        CTC scores (``TRA``, ``DET``, ``LNK``, ``CT``, ``TF``, ``BC(i)``, ``CCA``, ``SEG``, ...) and
        ``P@5``, ``P@10``, ``P@20``; NaN where undefined.
    thresholds, precision : numpy.ndarray or None, shape (K,)
        The precision curve (pixels, share of frames), None when not computed.
    res_dir, gt_dir : str
        The evaluated folders.
    from_frame : int or None
        Precision-curve protocol (see :class:`~celltrack.metrics.precision.PrecisionConfig`).
    n_cells, n_compared : int
        GT cells followed and GT frames compared by the precision curve (0 when not computed).
    celltrack_version, ctc_metrics_version : str
    timestamp : str
        ISO 8601 time of the evaluation (UTC).
    curve : PrecisionCurve or None
        Full curve with per-frame pairs (not serialised).
    """

    metrics: dict[str, float]
    thresholds: np.ndarray | None
    precision: np.ndarray | None
    res_dir: str
    gt_dir: str
    from_frame: int | None = None
    n_cells: int = 0
    n_compared: int = 0
    celltrack_version: str = celltrack.__version__
    ctc_metrics_version: str = field(default_factory=ctc_metrics_version)
    timestamp: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    curve: PrecisionCurve | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """Short name for legends: ``parent/res_folder``."""
        path = Path(self.res_dir)
        return f"{path.parent.name}/{path.name}" if path.parent.name else path.name

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable record (NaN scores become null)."""
        curve = None
        if self.thresholds is not None and self.precision is not None:
            curve = {
                "thresholds": [float(v) for v in self.thresholds],
                "precision": [_clean(float(v)) for v in self.precision],
                "n_cells": int(self.n_cells),
                "n_compared": int(self.n_compared),
                "from_frame": self.from_frame,
            }
        return {
            "metrics": {k: _clean(v) for k, v in self.metrics.items()},
            "precision_curve": curve,
            "res_dir": self.res_dir,
            "gt_dir": self.gt_dir,
            "from_frame": self.from_frame,
            "versions": {"celltrack": self.celltrack_version, "py-ctcmetrics": self.ctc_metrics_version},
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> EvaluationResult:
        """Rebuild a result from :meth:`to_dict` output (without the per-frame pairs)."""
        curve = record.get("precision_curve")
        nan = float("nan")
        return cls(
            metrics={k: nan if v is None else float(v) for k, v in record["metrics"].items()},
            thresholds=np.asarray(curve["thresholds"], float) if curve else None,
            precision=np.asarray([nan if v is None else v for v in curve["precision"]], float)
            if curve
            else None,
            res_dir=record["res_dir"],
            gt_dir=record["gt_dir"],
            from_frame=record.get("from_frame"),
            n_cells=int(curve["n_cells"]) if curve else 0,
            n_compared=int(curve["n_compared"]) if curve else 0,
            celltrack_version=record["versions"]["celltrack"],
            ctc_metrics_version=record["versions"]["py-ctcmetrics"],
            timestamp=record["timestamp"],
        )


def _split_metrics(metrics: Sequence[str] | None) -> tuple[tuple[str, ...] | None, bool]:
    """CTC names (None = their default) and whether the precision curve is wanted."""
    if metrics is None:
        return None, True
    if isinstance(metrics, str):
        metrics = [metrics]
    wants_precision = any(m.lower() == PRECISION for m in metrics)
    ctc = tuple(m for m in metrics if m.lower() != PRECISION)
    unknown = [m for m in ctc if not is_ctc_metric(m)]
    if unknown:
        raise ValueError(
            f"unknown metrics {unknown}; use py-ctcmetrics names (TRA, DET, LNK, SEG, CT, TF, BC, BC(i), "
            f"CCA, ...) or {PRECISION!r}"
        )
    return ctc, wants_precision


def evaluate(
    res_dir: str | Path,
    gt_dir: str | Path,
    metrics: Sequence[str] | None = None,
    from_frame: int | None = None,
) -> EvaluationResult:
    """Score a CTC result folder against a CTC ground-truth folder.

    Parameters
    ----------
    res_dir : str or pathlib.Path
        ``NN_RES`` folder: ``maskTTT.tif`` (pixels = track ids) and ``res_track.txt``.
    gt_dir : str or pathlib.Path
        ``NN_GT`` folder with ``TRA/`` (and optionally ``SEG/``).
    metrics : sequence of str, optional
        py-ctcmetrics names and/or ``"precision"``. Default: TRA, DET, LNK, CT, TF, BC(0..3),
        CCA, SEG (when GT SEG exists) and the precision curve.
    from_frame : int, optional
        Precision curve over the GT cells present in this frame, followed from it.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ValueError
        Missing or invalid folders (checked before py-ctcmetrics runs), unknown metric names,
        ``from_frame`` without the precision curve or outside the annotated frames.
    """
    ctc_names, wants_precision = _split_metrics(metrics)
    if from_frame is not None and not wants_precision:
        raise ValueError(f"from_frame applies to the precision curve; add {PRECISION!r} to metrics")
    res_dir, gt_dir = Path(res_dir), Path(gt_dir)
    res_tracks, gt = check_ctc_result(res_dir, gt_dir)

    scores: dict[str, float] = {}
    if ctc_names is None or ctc_names:
        ctc = CTCMetrics(CTCMetricsConfig(metrics=ctc_names))
        scores.update(ctc.score(res_dir, gt_dir, checked=True))

    curve = None
    if wants_precision:
        masks = open_sequence(res_dir, prefix="mask")
        data = TrackingData(
            gt_graph=gt.graph(),
            gt_markers=gt.tra,
            pred_graph=TrackGraph.from_ctc(detections_from_sequence(masks), res_tracks),
            pred_labels=masks,
            res_dir=res_dir,
            gt_dir=gt_dir,
            validated=True,
        )
        wu = WuPrecision(from_frame=from_frame)
        curve = wu.curve(data.gt_graph, data.gt_markers, data.pred_graph, data.pred_labels)
        scores.update(wu.scores(curve))

    return EvaluationResult(
        metrics=scores,
        thresholds=curve.thresholds if curve is not None else None,
        precision=curve.precision if curve is not None else None,
        # a result being written (the demo's) is recorded and labelled by where it will be
        res_dir=str(final_path(res_dir)),
        gt_dir=str(final_path(gt_dir)),
        from_frame=from_frame,
        n_cells=curve.n_cells if curve is not None else 0,
        n_compared=curve.n_compared if curve is not None else 0,
        curve=curve,
    )
