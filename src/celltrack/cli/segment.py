"""``celltrack segment SEQ_DIR --out DIR``: per-frame nucleus label images."""

from __future__ import annotations

import argparse

from celltrack.cli.common import add_common_options, example, progress_for


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "segment",
        help="segment nuclei in every frame: maskTTT.tif label images",
        description="Segment every frame with SegNet (the shipped model unless --model is given) or the "
        "classic no-model method (smoothing, log-Otsu threshold, distance-transform watershed). Objects not "
        "significantly brighter than their surroundings are dropped; frames are then corrected in order "
        "against the previous one (merged nuclei cut apart).",
        epilog=example("celltrack segment data/Fluo-N2DL-HeLa/01 --out 01_SEG --method segnet"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "seq_dir", metavar="SEQ_DIR", help="CTC sequence folder, (T, Y, X) TIFF or zarr array"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for maskTTT.tif label images")
    parser.add_argument(
        "--model", metavar="MODEL",
        help="'default' (the shipped generalist), 'study' (the study's 5-layer network) or a model folder "
        "from `celltrack train segnet`",
    )
    parser.add_argument(
        "--method",
        choices=("segnet", "classic"),
        default="segnet",
        help="segmentation method (default segnet)",
    )
    parser.add_argument(
        "--nucleus-diameter",
        type=float,
        default=None,
        metavar="PX",
        help="typical nucleus diameter in this movie; rescales the input to the model's scale "
        "(default: measured by the model on frames spread through the movie; a warning says when unsure)",
    )
    parser.add_argument(
        "--no-merge-split",
        action="store_true",
        help="no temporal correction (default: an object holding two nuclei of the previous frame is cut "
        "between them)",
    )
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (default cpu)")
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from celltrack.io import check_output
    from celltrack.pipeline.segment import SegmentationConfig, run_segmentation
    from celltrack.pipeline.track import resolve_device
    from celltrack.segment import MergeSplitConfig

    check_output(args.out, args.overwrite)
    config = SegmentationConfig(
        method=args.method,
        model=args.model,
        nucleus_diameter=args.nucleus_diameter if args.nucleus_diameter is not None else "auto",
        merge_split=MergeSplitConfig(enabled=not args.no_merge_split),
    )
    out = run_segmentation(
        args.seq_dir,
        args.out,
        config,
        overwrite=args.overwrite,
        device=str(resolve_device(args.device)),
        progress=progress_for(args),
    )
    print(f"celltrack segment: label images in {out}")
    return 0
