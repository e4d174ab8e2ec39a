"""``celltrack view SEQ_DIR [RES_DIR]``: the movie, masks and lineage in napari (optional extra)."""

from __future__ import annotations

import argparse

from celltrack.cli.common import add_common_options, example


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "view",
        help='open a movie and its tracking result in napari (needs: pip install "celltrack[napari]")',
        description="Open SEQ_DIR (CTC folder, multi-page TIFF or zarr) in napari, read lazily frame by "
        "frame, with the masks of RES_DIR as a labels layer and its lineage as a tracks layer. napari is an "
        'optional extra: pip install "celltrack[napari]".',
        epilog=example("celltrack view data/Fluo-N2DL-HeLa/01 out/01_RES"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("seq_dir", metavar="SEQ_DIR", help="the raw movie")
    parser.add_argument("res_dir", metavar="RES_DIR", nargs="?", default=None, help="CTC result folder")
    parser.add_argument(
        "--tail", type=int, default=30, metavar="N", help="frames of track history drawn (default 30)"
    )
    add_common_options(parser, overwrite=False)
    return parser


def run(args: argparse.Namespace) -> int:
    from celltrack.viz.napari_view import show_in_napari

    show_in_napari(args.seq_dir, args.res_dir, tail_length=args.tail)
    return 0
