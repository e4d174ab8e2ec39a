"""``celltrack demo``: the main job on built-in data — synthesise, track, evaluate."""

from __future__ import annotations

import argparse

from celltrack.cli.common import add_common_options, example, progress_for


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="track a synthetic movie end to end and score it against its exact ground truth",
        description="Generate a synthetic nucleus movie, segment and track it with the best pipeline "
        "celltrack has, evaluate it (CTC metrics + precision curve) and write everything to --out.",
        epilog=example("celltrack demo --out celltrack-demo"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="celltrack-demo", help="output folder (default celltrack-demo)")
    parser.add_argument("--frames", type=int, default=30, help="frames of the synthetic movie (default 30)")
    parser.add_argument("--size", type=int, default=256, help="frame size in px (default 256)")
    parser.add_argument("--nuclei", type=int, default=30, help="nuclei in the first frame (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from celltrack.pipeline.demo import run_demo
    from celltrack.synthetic import SyntheticConfig

    movie = SyntheticConfig(
        frames=args.frames, height=args.size, width=args.size, nuclei=args.nuclei, seed=args.seed
    )
    result = run_demo(args.out, movie, overwrite=args.overwrite, progress=progress_for(args))
    keys = ["TRA", "DET", "LNK", "SEG", "CT", "TF", "BC(0)", "P@5", "P@10", "P@20"]
    scores = "  ".join(f"{k} {result.metrics[k]:.3f}" for k in keys if result.metrics.get(k) is not None)
    s = result.summary
    print(f"celltrack demo: {s['frames']} frames, {s['tracks']} tracks, {s['divisions']} divisions")
    print(f"  scores   {scores}")
    print(f"  results  {result.res_dir}")
    print(f"  metrics  {result.metrics_file}")
    print(f"  plot     {result.plot_file}")
    return 0
