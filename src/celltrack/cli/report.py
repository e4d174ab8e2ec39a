"""``celltrack report RES_DIR --out report.html``: one self-contained HTML page about a result."""

from __future__ import annotations

import argparse

from celltrack.cli.common import add_common_options, example


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a result (metrics, figures, lineages, track table)",
        description="Write one HTML page about RES_DIR (maskTTT.tif + res_track.txt, with tracks.csv and "
        "celltrack.json when present): the run's provenance, with --gt the CTC metrics and the precision "
        "curve, trajectories over the first frame, lineage trees of the largest families, a track-length "
        "histogram and a per-track table. Figures are embedded; the page needs no other file.",
        epilog=example(
            "celltrack report out/01_RES --gt data/Fluo-N2DL-HeLa/01_GT --images data/Fluo-N2DL-HeLa/01 "
            "--out report.html"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("res_dir", metavar="RES_DIR", help="CTC result folder")
    parser.add_argument("--out", required=True, metavar="F.html", help="the HTML file to write")
    parser.add_argument(
        "--gt", metavar="GT_DIR", help="CTC ground truth (NN_GT): adds the metrics table and precision curve"
    )
    parser.add_argument(
        "--images",
        metavar="SEQ_DIR",
        help="the raw movie, for the frame under the trajectories (default: the movie named in "
        "celltrack.json if readable, else a blank frame)",
    )
    parser.add_argument(
        "--families",
        type=int,
        default=4,
        metavar="N",
        help="lineage trees to draw (largest first; default 4)",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=None,
        metavar="N",
        help="rows of the track table (default: all tracks)",
    )
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from celltrack.report import ReportConfig, write_report

    config = ReportConfig(n_families=args.families, max_table_rows=args.max_rows)
    out = write_report(
        args.res_dir, args.out, gt_dir=args.gt, images=args.images, config=config, overwrite=args.overwrite
    )
    print(out)
    return 0
