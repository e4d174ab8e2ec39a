"""``celltrack cf-track SEQ_DIR --out OUT``: the study's per-cell correlation-filter tracking run."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable

from celltrack.cli.common import add_common_options, example, progress_for


def _cells(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--cells takes labels like 3,17,42, got {text!r}") from err


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "cf-track",
        help="follow first-frame nuclei with hierarchical correlation filters (the study's tracker)",
        description="Train a correlation filter per nucleus of the first frame on feature layers of its "
        "search window and follow it through the movie, all cells in one batched pass per frame. Writes "
        "a CTC result (scored by 'celltrack evaluate --from-frame 0'), trajectories.csv, filters.npz and "
        "celltrack.json. Divisions are not handled in this mode; use 'celltrack track' for lineages.",
        epilog=example(
            "celltrack cf-track data/Fluo-N2DL-HeLa/01 --out cf_RES "
            "--detections data/Fluo-N2DL-HeLa/01_GT/TRA --cells 3,17,42 --save-video cf.gif"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "seq_dir", metavar="SEQ_DIR", help="CTC sequence folder, (T, Y, X) TIFF or zarr array"
    )
    parser.add_argument("--out", required=True, help="output folder (a CTC result folder plus extras)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--init", metavar="LABELS.tif", help="label image of the first frame: the cells to track"
    )
    source.add_argument(
        "--detections",
        metavar="DIR",
        help="per-frame label images (maskTTT.tif or man_trackTTT.tif): frame 0 gives the "
        "targets, and each tracked cell takes the detection under its position",
    )
    parser.add_argument(
        "--cells",
        type=_cells,
        default=None,
        metavar="L1,L2,...",
        help="track only these first-frame labels (default: all)",
    )
    parser.add_argument(
        "--features",
        default="raw",
        help="feature layers for the filters: raw, segnet or recognet (default raw)",
    )
    parser.add_argument(
        "--cache-features",
        metavar="DIR",
        default=None,
        help="zarr folder caching network feature maps per frame (float16), reused by later runs",
    )
    parser.add_argument(
        "--momentum",
        action="store_true",
        help="place each window at a constant-velocity prediction before detection",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="search-window side in px (default: 40, or 2.5 nucleus diameters if larger)",
    )
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="filter update rate eta (default 0.01)"
    )
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (default cpu)")
    parser.add_argument("--live", action="store_true", help="show the tracking live in a matplotlib window")
    parser.add_argument("--save-video", metavar="FILE.mp4|.gif", help="write the live view to a video file")
    parser.add_argument(
        "--select",
        type=int,
        default=None,
        metavar="LABEL",
        help="first-frame label of the cell highlighted in the live view (default: the first)",
    )
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from celltrack.cf import CFConfig
    from celltrack.cftrack import CFTrackerConfig
    from celltrack.io import check_output
    from celltrack.pipeline.cftrack import run_cf_track

    check_output(args.out, args.overwrite)
    cf = CFConfig() if args.learning_rate is None else CFConfig(learning_rate=args.learning_rate)
    config = CFTrackerConfig(cf=cf, momentum=args.momentum, window=args.window)
    with contextlib.ExitStack() as stack:
        callbacks: list[Callable] = []
        if args.save_video:
            from celltrack.viz import VideoWriter

            check_output(args.save_video, args.overwrite)
            callbacks.append(stack.enter_context(VideoWriter(args.save_video, overwrite=args.overwrite)))
        if args.live:
            from celltrack.viz import LiveViewer

            callbacks.append(stack.enter_context(LiveViewer()))

        def on_frame(state: object) -> None:
            for callback in callbacks:
                callback(state)

        run_result = run_cf_track(
            args.seq_dir,
            args.out,
            config,
            init=args.init,
            detections=args.detections,
            cells=args.cells,
            features=args.features,
            device=args.device,
            overwrite=args.overwrite,
            progress=progress_for(args),
            on_frame=on_frame if callbacks else None,
            selected_label=args.select,
            cache_features=args.cache_features,
        )
    s = run_result.summary()
    print(
        f"celltrack cf-track: {s['cells']} cells, {s['lost']} lost, {s['cell_frames']} cell-frames, "
        f"window {s['window']} px -> {run_result.out_dir}"
    )
    return 0
