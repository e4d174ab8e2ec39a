"""``celltrack export RES_DIR --format F --out PATH``: tracks for TrackMate, Mastodon, GEFF, pandas."""

from __future__ import annotations

import argparse

from celltrack.cli.common import add_common_options, example


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from celltrack.io.export import EXPORT_FORMATS

    parser = subparsers.add_parser(
        "export",
        help="export a result's tracks as TrackMate XML (Fiji, Mastodon), TrackMate CSV, GEFF or a table",
        description="Export the tracks of RES_DIR (tracks.csv, or masks + res_track.txt). Formats: "
        "'trackmate-xml' writes the file Fiji's TrackMate opens with 'Load a TrackMate file' and Mastodon "
        "imports (spots with position, frame, radius, quality and mean intensity; edges; tracks with their "
        "divisions; the movie and its calibration); 'trackmate' writes TrackMate's spots CSV table to --out "
        "and the edges table beside it (spots.csv -> edges.csv); 'geff' writes a GEFF zarr folder "
        "(napari plugins, motile-tracker, TrackMate 8); 'csv'/'parquet' write one row per detection with "
        "track_id and parent_track_id. The calibration (micrometres per pixel, seconds per frame) comes from "
        "the movie's ImageJ/OME-TIFF metadata, else positions stay in pixels and times in frames.",
        epilog=example("celltrack export out/01_RES --format trackmate-xml --out out/tracks.xml")
        + "\n  celltrack export out/01_RES --format geff --out out/tracks.geff",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("res_dir", metavar="RES_DIR", help="CTC result folder")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="output format")
    parser.add_argument("--out", required=True, metavar="PATH", help="output file (zarr folder for geff)")
    movie = parser.add_argument_group("movie (trackmate-xml and geff)")
    movie.add_argument(
        "--images",
        metavar="MOVIE",
        help="the raw movie (default: the one recorded in RES_DIR/celltrack.json); TrackMate opens it "
        "beside the tracks, best as a (T, Y, X) TIFF",
    )
    movie.add_argument(
        "--pixel-size", type=_positive_float, metavar="UM", help="micrometres per pixel (default: metadata)"
    )
    movie.add_argument(
        "--frame-interval", type=_positive_float, metavar="S", help="seconds per frame (default: metadata)"
    )
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from celltrack.io.export import export_result

    paths = export_result(
        args.res_dir,
        args.out,
        args.format,
        overwrite=args.overwrite,
        images=args.images,
        pixel_size=args.pixel_size,
        frame_interval=args.frame_interval,
    )
    for path in paths:
        print(path)
    return 0
