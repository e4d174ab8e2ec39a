"""``celltrack show-filters MODEL… --out F.png``: learned conv and correlation filters side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from celltrack.cli.common import add_common_options, example


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "show-filters",
        help="draw the learned conv filters of SegNet/RecogNet and a cf-track run's correlation filters",
        description="Each MODEL is a model folder (SegNet or RecogNet), 'segnet'/'recognet' for the shipped "
        "models, or a cf-track output folder (its filters.npz). One row per conv layer / filter layer, to "
        "see whether a network learned cell-like or abstract features (the study's Figure 4).",
        epilog=example("celltrack show-filters segnet recognet cf_RES --out filters.png"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "models", nargs="+", metavar="MODEL", help="model folder, segnet, recognet or cf-track output"
    )
    parser.add_argument("--out", required=True, metavar="F.png", help="PNG file to write")
    parser.add_argument(
        "--cells", type=int, default=6, help="cells whose correlation filters are drawn (default 6)"
    )
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from celltrack.io import atomic_output_file, check_output
    from celltrack.io.model_folder import read_model_config
    from celltrack.viz.filters import conv_kernels, correlation_filters, filters_figure

    check_output(args.out, args.overwrite)
    panels = []
    for item in args.models:
        path = Path(item)
        if item in ("segnet", "recognet") and not path.exists():
            # 'segnet' = the study network: its 3x3 kernels on the raw image are the ones worth drawing.
            from celltrack.models.segnet import DEFAULT_SEGNET_PATH

            architecture, folder = item, (DEFAULT_SEGNET_PATH if item == "segnet" else None)
        elif (path / "filters.npz").is_file() or path.suffix == ".npz":
            npz = path / "filters.npz" if path.is_dir() else path
            with np.load(npz) as arrays:
                panels += correlation_filters(dict(arrays), cells=args.cells)
            continue
        else:
            architecture, folder = str(read_model_config(path)["architecture"]), path
        if architecture == "segnet":
            from celltrack.models import SegNet

            panels += conv_kernels(SegNet.load(folder), "SegNet")
        elif architecture == "segnet-panoptic":
            from celltrack.models.panoptic import PanopticSegNet

            panels += conv_kernels(PanopticSegNet.load(folder), "SegNet (default)")
        elif architecture == "recognet":
            from celltrack.models import RecogNet

            panels += conv_kernels(RecogNet.load(folder), "RecogNet")
        else:
            raise ValueError(
                f"{path}: unknown architecture {architecture!r}; expected a SegNet or RecogNet folder"
            )
    figure = filters_figure(panels)
    with atomic_output_file(args.out, args.overwrite) as tmp:
        figure.savefig(tmp, format="png")
    print(f"celltrack show-filters: {len(panels)} rows -> {args.out}")
    return 0
