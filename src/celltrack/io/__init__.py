"""Input and output: CTC folders, movies, tables, model folders. The only place that touches files."""

from celltrack.io.atomic import OutputExistsError, atomic_output_dir, atomic_output_file, check_output
from celltrack.io.ctc import (
    GroundTruth,
    describe_sequence,
    detections_from_sequence,
    find_ground_truth,
    format_track_table,
    frame_name,
    paint_markers,
    parse_track_table,
    read_gt,
    read_man_track,
    read_track_table,
    render_result_masks,
    validate_ctc_result,
    validate_track_table,
    write_ctc_dataset,
    write_ctc_result,
    write_sequence,
)
from celltrack.io.sequence import ImageSequence, list_frame_files, open_sequence
from celltrack.io.tables import read_table, write_table

__all__ = [
    "GroundTruth",
    "ImageSequence",
    "OutputExistsError",
    "atomic_output_dir",
    "atomic_output_file",
    "check_output",
    "describe_sequence",
    "detections_from_sequence",
    "find_ground_truth",
    "format_track_table",
    "frame_name",
    "list_frame_files",
    "open_sequence",
    "paint_markers",
    "parse_track_table",
    "read_gt",
    "read_man_track",
    "read_table",
    "read_track_table",
    "render_result_masks",
    "validate_ctc_result",
    "validate_track_table",
    "write_ctc_dataset",
    "write_ctc_result",
    "write_sequence",
    "write_table",
]
