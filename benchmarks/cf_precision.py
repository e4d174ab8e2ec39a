"""cf-track precision as the study measured it: GT tracks present in frame 0, each followed until it ends.

Runs ``celltrack cf-track`` initialised from frame 0 of the GT TRA markers (no detections: a
cell's position is the filter's own estimate, drawn as a disc of its initial size) and prints
P@5/10/20 (``celltrack evaluate --from-frame 0``), cells lost and cell·frames per second.

    python benchmarks/cf_precision.py [--data ../shared/data] [--features raw] [--momentum]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from celltrack.cf import CFConfig
from celltrack.cftrack import CFTrackerConfig
from celltrack.metrics import evaluate
from celltrack.pipeline.cftrack import run_cf_track

DATASETS = ("Fluo-N2DL-HeLa", "Fluo-N2DH-SIM+")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    parser.add_argument("--features", default="raw")
    parser.add_argument("--momentum", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in DATASETS:
        root = Path(args.data) / name
        if not (root / "01").is_dir():
            print(f"skip {name}: {root} not found")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            config = CFTrackerConfig(cf=CFConfig(), momentum=args.momentum)
            start = time.perf_counter()
            # frame 0 of the GT markers gives the targets; the tracker never sees later markers
            init = tmp + "/init.tif"
            import tifffile

            from celltrack.io import read_gt

            tifffile.imwrite(init, read_gt(root / "01_GT").tra[0])
            run = run_cf_track(root / "01", Path(tmp) / "RES", config, init=init, features=args.features)
            seconds = time.perf_counter() - start
            scores = evaluate(Path(tmp) / "RES", root / "01_GT", metrics=["precision"], from_frame=0)
        summary = run.summary()
        rows.append(
            (
                name,
                args.features,
                scores.metrics["P@5"],
                scores.metrics["P@10"],
                scores.metrics["P@20"],
                f"{summary['lost']}/{summary['cells']}",
                summary["cell_frames"] / seconds,
                seconds,
            )
        )
    header = ("data", "features", "P@5", "P@10", "P@20", "lost", "cell·frames/s", "seconds")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for row in rows:
        print(
            " | ".join(
                f"{v:.3f}"
                if isinstance(v, float) and v < 10
                else f"{v:.0f}"
                if isinstance(v, float)
                else str(v)
                for v in row
            )
        )
    if rows:
        print(f"mean P@20: {np.mean([r[4] for r in rows]):.3f} (study: 0.60; goal >= 0.90)")


if __name__ == "__main__":
    main()
