"""``celltrack synth OUT_DIR``: write a synthetic movie with exact ground truth in CTC layout."""

from __future__ import annotations

import argparse
import logging

from celltrack.cli.common import add_common_options, example

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic nucleus movie with exact ground truth (CTC layout)",
        description="Generate a seeded synthetic fluorescent-nucleus movie (moving, dividing, dying, "
        "entering and leaving nuclei, bleaching, noise, blur) and write OUT_DIR/01 (raw tTTT.tif) and "
        "OUT_DIR/01_GT (TRA markers + man_track.txt, SEG masks).",
        epilog=example("celltrack synth synthetic-movie --frames 40 --size 256 --nuclei 40 --seed 1"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to create")
    parser.add_argument("--frames", type=int, default=30, help="number of frames (default 30)")
    parser.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=[256],
        metavar="PX",
        help="frame size: one value for a square frame, or HEIGHT WIDTH (default 256)",
    )
    parser.add_argument("--nuclei", type=int, default=30, help="nuclei in the first frame (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same movie (default 0)")
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from celltrack.io import check_output, write_ctc_dataset
    from celltrack.synthetic import SyntheticConfig, generate_movie

    if len(args.size) not in (1, 2):
        raise ValueError(f"--size takes one or two values, got {len(args.size)}")
    height, width = (args.size * 2)[:2]
    check_output(args.out_dir, args.overwrite)
    config = SyntheticConfig(
        frames=args.frames, height=height, width=width, nuclei=args.nuclei, seed=args.seed
    )
    movie = generate_movie(config)
    out = write_ctc_dataset(
        movie.images, movie.labels, movie.markers, movie.tracks, args.out_dir, overwrite=args.overwrite
    )
    n_div = len(set(movie.tracks[movie.tracks[:, 3] > 0, 3].tolist()))
    logger.info(
        "wrote %s: %d frames %dx%d, %d tracks, %d divisions",
        out,
        args.frames,
        height,
        width,
        len(movie.tracks),
        n_div,
    )
    print(out)
    return 0
