"""``celltrack info SEQ_DIR``: what a movie holds."""

from __future__ import annotations

import argparse
import json

from celltrack.cli.common import add_common_options, example
from celltrack.io import describe_sequence


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "info",
        help="frames, shape, dtype, ground truth and nuclei per frame of a movie",
        description="Describe a movie: a CTC folder, a multi-page TIFF or a zarr array. For a CTC folder NN, "
        "ground truth in NN_GT / NN_ST beside it is found and summarised.",
        epilog=example("celltrack info data/Fluo-N2DL-HeLa/01"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "seq_dir", metavar="SEQ_DIR", help="CTC sequence folder, (T, Y, X) TIFF or zarr array"
    )
    parser.add_argument("--json", action="store_true", help="print the description as JSON")
    add_common_options(parser, overwrite=False)
    return parser


def run(args: argparse.Namespace) -> int:
    info = describe_sequence(args.seq_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if key == "nuclei_per_frame":
            continue
        print(f"{key:>18}: {value}")
    counts = info.get("nuclei_per_frame")
    if counts:
        print(
            f"{'nuclei per frame':>18}: min {min(counts)}, "
            f"mean {sum(counts) / len(counts):.1f}, max {max(counts)}"
        )
    return 0
