"""Self-contained HTML reports of tracking results: metrics, provenance, figures and a per-track table.

matplotlib is imported only when a figure is drawn, so importing this package is cheap.
"""

from celltrack.report.figures import (
    figure_png,
    lineage_families,
    lineage_figure,
    track_length_figure,
    track_summary,
    trajectory_figure,
)
from celltrack.report.html import (
    FIGURE_ALTS,
    REPORTED_METRICS,
    ReportConfig,
    ReportMetrics,
    build_report,
    first_frame,
    write_report,
)

__all__ = [
    "FIGURE_ALTS",
    "REPORTED_METRICS",
    "ReportConfig",
    "ReportMetrics",
    "build_report",
    "figure_png",
    "first_frame",
    "lineage_families",
    "lineage_figure",
    "track_length_figure",
    "track_summary",
    "trajectory_figure",
    "write_report",
]
