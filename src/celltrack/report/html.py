"""One self-contained HTML page per tracking result: metrics, provenance, figures and a track table.

Figures are embedded as base64 PNG ``data:`` URIs and the style sheet is inline, so the page
has no external resources and can be mailed or archived as a single file.
:func:`build_report` turns in-memory results into the page (no file access);
:func:`write_report` reads a result folder through :mod:`celltrack.io` and writes the page
atomically.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

import celltrack
from celltrack.graph import TrackGraph
from celltrack.io import atomic_output_file, check_output, open_sequence
from celltrack.io.export import read_result
from celltrack.report.figures import (
    figure_png,
    lineage_families,
    lineage_figure,
    track_length_figure,
    track_summary,
    trajectory_figure,
)

logger = logging.getLogger(__name__)

#: Metrics shown in the report's table, in this order, when the evaluation has them.
REPORTED_METRICS: tuple[str, ...] = (
    "TRA", "DET", "LNK", "SEG", "CT", "TF", "BC(0)", "CCA", "P@5", "P@10", "P@20",
)  # fmt: skip
#: ``alt`` texts of the embedded figures (the precision curve only with ground truth).
FIGURE_ALTS: dict[str, str] = {
    "precision": "precision curve",
    "trajectories": "trajectories over the first frame",
    "lineage": "lineage trees of the largest families",
    "lengths": "track-length histogram",
}

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.2em 0.7em; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f5f5f5; } td.text, th.text { text-align: left; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.85em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.muted { color: #777; } .scroll { max-height: 40em; overflow-y: auto; }
pre { background: #f8f8f8; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
"""


class ReportConfig(BaseModel):
    """What the report shows.

    Attributes
    ----------
    n_families : int
        Lineage trees drawn: the families with the most tracks.
    dpi : int
        Resolution of the embedded figures (dots per inch).
    max_table_rows : int or None
        Rows of the per-track table (longest tracks first when cut); None for all tracks.
    title : str or None
        Page title; default ``celltrack report: <result folder>``.
    """

    model_config = ConfigDict(extra="forbid")

    n_families: int = Field(4, ge=1, description="Lineage trees drawn (largest families first).")
    dpi: int = Field(100, ge=30, le=600, description="Figure resolution (dots per inch).")
    max_table_rows: int | None = Field(None, ge=1, description="Per-track table rows; None = every track.")
    title: str | None = Field(None, description="Page title.")


@dataclass
class ReportMetrics:
    """Scores shown in the report (usually from :class:`celltrack.metrics.EvaluationResult`).

    Attributes
    ----------
    metrics : dict of str to float or None
    gt_dir : str
        Ground truth the result was scored against.
    precision_png : bytes or None
        The precision-curve figure, already rendered.
    """

    metrics: Mapping[str, float | None]
    gt_dir: str
    precision_png: bytes | None = None


def build_report(
    graph: TrackGraph,
    *,
    source: str = "",
    evaluation: ReportMetrics | None = None,
    record: Mapping[str, Any] | None = None,
    background: np.ndarray | None = None,
    frame_shape: tuple[int, int] | None = None,
    n_frames: int | None = None,
    config: ReportConfig | None = None,
) -> str:
    """The report page of one tracking result.

    Parameters
    ----------
    graph : TrackGraph
        The result.
    source : str
        Where the result came from (shown in the heading).
    evaluation : ReportMetrics, optional
        Scores against ground truth: adds the metrics table and the precision curve.
    record : mapping, optional
        The run's ``celltrack.json``: adds a provenance summary.
    background : numpy.ndarray, shape (Y, X), optional
        Raw first frame under the trajectories (blank when None).
    frame_shape : tuple of int, optional
        ``(Y, X)`` of the movie, for the blank background.
    n_frames : int, optional
        Frames of the movie (default: spanned by the graph).
    config : ReportConfig, optional

    Returns
    -------
    str
        A complete HTML5 document.
    """
    config = config or ReportConfig()
    summary = track_summary(graph)
    title = config.title or f"celltrack report: {source or 'tracking result'}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{_esc(title)}</h1>",
        _overview(graph, summary, n_frames, source),
    ]
    if evaluation is not None:
        parts.append(_metrics_section(evaluation))
    if record is not None:
        parts.append(_provenance_section(record))
    parts.append('<h2 id="figures">Figures</h2>')
    if evaluation is not None and evaluation.precision_png is not None:
        parts.append(
            _figure_html(
                evaluation.precision_png,
                FIGURE_ALTS["precision"],
                "Fraction of ground-truth cells whose tracked position is within the threshold "
                "(Wu et al. 2013).",
            )
        )
    parts.append(
        _figure_html(
            figure_png(trajectory_figure(graph, background, frame_shape, dpi=config.dpi)),
            FIGURE_ALTS["trajectories"],
            "Every track in its own colour; dots mark track starts, dashed lines link parents to children."
            + ("" if background is not None else " The raw frame was not available (use --images)."),
        )
    )
    n_shown = min(config.n_families, len(lineage_families(summary))) if len(summary) else 0
    parts.append(
        _figure_html(
            figure_png(lineage_figure(summary, config.n_families, dpi=config.dpi)),
            FIGURE_ALTS["lineage"],
            f"The {n_shown} largest lineages by number of tracks; time runs left to right.",
        )
    )
    parts.append(
        _figure_html(
            figure_png(track_length_figure(summary, dpi=config.dpi)),
            FIGURE_ALTS["lengths"],
            "Track length = last frame − first frame + 1.",
        )
    )
    parts.append(_track_table(summary, config.max_table_rows))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    parts.append(f'<p class="muted">Written by celltrack {_esc(celltrack.__version__)} at {stamp}.</p>')
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_report(
    res_dir: str | Path,
    out: str | Path,
    *,
    gt_dir: str | Path | None = None,
    images: str | Path | None = None,
    config: ReportConfig | None = None,
    overwrite: bool = False,
) -> Path:
    """Read a result folder, optionally score it, and write its report page.

    Parameters
    ----------
    res_dir : str or pathlib.Path
        Result folder (``maskTTT.tif`` + ``res_track.txt``; ``tracks.csv`` and ``celltrack.json``
        are used when present).
    out : str or pathlib.Path
        The HTML file; written atomically.
    gt_dir : str or pathlib.Path, optional
        CTC ground truth (``NN_GT``): adds the metrics table and the precision curve.
    images : str or pathlib.Path, optional
        The raw movie, for the frame under the trajectories. Without it the movie named in
        ``celltrack.json`` (``inputs.images.path``) is used when readable, else a blank frame.
    config : ReportConfig, optional
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    pathlib.Path
    """
    check_output(out, overwrite)
    result = read_result(res_dir)
    evaluation = None
    if gt_dir is not None:
        from celltrack.metrics import evaluate, plot_precision_curve

        scores = evaluate(result.path, gt_dir)
        png = figure_png(plot_precision_curve(scores)) if scores.precision is not None else None
        evaluation = ReportMetrics(dict(scores.metrics), str(gt_dir), png)
    background = first_frame(images, result.record, result.frame_shape)
    page = build_report(
        result.graph,
        source=str(result.path),
        evaluation=evaluation,
        record=result.record,
        background=background,
        frame_shape=result.frame_shape,
        n_frames=result.n_frames,
        config=config,
    )
    with atomic_output_file(out, overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(out)


def first_frame(
    images: str | Path | None, record: Mapping[str, Any] | None, frame_shape: tuple[int, int] | None
) -> np.ndarray | None:
    """The raw first frame: from ``images`` if given, else from the run record's input path.

    A given ``images`` that cannot be read is an error; a recorded path that is gone (the
    result was moved to another machine) or does not match ``frame_shape`` only logs and
    returns None.
    """
    if images is not None:
        sequence = open_sequence(images)
        if frame_shape is not None and sequence.frame_shape != tuple(frame_shape):
            raise ValueError(
                f"{images}: frames of {sequence.frame_shape} do not match the result's masks of "
                f"{frame_shape}; "
                "pass the movie this result was tracked on"
            )
        return sequence[0] if len(sequence) else None
    recorded = (record or {}).get("inputs", {}).get("images", {})
    path = recorded.get("path") if isinstance(recorded, Mapping) else None
    if not path:
        return None
    try:
        sequence = open_sequence(path)
        frame = sequence[0] if len(sequence) else None
    except ValueError as err:
        logger.info("the recorded movie %s is not readable (%s); trajectories on a blank frame", path, err)
        return None
    if frame is not None and frame_shape is not None and frame.shape != tuple(frame_shape):
        logger.warning(
            "the recorded movie %s has frames of %s, not %s; not used", path, frame.shape, frame_shape
        )
        return None
    return frame


# ---------------------------------------------------------------------- sections
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _esc(value)
    if math.isnan(number):
        return "n/a"
    return f"{number:.{digits}f}"


def _key_value_table(rows: Sequence[tuple[str, str]], table_id: str) -> str:
    body = "".join(f'<tr><th class="text">{_esc(k)}</th><td class="text">{v}</td></tr>' for k, v in rows)
    return f'<table id="{table_id}"><tbody>{body}</tbody></table>'


def _overview(graph: TrackGraph, summary: pd.DataFrame, n_frames: int | None, source: str) -> str:
    families = lineage_families(summary) if len(summary) else []
    rows = [
        ("result", _esc(source or "—")),
        ("frames", str(n_frames if n_frames is not None else graph.n_frames)),
        ("detections", str(len(graph))),
        ("tracks", str(len(summary))),
        ("divisions", str(len(graph.divisions()))),
        ("lineages", str(len(families))),
        ("median track length (frames)", _number(summary["length"].median() if len(summary) else None, 1)),
        ("median speed (px/frame)", _number(summary["mean_speed"].median() if len(summary) else None, 2)),
    ]
    return '<h2 id="overview-heading">Overview</h2>' + _key_value_table(rows, "overview")


def _metrics_section(evaluation: ReportMetrics) -> str:
    shown = [k for k in REPORTED_METRICS if k in evaluation.metrics]
    body = "".join(
        f'<tr><th class="text">{_esc(k)}</th><td>{_number(evaluation.metrics[k])}</td></tr>' for k in shown
    )
    return (
        '<h2 id="metrics-heading">Metrics</h2>'
        f'<p class="muted">Against ground truth {_esc(evaluation.gt_dir)} (py-ctcmetrics; P@k: precision '
        "at k px).</p>"
        '<table id="metrics"><thead><tr><th class="text">metric</th><th>score</th></tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _provenance_section(record: Mapping[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    for key in ("command", "celltrack_version", "python", "platform"):
        if key in record:
            rows.append((key, _esc(record[key])))
    inputs = record.get("inputs", {})
    if isinstance(inputs, Mapping):
        for name, info in inputs.items():
            if isinstance(info, Mapping):
                shape = "×".join(str(s) for s in info.get("shape", []))
                text = f"{info.get('path', '?')} ({shape} {info.get('dtype', '')})".strip()
                rows.append((f"input: {name}", _esc(text)))
    timings = record.get("timings_seconds", {})
    if isinstance(timings, Mapping) and timings:
        total = sum(float(v) for v in timings.values())
        detail = ", ".join(f"{k} {float(v):.1f} s" for k, v in timings.items())
        rows.append(("run time", _esc(f"{total:.1f} s ({detail})")))
    summary = record.get("summary", {})
    if isinstance(summary, Mapping):
        for key, value in summary.items():
            rows.append((f"summary: {key}", _esc(value)))
    config = record.get("config")
    details = ""
    if config:
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        details = f"<details><summary>full configuration</summary><pre>{_esc(text)}</pre></details>"
    return (
        '<h2 id="provenance-heading">Provenance</h2><p class="muted">From the run record celltrack.json.</p>'
        + _key_value_table(rows, "provenance")
        + details
    )


def _figure_html(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _track_table(summary: pd.DataFrame, max_rows: int | None) -> str:
    shown = summary
    note = f"All {len(summary)} tracks."
    if max_rows is not None and len(summary) > max_rows:
        shown = summary.sort_values(["length", "track_id"], ascending=[False, True]).head(max_rows)
        shown = shown.sort_values("track_id")
        note = f"The {max_rows} longest of {len(summary)} tracks."
    head = "".join(
        f"<th>{h}</th>"
        for h in ("track", "parent", "begin", "end", "length (frames)", "mean speed (px/frame)", "children")
    )
    body = "".join(
        "<tr>"
        f"<td>{int(r.track_id)}</td><td>{int(r.parent) or '—'}</td>"
        f"<td>{int(r.begin)}</td><td>{int(r.end)}</td><td>{int(r.length)}</td>"
        f"<td>{_number(r.mean_speed, 2)}</td><td>{int(r.children)}</td>"
        "</tr>"
        for r in shown.itertuples(index=False)
    )
    return (
        f'<h2 id="tracks-heading">Tracks</h2><p class="muted">{note}</p><div class="scroll">'
        f'<table id="tracks"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    )
