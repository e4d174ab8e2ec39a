"""How much a few annotated images of a new kind of data help: fine-tuning with ``--init``.

A model that never saw a source (by default the leave-one-source-out model trained without S-BSST265) is
fine-tuned on ``--shots`` annotated training images of one *kind* of that source (the manifest columns named
by ``--kind``, by default preparation, magnification and modality: the situation of a user who annotates a
few frames of their own movies) with ``celltrack train segnet --init MODEL --steps N`` (the command a user
runs). Base and fine-tuned models are scored (SEG, DET, F1 at IoU 0.5; automatic diameter, as a user's run)
on the test images of the same kind, and on all other test images (what the narrower model forgets). Every
kind with at least ``--shots`` training images and one test image is a row:

    python benchmarks/finetune.py --base /path/to/segnet_loso_bsst [--shots 5] [--steps 600] [--seed 0]
        [--kind preparation magnification modality]
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
from celltrack.io.annotations import AnnotatedImage, read_image_folder
from celltrack.metrics.segmentation import SegmentationCounts, segmentation_counts
from celltrack.models.registry import load_segmentation_model
from celltrack.pipeline.segment import SegmentationConfig, build_segmenter

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def score(model_path: str | Path, images: list[AnnotatedImage]) -> SegmentationCounts:
    """Pooled counts of a model on annotated images, each segmented hands-off (automatic diameter)."""
    counts = SegmentationCounts()
    config = SegmentationConfig(model=Path(model_path))
    for item in images:
        _, segment = build_segmenter(config, sample=np.asarray(item.image))
        counts += segmentation_counts(segment(np.asarray(item.image)), item.mask)
    return counts


def scores(model_path: str | Path, images: list[AnnotatedImage]) -> str:
    counts = score(model_path, images)
    return f"{counts.seg:.3f} / {counts.det:.3f} / {counts.f1:.3f}"


def fine_tune(base: str, chosen: list[AnnotatedImage], out: Path, args: argparse.Namespace) -> float:
    """Write ``chosen`` as an images/ + labels/ folder, run ``celltrack train segnet --init``; seconds."""
    folder = out.parent / f"{out.name}.data"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for item in chosen:
        name = item.name.split("/")[-1]
        tifffile.imwrite(folder / "images" / f"{name}.tif", item.image)
        tifffile.imwrite(folder / "labels" / f"{name}.tif", item.mask.astype(np.uint16))
    start = time.perf_counter()
    command = ["train", "segnet", "--data", str(folder), "--init", base, "--steps", str(args.steps),
               "--seed", str(args.seed), "--out", str(out), "-q"]
    if args.learning_rate:
        command += ["--learning-rate", str(args.learning_rate)]
    code = celltrack(command)
    if code != 0:
        raise SystemExit(code)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="model folder that never saw the source")
    parser.add_argument("--source", default=str(DEFAULT_DATA / "nuclei-seg" / "S-BSST265"))
    parser.add_argument("--kind", nargs="+", default=["preparation", "magnification", "modality"],
                        help="manifest columns that define a kind of image")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the trainer's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", default=None, help="folder to keep the fine-tuned models in")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_segmentation_model(args.base)  # fail early on a bad folder
    manifest = pd.read_csv(Path(args.source) / "manifest.csv").set_index("name")
    everything = read_image_folder(args.source)

    def kind(item: AnnotatedImage) -> str:
        row = manifest.loc[item.name.split("/")[-1]]
        return ", ".join(str(row[column]) for column in args.kind)

    train = [i for i in everything if i.split == args.train_split]
    test = [i for i in everything if i.split == args.test_split]
    kinds = sorted({kind(i) for i in train})
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in kinds:
            pool = [i for i in train if kind(i) == name]
            same = [i for i in test if kind(i) == name]
            others = [i for i in test if kind(i) != name]
            if len(pool) < args.shots or not same:
                continue
            chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=args.shots, replace=False))]
            out = Path(tmp) / f"tuned_{len(rows)}"
            seconds = fine_tune(args.base, chosen, out, args)
            rows.append({
                "kind": name, "test images": len(same),
                "base: same kind": scores(args.base, same), "tuned: same kind": scores(out, same),
                "base: other kinds": scores(args.base, others), "tuned: other kinds": scores(out, others),
                "train s": round(seconds),
            })
            print(rows[-1], flush=True)
            if args.keep:
                shutil.copytree(out, Path(args.keep) / out.name, dirs_exist_ok=True)
    print()
    print(f"{Path(args.source).name}: {args.shots} training images of a kind, {args.steps} steps; "
          f"SEG / DET / F1@0.5 on its '{args.test_split}' split")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
