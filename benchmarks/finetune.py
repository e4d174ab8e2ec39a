"""How much a few annotated images of a new kind of data help: fine-tuning with ``--init``.

A model that never saw a source (by default the leave-one-source-out model trained without S-BSST265) is
fine-tuned on ``--shots`` annotated images of that source's training split with ``celltrack train segnet
--init MODEL --steps N`` (the command a user runs), and both models are scored on the source's test split
(SEG, DET, F1 at IoU 0.5; automatic diameter, as a user's run):

    python benchmarks/finetune.py --base /path/to/segnet_loso_bsst [--shots 5] [--steps 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch

from celltrack.cli.main import main as celltrack
from celltrack.io.annotations import read_image_folder
from celltrack.metrics.segmentation import SegmentationCounts, segmentation_counts
from celltrack.models.registry import load_segmentation_model
from celltrack.pipeline.segment import SegmentationConfig, build_segmenter

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def score(model_path: str | Path, images: list) -> dict[str, float]:
    """SEG, DET, F1 of a model on annotated images, each segmented hands-off (automatic diameter)."""
    counts = SegmentationCounts()
    config = SegmentationConfig(model=Path(model_path))
    for item in images:
        _, segment = build_segmenter(config, sample=np.asarray(item.image))
        counts += segmentation_counts(segment(np.asarray(item.image)), item.mask)
    return {"SEG": counts.seg, "DET": counts.det, "F1@0.5": counts.f1}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="model folder that never saw the source")
    parser.add_argument("--source", default=str(DEFAULT_DATA / "nuclei-seg" / "S-BSST265"))
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--shots", type=int, nargs="+", default=[5])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the trainer's for --init")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", default=None, help="folder to keep the fine-tuned models in")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_segmentation_model(args.base)  # fail early on a bad folder
    everything = read_image_folder(args.source)
    train = [i for i in everything if i.split == args.train_split]
    test = [i for i in everything if i.split == args.test_split]
    rng = np.random.default_rng(args.seed)
    rows = [{"model": "base (never saw the source)", "images": 0, **score(args.base, test), "train s": 0.0}]
    print(rows[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for shots in args.shots:
            chosen = [train[i] for i in sorted(rng.choice(len(train), size=shots, replace=False))]
            folder = Path(tmp) / f"shots{shots}"
            (folder / "images").mkdir(parents=True)
            (folder / "labels").mkdir()
            for item in chosen:
                name = item.name.split("/")[-1]
                tifffile.imwrite(folder / "images" / f"{name}.tif", item.image)
                tifffile.imwrite(folder / "labels" / f"{name}.tif", item.mask.astype(np.uint16))
            out = Path(tmp) / f"tuned{shots}"
            start = time.perf_counter()
            code = celltrack(["train", "segnet", "--data", str(folder), "--init", args.base, "--steps",
                              str(args.steps), "--seed", str(args.seed), "--out", str(out), "-q",
                              *(["--learning-rate", str(args.learning_rate)] if args.learning_rate else [])])
            if code != 0:
                raise SystemExit(code)
            seconds = time.perf_counter() - start
            lr = f", lr {args.learning_rate:g}" if args.learning_rate else ""
            rows.append({"model": f"fine-tuned on {shots} images ({args.steps} steps{lr})", "images": shots,
                         **score(out, test), "train s": round(seconds, 1)})
            print(rows[-1], flush=True)
            if args.keep:
                shutil.copytree(out, Path(args.keep) / out.name, dirs_exist_ok=True)
    print()
    print(f"{Path(args.source).name}: scored on its '{args.test_split}' split ({len(test)} images)")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
