"""Many positions on Dask: one task per position, on a local cluster or an existing one.

``dask.distributed`` is imported only when a run starts, so importing celltrack stays fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from celltrack.batch.plan import Position
from celltrack.batch.worker import (
    COUNT_COLUMNS,
    SUMMARY_COLUMNS,
    config_digest,
    done_earlier,
    empty_row,
    error_message,
    process_position,
    row_from_marker,
)
from celltrack.io import write_table

if TYPE_CHECKING:
    from celltrack.pipeline.track import TrackingConfig

logger = logging.getLogger(__name__)

SUMMARY_NAME = "summary.csv"

#: Module whose ``dask_setup`` runs in each local worker process.
WORKER_PRELOAD = "celltrack.batch.worker"

Row = dict[str, Any]


class BatchConfig(BaseModel):
    """Where and how wide a batch run goes."""

    model_config = ConfigDict(extra="forbid")

    workers: int | None = Field(
        None, ge=1, description="Local worker count; default: CPU cores, at most one per pending position."
    )
    threads_per_worker: int = Field(1, ge=1, description="Threads per worker (also torch's thread count).")
    device: str = Field("cpu", description="Where each task runs networks and filters: auto, cpu or cuda.")
    scheduler: str | None = Field(
        None, description="Address of an existing Dask scheduler (tcp://host:8786); None: a local cluster."
    )
    processes: bool = Field(True, description="Local workers as processes (True) or threads of this one.")
    dashboard_address: str = Field(":8787", description="Dashboard host:port of a local cluster; ':0' = any.")
    connect_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds to wait for an existing scheduler; None: Dask's "
        "distributed.comm.timeouts.connect (30 s unless configured).",
    )


@dataclass
class BatchResult:
    """The outcome of a batch run: one summary row per position, in plan order."""

    rows: list[Row]
    out_dir: Path
    summary_path: Path | None
    dashboard: str | None

    @property
    def failed(self) -> list[Row]:
        return [row for row in self.rows if row["status"] == "failed"]

    def table(self) -> pd.DataFrame:
        return summary_table(self.rows)


def summary_table(rows: Sequence[Row]) -> pd.DataFrame:
    """Rows as a DataFrame with columns :data:`SUMMARY_COLUMNS` (counts as nullable integers)."""
    table = pd.DataFrame(list(rows), columns=list(SUMMARY_COLUMNS))
    for column in COUNT_COLUMNS:
        table[column] = pd.array(table[column].tolist(), dtype="Int64")
    table["seconds"] = pd.to_numeric(table["seconds"]).astype("float64").round(3)
    return table


def format_summary(rows: Sequence[Row]) -> str:
    """The summary as a fixed-width text table, then one line per failed position with its error.

    Parameters
    ----------
    rows : sequence of dict
        Summary rows (keys :data:`SUMMARY_COLUMNS`).

    Returns
    -------
    str
        Lines without a trailing newline.
    """
    headers = ("position", "status", *COUNT_COLUMNS, "seconds")

    def cell(row: Row, key: str) -> str:
        value = row.get(key)
        if value is None or (isinstance(value, float) and value != value):
            return "-"
        return f"{value:.1f}" if key == "seconds" else str(value)

    cells = [[cell(row, key) for key in headers] for row in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        text = [
            v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(text).rstrip()

    lines = [line(headers), line(["-" * w for w in widths]), *(line(c) for c in cells)]
    counts = {
        status: sum(row["status"] == status for row in rows) for status in ("done", "skipped", "failed")
    }
    lines.append(
        f"{len(rows)} positions: {counts['done']} done, {counts['skipped']} skipped (done earlier), "
        f"{counts['failed']} failed"
    )
    lines.extend(f"failed {row['position']}: {row['error']}" for row in rows if row["status"] == "failed")
    return "\n".join(lines)


class BatchRunner:
    """Track many positions as Dask tasks; resumable, and one failure never stops the others.

    Parameters
    ----------
    config : BatchConfig, optional
    **overrides
        Field values replacing those of ``config``.
    """

    def __init__(self, config: BatchConfig | None = None, **overrides: Any) -> None:
        base = config or BatchConfig()
        self.config = base.model_validate({**base.model_dump(), **overrides}) if overrides else base

    def run(
        self,
        positions: Sequence[Position],
        out_dir: str | Path,
        tracking: TrackingConfig | None = None,
        overwrite: bool = False,
        on_start: Callable[[str | None], None] | None = None,
        on_result: Callable[[Row], None] | None = None,
    ) -> BatchResult:
        """Process every position not done yet and write ``out_dir/summary.csv``.

        Parameters
        ----------
        positions : sequence of Position
            From :func:`celltrack.batch.plan_positions`; names must be unique.
        out_dir : str or pathlib.Path
            Batch output folder: ``<position-name>/`` per position (CTC result, ``tracks.csv``,
            ``celltrack.json``, ``DONE.json``) and ``summary.csv``. Must be reachable under the same
            path by every worker.
        tracking : TrackingConfig, optional
            Pipeline configuration for every position.
        overwrite : bool
            Recompute positions that are done.
        on_start : callable, optional
            Called with the dashboard address once the cluster is up (not called when nothing is left).
        on_result : callable, optional
            Called with each summary row as soon as its position is settled.

        Returns
        -------
        BatchResult
        """
        from celltrack.pipeline.track import TrackingConfig

        positions = list(positions)
        if not positions:
            raise ValueError("no positions to process; pass at least one movie")
        names = [p.name for p in positions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"position names must be unique, got {duplicates} more than once; rename the inputs"
            )
        out_dir = Path(out_dir).absolute()
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"{out_dir}: exists and is not a folder; pass a folder to --out")
        config_dict = (tracking or TrackingConfig()).model_dump(mode="json")
        report = on_result or (lambda row: None)

        rows: dict[str, Row] = {}
        pending: list[Position] = []
        for position in positions:
            row = None if overwrite else self._settled_earlier(position, out_dir, config_dict)
            if row is None:
                pending.append(position)
            else:
                rows[position.name] = row
                report(row)

        dashboard = None
        if pending:
            with self._client(len(pending)) as (client, dashboard):
                # created only now that there is work and a cluster to do it: an unreachable
                # scheduler leaves no empty output folder behind
                out_dir.mkdir(parents=True, exist_ok=True)
                if on_start is not None:
                    on_start(dashboard)
                for row in self._submit(client, pending, out_dir, config_dict, overwrite):
                    rows[row["position"]] = row
                    report(row)
        ordered = [rows[name] for name in names]
        summary_path = write_table(summary_table(ordered), out_dir / SUMMARY_NAME, overwrite=True)
        return BatchResult(ordered, out_dir, summary_path, dashboard)

    @staticmethod
    def _settled_earlier(position: Position, out_dir: Path, config_dict: dict[str, Any]) -> Row | None:
        """Skip done positions here, without a task (the worker checks again, authoritatively)."""
        try:
            marker = done_earlier(position, out_dir)
        except ValueError as err:
            return empty_row(position, out_dir, "failed", error_message(err))
        if marker is None:
            return None
        if marker.get("config_digest") not in (None, config_digest(config_dict)):
            logger.warning(
                "%s: done earlier with another configuration; kept (pass --overwrite to recompute)",
                position.name,
            )
        return row_from_marker(marker, position, out_dir)

    def _submit(
        self,
        client: Any,
        pending: list[Position],
        out_dir: Path,
        config_dict: dict[str, Any],
        overwrite: bool,
    ) -> Iterator[Row]:
        from distributed import as_completed

        run_id = uuid.uuid4().hex[:8]
        keys = [f"celltrack-{p.name}-{run_id}" for p in pending]
        by_key = dict(zip(keys, pending, strict=True))
        futures = client.map(
            process_position,
            pending,
            key=keys,
            pure=False,
            out_root=str(out_dir),
            config_dict=config_dict,
            overwrite=overwrite,
            threads_per_worker=self.config.threads_per_worker,
            device=self.config.device,
        )
        try:
            for future in as_completed(futures):
                position = by_key[future.key]
                try:
                    row = future.result()
                except (Exception, CancelledError) as err:  # a lost worker, a cancelled task ...
                    row = empty_row(position, out_dir, "failed", error_message(err))
                future.release()
                yield row
        finally:
            unfinished = [f for f in futures if not f.done()]
            if unfinished:
                client.cancel(unfinished)

    @contextlib.contextmanager
    def _client(self, n_pending: int) -> Iterator[tuple[Any, str | None]]:
        """A Dask client; a local cluster made here is closed here, an existing one is left running."""
        from distributed import Client, LocalCluster

        if self.config.scheduler:
            timeout = self.config.connect_timeout
            try:
                client = Client(self.config.scheduler, **({"timeout": timeout} if timeout else {}))
            except (OSError, TimeoutError, ValueError) as err:
                raise ValueError(
                    f"{self.config.scheduler}: cannot reach the Dask scheduler ({error_message(err)}); "
                    "check --scheduler"
                ) from err
            with client:
                yield client, client.dashboard_link
            return
        workers = self.config.workers or max(1, min(os.cpu_count() or 1, n_pending))
        with contextlib.ExitStack() as stack:
            stack.callback(_restore_log_levels, _log_levels())  # runs last, after the cluster is closed
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=self.config.threads_per_worker,
                    processes=self.config.processes,
                    dashboard_address=self.config.dashboard_address,
                    # Worker processes leave Ctrl-C to this process; thread workers must not touch it.
                    **({"preload": [WORKER_PRELOAD]} if self.config.processes else {}),
                )
            )
            client = stack.enter_context(Client(cluster))
            logger.debug(
                "local Dask cluster: %d workers × %d threads", workers, self.config.threads_per_worker
            )
            try:
                yield client, client.dashboard_link
            except KeyboardInterrupt:
                # Workers torn down mid-task log pages of heartbeat tracebacks; the user asked for it.
                with contextlib.suppress(Exception):
                    client.run(_mute_dask_logs)
                raise
            finally:
                # Teardown chatter ("worker process still alive after 4 s, killing" on a busy
                # machine) says nothing about the results.
                _mute_dask_logs()


_DASK_LOGGERS = ("distributed", "tornado")


def _mute_dask_logs() -> None:
    """Silence Dask's loggers (in this process, or a worker's) while a local cluster is torn down."""
    for name in _DASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _log_levels() -> dict[str, int]:
    return {name: logging.getLogger(name).level for name in _DASK_LOGGERS}


def _restore_log_levels(levels: dict[str, int]) -> None:
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def run_batch(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    tracking: TrackingConfig | None = None,
    overwrite: bool = False,
    **batch_options: Any,
) -> BatchResult:
    """Plan the positions of ``inputs`` and run them; functional wrapper of :class:`BatchRunner`.

    ``batch_options`` are :class:`BatchConfig` fields (``workers``, ``scheduler`` ...).
    """
    from celltrack.batch.plan import plan_positions

    return BatchRunner(BatchConfig(**batch_options)).run(plan_positions(inputs), out_dir, tracking, overwrite)
