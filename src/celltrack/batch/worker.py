"""What one Dask task does: track one position, then mark it done.

The function here runs on Dask workers, possibly on other machines: it is top-level (so it
pickles by reference), takes only plain data, and never raises for a bad position; it returns a
row of the batch summary instead, so that one failure cannot stop the others.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from celltrack import __version__
from celltrack.batch.plan import Position
from celltrack.io import atomic_output_file
from celltrack.io.provenance import RECORD_NAME

logger = logging.getLogger(__name__)

#: The completion marker: written last and atomically into a position's output folder.
DONE_NAME = "DONE.json"

#: Columns of the batch summary (``summary.csv`` and the printed table). ``nuclei`` counts
#: detections summed over all frames.
SUMMARY_COLUMNS = (
    "position",
    "status",
    "frames",
    "nuclei",
    "tracks",
    "divisions",
    "seconds",
    "input",
    "output",
    "error",
)
COUNT_COLUMNS = ("frames", "nuclei", "tracks", "divisions")

#: Errors whose message already says what is wrong (celltrack's one-line input errors).
_EXPECTED_ERRORS = (ValueError, TypeError, OSError)


def config_digest(config_dict: dict[str, Any]) -> str:
    """A short stable fingerprint of a tracking configuration (to notice a changed config on rerun)."""
    text = json.dumps(config_dict, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_done_marker(position_dir: str | Path) -> dict[str, Any] | None:
    """The completion marker of a position folder, or None if the position is not done.

    An unreadable marker counts as absent: the position is recomputed rather than trusted.
    """
    marker = Path(position_dir) / DONE_NAME
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") == "done" else None


def empty_row(position: Position, out_root: str | Path, status: str, error: str = "") -> dict[str, Any]:
    """A summary row without counts (a failed position)."""
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(
        position=position.name,
        status=status,
        input=str(position.path),
        output=str(Path(out_root) / position.name),
        error=error,
    )
    return row


def row_from_marker(marker: dict[str, Any], position: Position, out_root: str | Path) -> dict[str, Any]:
    """The summary row of a position done earlier (status ``skipped``, counts of the earlier run)."""
    row = empty_row(position, out_root, "skipped")
    row.update({key: marker.get(key) for key in (*COUNT_COLUMNS, "seconds")})
    return row


def done_earlier(position: Position, out_root: str | Path) -> dict[str, Any] | None:
    """The completion marker of ``position`` if it was done earlier from the same input, else None."""
    marker = read_done_marker(Path(out_root) / position.name)
    if marker is None:
        return None
    if marker.get("input") != str(position.path):
        raise ValueError(
            f"{Path(out_root) / position.name}: holds the results of {marker.get('input')}, not of "
            f"{position.path}; use another --out or pass --overwrite"
        )
    return marker


def error_message(err: BaseException) -> str:
    """One line: celltrack's input errors as they are, anything else prefixed by its type."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, _EXPECTED_ERRORS) and text:
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _limit_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _check_replaceable(target: Path) -> None:
    """Only a celltrack result (possibly interrupted before its marker) may be replaced silently."""
    if target.exists() and not (target / RECORD_NAME).is_file():
        raise ValueError(
            f"{target}: exists and is not a celltrack result; move it away, use another --out "
            "or pass --overwrite"
        )


def _remove_leftovers(out_root: Path, name: str) -> None:
    """Drop temporary folders that an interrupted earlier run of this position left behind."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(partial|old)-[A-Za-z0-9_]+$")
    for path in out_root.iterdir():
        if pattern.match(path.name):
            logger.debug("removing leftover %s", path)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def process_position(
    position: Position,
    out_root: str | Path,
    config_dict: dict[str, Any],
    overwrite: bool = False,
    threads_per_worker: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """Track one position into ``out_root/<position.name>/`` and write its completion marker.

    Parameters
    ----------
    position : Position
    out_root : str or pathlib.Path
        The batch output folder (shared by all workers).
    config_dict : dict
        A :class:`celltrack.pipeline.track.TrackingConfig` as JSON-ready data.
    overwrite : bool
        Recompute a position that is already done.
    threads_per_worker : int
        Torch intra-op threads for this task's process.
    device : str
        ``auto``, ``cpu`` or ``cuda`` for the networks and correlation filters.

    Returns
    -------
    dict
        A summary row (keys :data:`SUMMARY_COLUMNS`); ``status`` is ``done``, ``skipped`` (done by an
        earlier run) or ``failed`` (``error`` says why). Never raises for a bad position.
    """
    from celltrack.pipeline.track import TrackingConfig, run_tracking

    start = time.perf_counter()
    out_root = Path(out_root)
    target = out_root / position.name
    try:
        if not overwrite:
            marker = done_earlier(position, out_root)
            if marker is not None:
                return row_from_marker(marker, position, out_root)
            _check_replaceable(target)
        _limit_threads(threads_per_worker)
        config = TrackingConfig.model_validate(config_dict)
        # The folder has no marker here (or is to be replaced): it is an interrupted result.
        result = run_tracking(position.path, target, config, overwrite=True, command="batch", device=device)
        counts = result.summary()
        row = empty_row(position, out_root, "done")
        row.update(
            frames=counts["frames"],
            nuclei=counts["detections"],
            tracks=counts["tracks"],
            divisions=counts["divisions"],
            seconds=round(time.perf_counter() - start, 3),
        )
        marker = {
            **{key: row[key] for key in (*COUNT_COLUMNS, "seconds", "status")},
            "position": position.name,
            "input": str(position.path),
            "config_digest": config_digest(config_dict),
            "celltrack_version": __version__,
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        with atomic_output_file(target / DONE_NAME, overwrite=True) as tmp:
            tmp.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _remove_leftovers(out_root, position.name)
        logger.info("%s: done in %.1f s (%s)", position.name, row["seconds"], counts)
        return row
    except Exception as err:  # one position's failure, whatever it is, must not stop the batch
        if not isinstance(err, _EXPECTED_ERRORS):
            logger.error("%s: unexpected failure", position.name, exc_info=True)
        row = empty_row(position, out_root, "failed", error_message(err))
        row["seconds"] = round(time.perf_counter() - start, 3)
        return row


def dask_setup(worker: Any) -> None:
    """Dask preload hook for the worker processes of a local cluster: leave Ctrl-C to the client.

    A Ctrl-C in a terminal reaches every process of the group; the client then shuts the cluster
    down in order, while worker processes hit by it directly would die printing tracebacks.
    """
    with contextlib.suppress(ValueError):  # not the main thread: nothing to protect
        signal.signal(signal.SIGINT, signal.SIG_IGN)
