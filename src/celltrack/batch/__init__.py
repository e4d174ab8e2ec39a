"""Many positions (fields of view) of an experiment on Dask: one resumable task per position.

``plan_positions`` turns inputs (paths, globs) into uniquely named positions; ``process_position``
is the picklable task; ``BatchRunner`` submits the tasks to a local or an existing Dask cluster.
"""

from celltrack.batch.plan import Position, plan_positions, position_names
from celltrack.batch.runner import (
    SUMMARY_NAME,
    BatchConfig,
    BatchResult,
    BatchRunner,
    format_summary,
    run_batch,
    summary_table,
)
from celltrack.batch.worker import DONE_NAME, SUMMARY_COLUMNS, process_position, read_done_marker

__all__ = [
    "DONE_NAME",
    "SUMMARY_COLUMNS",
    "SUMMARY_NAME",
    "BatchConfig",
    "BatchResult",
    "BatchRunner",
    "Position",
    "format_summary",
    "plan_positions",
    "position_names",
    "process_position",
    "read_done_marker",
    "run_batch",
    "summary_table",
]
