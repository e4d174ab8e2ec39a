"""Evaluation: CTC measures through py-ctcmetrics and the Wu et al. 2013 precision curve.

``evaluate(res_dir, gt_dir)`` scores a CTC result folder; ``precision_curve(...)`` works on
graphs and label images directly; ``plot_precision_curve`` draws one or more curves.
"""

from celltrack.metrics.base import LabelSource, Metric, TrackingData, read_label_frame
from celltrack.metrics.ctc import (
    DEFAULT_CTC_METRICS,
    CTCMetrics,
    CTCMetricsConfig,
    check_ctc_result,
    ctc_metrics,
    ctc_metrics_version,
)
from celltrack.metrics.evaluate import PRECISION, EvaluationResult, evaluate
from celltrack.metrics.plot import plot_precision_curve
from celltrack.metrics.precision import (
    PrecisionConfig,
    PrecisionCurve,
    WuPrecision,
    cell_segments,
    marker_coverage,
    precision_curve,
)

__all__ = [
    "DEFAULT_CTC_METRICS",
    "PRECISION",
    "CTCMetrics",
    "CTCMetricsConfig",
    "EvaluationResult",
    "LabelSource",
    "Metric",
    "PrecisionConfig",
    "PrecisionCurve",
    "TrackingData",
    "WuPrecision",
    "cell_segments",
    "check_ctc_result",
    "ctc_metrics",
    "ctc_metrics_version",
    "evaluate",
    "marker_coverage",
    "plot_precision_curve",
    "precision_curve",
    "read_label_frame",
]
