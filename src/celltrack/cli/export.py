"""``celltrack export RES_DIR --format F --out PATH``: tracks for TrackMate, GEFF readers or pandas."""

from __future__ import annotations

import argparse

from celltrack.cli.common import add_common_options, example


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a result's tracks as TrackMate CSV, GEFF, or a CSV/parquet track table",
        description="Export the tracks of RES_DIR (tracks.csv, or masks + res_track.txt). Formats: "
        "'trackmate' writes TrackMate's spots table to --out and the edges table beside it "
        "(spots.csv -> edges.csv); 'geff' writes a GEFF zarr folder (needs the optional 'geff' package); "
        "'csv'/'parquet' write one row per detection with track_id and parent_track_id. "
        "Positions are in pixels, times in frames.",
        epilog=example("celltrack export out/01_RES --format trackmate --out out/01_spots.csv"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("res_dir", metavar="RES_DIR", help="CTC result folder")
    parser.add_argument(
        "--format",
        required=True,
        choices=("trackmate", "geff", "csv", "parquet"),
        help="output format",
    )
    parser.add_argument("--out", required=True, metavar="PATH", help="output file (zarr folder for geff)")
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from celltrack.io import check_output
    from celltrack.io.export import export_tracks, read_result

    check_output(args.out, args.overwrite)
    graph = read_result(args.res_dir).graph
    for path in export_tracks(graph, args.out, args.format, overwrite=args.overwrite):
        print(path)
    return 0
