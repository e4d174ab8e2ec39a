"""``celltrack evaluate RES_DIR GT_DIR``: CTC metrics and the precision curve of a result."""

from __future__ import annotations

import argparse
import json

from celltrack.cli.common import add_common_options, example


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a CTC result folder against ground truth (TRA, DET, LNK, CT, TF, BC, CCA, SEG, P@k)",
        description="Score RES_DIR (maskTTT.tif + res_track.txt) against GT_DIR (NN_GT with TRA/ and "
        "optionally SEG/) with py-ctcmetrics and the Wu et al. 2013 precision curve (P@5, P@10, P@20).",
        epilog=example(
            "celltrack evaluate out/01_RES data/Fluo-N2DL-HeLa/01_GT --json scores.json --plot precision.png"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("res_dir", metavar="RES_DIR", help="CTC result folder")
    parser.add_argument("gt_dir", metavar="GT_DIR", help="CTC ground-truth folder (NN_GT)")
    parser.add_argument(
        "--json", metavar="F", help="write all scores with their provenance to this JSON file"
    )
    parser.add_argument("--plot", metavar="F.png", help="write the precision curve (0-50 px) to this PNG")
    parser.add_argument(
        "--from-frame",
        type=int,
        metavar="N",
        default=None,
        help="precision curve over the GT cells present in frame N, each followed until it ends "
        "(the protocol for a tracker initialised on frame N)",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        metavar="NAME",
        default=None,
        help="py-ctcmetrics names and/or 'precision' (default: all that the GT supports)",
    )
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from celltrack.io import atomic_output_file, check_output
    from celltrack.metrics import evaluate, plot_precision_curve

    for target in (args.json, args.plot):
        if target:
            check_output(target, args.overwrite)
    metrics = args.metrics
    if args.from_frame is not None and metrics is not None and "precision" not in metrics:
        metrics = [*metrics, "precision"]
    result = evaluate(args.res_dir, args.gt_dir, metrics=metrics, from_frame=args.from_frame)
    order = ["TRA", "DET", "LNK", "SEG", "CT", "TF", "BC(0)", "CCA", "P@5", "P@10", "P@20"]
    shown = [k for k in order if result.metrics.get(k) is not None]
    width = max(len(k) for k in shown) if shown else 0
    for key in shown:
        print(f"{key:>{width}}  {result.metrics[key]:.4f}")
    if args.json:
        with atomic_output_file(args.json, args.overwrite) as tmp:
            tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    if args.plot:
        plot_precision_curve(result, args.plot, overwrite=args.overwrite)
    return 0
