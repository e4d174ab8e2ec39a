"""``celltrack batch INPUT… --out DIR``: track many positions as Dask tasks, resumably."""

from __future__ import annotations

import argparse
import importlib.util
import logging

from celltrack.cli.common import add_common_options, example

#: Exit code when the run finished but some positions failed (bad input is 2, as everywhere).
EXIT_POSITIONS_FAILED = 1

logger = logging.getLogger(__name__)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "batch",
        help="track many positions (fields of view) in parallel on Dask; resumable",
        description="Segment and track every position (a CTC sequence folder, a (T, Y, X) TIFF or a zarr "
        "array; globs allowed; a CTC data set folder stands for its sequences 01, 02 …, named DATASET_01 …) "
        "as one Dask task, on a local cluster or on an existing one (--scheduler). "
        "Each position goes to DIR/<name>/ (CTC result, tracks.csv, celltrack.json) and is done once its "
        "DONE.json marker exists: a rerun skips done positions and retries the others. A failing position "
        "is reported and does not stop the rest. DIR/summary.csv and a table sum the run up; the exit "
        "code is 1 when a position failed.",
        epilog=example("celltrack batch 'experiment/pos*.tif' --out results --workers 2")
        + "\n  celltrack batch 'data/*/01' --out results --scheduler tcp://scheduler-host:8786",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="CTC sequence folders or data sets, (T, Y, X) TIFFs or zarr arrays; quote globs to let "
        "celltrack expand them",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="batch output folder (created)")
    parser.add_argument("--config", metavar="FILE.toml", help="pipeline configuration for every position")
    dask = parser.add_argument_group("Dask")
    dask.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="existing Dask scheduler, e.g. tcp://host:8786 (default: a local cluster on this machine); "
        "inputs and --out must be reachable under the same paths by its workers",
    )
    dask.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="local workers (default: CPU cores, at most one per position to process)",
    )
    dask.add_argument("--device", default="cpu", help="auto, cpu or cuda for every task (default cpu)")
    dask.add_argument(
        "--threads-per-worker",
        type=_positive_int,
        default=1,
        metavar="N",
        help="threads per worker, also torch's thread count in each task (default 1)",
    )
    dask.add_argument(
        "--threads-only",
        action="store_true",
        help="run local workers as threads of this process instead of separate processes",
    )
    dask.add_argument(
        "--dashboard-address",
        default=":8787",
        metavar="HOST:PORT",
        help="dashboard of the local cluster (default :8787; :0 picks a free port)",
    )
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from celltrack.batch import BatchConfig, BatchRunner, format_summary, plan_positions
    from celltrack.pipeline.track import load_config

    positions = plan_positions(args.inputs, exclude=[args.out])
    tracking = load_config(args.config)
    if args.scheduler and (args.workers or args.threads_only):
        logger.warning("--workers/--threads-only only apply to a local cluster; ignored with --scheduler")
    runner = BatchRunner(
        BatchConfig(
            workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            device=args.device,
            scheduler=args.scheduler,
            processes=not args.threads_only,
            dashboard_address=args.dashboard_address,
        )
    )
    total = len(positions)
    settled = 0
    print(f"celltrack batch: {total} positions -> {args.out}", flush=True)

    def on_start(dashboard: str | None) -> None:
        where = args.scheduler or "local cluster"
        hint = ""
        if not args.scheduler and importlib.util.find_spec("bokeh") is None:
            hint = "  (install bokeh>=3.1 for the live dashboard)"
        print(f"  dashboard {dashboard or 'not available'}  [{where}]{hint}", flush=True)

    def on_result(row: dict) -> None:
        nonlocal settled
        settled += 1
        if not args.quiet:
            note = f": {row['error']}" if row["status"] == "failed" else ""
            print(f"  [{settled}/{total}] {row['position']} {row['status']}{note}", flush=True)

    result = runner.run(positions, args.out, tracking, args.overwrite, on_start=on_start, on_result=on_result)
    print(format_summary(result.rows))
    print(f"  summary   {result.summary_path}")
    return EXIT_POSITIONS_FAILED if result.failed else 0
