"""``celltrack track SEQ_DIR --out RES_DIR``: segment (or take detections), link with divisions, write CTC."""

from __future__ import annotations

import argparse

from celltrack.cli.common import add_common_options, example, progress_for


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "track",
        help="segment and track a movie: CTC result, track table with lineage, run record",
        description="The main pipeline: nuclei are segmented (or read from --detections), linked frame to "
        "frame by global assignment with correlation-filter appearance and motion costs, divisions and "
        "gaps are resolved, and a temporally global pass joins segments. RES_DIR receives maskTTT.tif + "
        "res_track.txt (CTC), tracks.csv (lineage table) and celltrack.json (config, versions, timings).",
        epilog=example(
            "celltrack track data/Fluo-N2DL-HeLa/01 --out 01_RES --detections data/Fluo-N2DL-HeLa/01_GT/TRA"
        )
        + "\n  celltrack track movie.tif --out movie_RES --config tracking.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "seq_dir", metavar="SEQ_DIR", help="CTC sequence folder, (T, Y, X) TIFF or zarr array"
    )
    parser.add_argument("--out", required=True, metavar="RES_DIR", help="result folder to create")
    parser.add_argument(
        "--detections",
        metavar="DIR",
        help="label images to link instead of segmenting (maskTTT.tif or man_trackTTT.tif)",
    )
    parser.add_argument(
        "--model", metavar="MODEL",
        help="segmentation model: 'default' (the shipped generalist), 'study' (the study's 5-layer network) "
        "or a model folder from `celltrack train segnet`",
    )
    parser.add_argument(
        "--nucleus-diameter", type=float, default=None, metavar="PX",
        help="typical nucleus diameter in this movie (default: measured by the model on frames spread "
        "through the movie; a warning says when it is unsure)",
    )
    parser.add_argument(
        "--config", metavar="FILE.toml", help="pipeline configuration (README, section Configuration)"
    )
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (default cpu)")
    parser.add_argument(
        "--table",
        default="tracks.csv",
        metavar="NAME",
        help="track table file name inside RES_DIR: .csv or .parquet (default tracks.csv)",
    )
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from celltrack.io import check_output
    from celltrack.pipeline.track import load_config, run_tracking

    check_output(args.out, args.overwrite)
    overrides = []
    if args.model:
        overrides.append(("segmentation.model", args.model))
    if args.nucleus_diameter is not None:
        overrides.append(("segmentation.nucleus_diameter", args.nucleus_diameter))
    config = load_config(args.config, overrides)
    result = run_tracking(
        args.seq_dir,
        args.out,
        config,
        detections=args.detections,
        overwrite=args.overwrite,
        progress=progress_for(args),
        device=args.device,
        table_name=args.table,
    )
    s = result.summary()
    print(
        f"celltrack track: {s['frames']} frames, {s['detections']} detections, {s['tracks']} tracks, "
        f"{s['divisions']} divisions -> {result.out_dir}"
    )
    return 0
