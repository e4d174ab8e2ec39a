"""``celltrack info SEQ_DIR``: what a movie holds."""

from __future__ import annotations

import argparse
import json

from celltrack.cli.common import add_common_options, example
from celltrack.io import dataset_sequences, describe_sequence, expand_datasets


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "info",
        help="frames, shape, dtype, ground truth and nuclei per frame of a movie",
        description="Describe a movie: a CTC folder, a multi-page TIFF or a zarr array. For a CTC folder NN, "
        "ground truth in NN_GT / NN_ST beside it is found and summarised. A CTC data set folder (01, 02 … "
        "beside their _GT) is described sequence by sequence (--json: a list).",
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
    infos = [describe_sequence(path) for path in expand_datasets([args.seq_dir])]
    if args.json:
        print(json.dumps(infos if dataset_sequences(args.seq_dir) else infos[0], indent=2))
        return 0
    for i, info in enumerate(infos):
        if i:
            print()
        _print_info(info)
    return 0


def _print_info(info: dict) -> None:
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
