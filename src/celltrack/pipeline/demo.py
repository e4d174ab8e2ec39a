"""The demo: a synthetic movie tracked end to end by the best pipeline the package has, then scored."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celltrack.io import atomic_output_dir, write_ctc_dataset
from celltrack.pipeline.track import Progress, TrackingConfig, no_progress, run_tracking
from celltrack.synthetic import SyntheticConfig, generate_movie

logger = logging.getLogger(__name__)


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, and its scores."""

    out_dir: Path
    data_dir: Path
    res_dir: Path
    metrics: dict[str, Any]
    metrics_file: Path
    plot_file: Path
    summary: dict[str, Any]


def run_demo(
    out_dir: str | Path,
    movie: SyntheticConfig | None = None,
    config: TrackingConfig | None = None,
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> DemoResult:
    """Generate a synthetic movie, track it, evaluate it against its exact ground truth.

    Writes ``out_dir/data`` (the movie in CTC layout with ``01_GT``), ``out_dir/01_RES``
    (CTC result, track table, run record), ``out_dir/metrics.json`` and
    ``out_dir/precision.png``, all moved into place together at the end.
    """
    from celltrack.metrics import evaluate, plot_precision_curve

    movie_config = movie or SyntheticConfig(frames=30, height=256, width=256, nuclei=30, seed=0)
    synthetic = generate_movie(movie_config)
    final = Path(out_dir)
    with atomic_output_dir(final, overwrite) as tmp:
        data = write_ctc_dataset(
            synthetic.images, synthetic.labels, synthetic.markers, synthetic.tracks, tmp / "data"
        )
        result = run_tracking(data / "01", tmp / "01_RES", config, progress=progress, command="demo")
        scores = evaluate(tmp / "01_RES", data / "01_GT")
        metrics = scores.to_dict()
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
        plot_precision_curve(scores, tmp / "precision.png")
    return DemoResult(
        final,
        final / "data",
        final / "01_RES",
        scores.metrics,
        final / "metrics.json",
        final / "precision.png",
        result.summary(),
    )
