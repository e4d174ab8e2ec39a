"""Precision-curve plot (matplotlib, Agg, imported only when a plot is asked for)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from celltrack.io import atomic_output_file
from celltrack.metrics.evaluate import EvaluationResult
from celltrack.metrics.precision import REPORTED_THRESHOLDS, PrecisionCurve

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_precision_curve(
    results: EvaluationResult | PrecisionCurve | Sequence[EvaluationResult | PrecisionCurve],
    path: str | Path | None = None,
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    overwrite: bool = False,
) -> Figure:
    """Precision against location-error threshold for one or more results.

    Parameters
    ----------
    results : EvaluationResult, PrecisionCurve or a sequence of them
        Curves to draw (results without a curve raise).
    path : str or pathlib.Path, optional
        Write the figure as PNG here (atomically: a temporary file moved into place).
    labels : sequence of str, optional
        Legend entries; default the result folders (``parent/NN_RES``) or ``curve i``.
    title : str, optional
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    matplotlib.figure.Figure
        A figure not registered with pyplot (no global state; garbage-collected normally).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    items = [results] if isinstance(results, EvaluationResult | PrecisionCurve) else list(results)
    if not items:
        raise ValueError("plot_precision_curve needs at least one result")
    if labels is not None and len(labels) != len(items):
        raise ValueError(f"{len(labels)} labels for {len(items)} curves; give one label per curve")
    fig = Figure(figsize=(5.0, 3.8), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, item in enumerate(items):
        if item.thresholds is None or item.precision is None:
            raise ValueError(f"result {i} ({getattr(item, 'res_dir', '?')}) has no precision curve")
        default = item.label if isinstance(item, EvaluationResult) else f"curve {i + 1}"
        name = labels[i] if labels is not None else default
        ax.plot(item.thresholds, item.precision, label=name, linewidth=1.6)
    for k in REPORTED_THRESHOLDS:
        ax.axvline(k, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xlabel("location error threshold (px)")
    ax.set_ylabel("precision")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlim(left=0.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    if title:
        ax.set_title(title)
    if path is not None:
        with atomic_output_file(path, overwrite) as tmp:
            fig.savefig(tmp, format="png")
    return fig
