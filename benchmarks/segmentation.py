"""Segmentation quality and speed: SEG and DET (py-ctcmetrics) and seconds per frame, SegNet vs classic.

Only frames the shipped model did not train on are scored (its ``held_out`` frames, read from the
model folder's config). They are copied into a temporary CTC ground truth (TRA markers and, where
annotated, SEG masks, renumbered 0..k-1), each predicted object becomes a one-frame track, and
py-ctcmetrics computes DET and SEG on exactly those frames.

    python benchmarks/segmentation.py [--data ../shared/data] [--threads 2] [--members N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch

from celltrack.io import format_track_table, open_sequence, read_gt
from celltrack.metrics import evaluate
from celltrack.models import SegNet
from celltrack.pipeline.segment import SegmentationConfig, build_segmenter

DATASETS = ("Fluo-N2DL-HeLa", "Fluo-N2DH-SIM+")


def write_subset_gt(gt_dir: Path, frames: list[int], out: Path) -> None:
    """A CTC GT folder holding only ``frames`` (renumbered), for frame-wise DET/SEG."""
    gt = read_gt(gt_dir)
    (out / "TRA").mkdir(parents=True)
    spans: dict[int, list[int]] = {}
    for new, t in enumerate(frames):
        markers = gt.tra[t]
        tifffile.imwrite(out / "TRA" / f"man_track{new:03d}.tif", markers)
        for label in np.unique(markers[markers > 0]).tolist():
            spans.setdefault(label, [new, new])[1] = new
    table = pd.DataFrame(
        [(k, a, b, 0) for k, (a, b) in sorted(spans.items())], columns=["label", "begin", "end", "parent"]
    )
    (out / "TRA" / "man_track.txt").write_text(format_track_table(table))
    seg = [(new, t) for new, t in enumerate(frames) if t in gt.seg]
    if seg:
        (out / "SEG").mkdir()
        for new, t in seg:
            tifffile.imwrite(out / "SEG" / f"man_seg{new:03d}.tif", gt.read_seg(t))


def write_frame_results(masks: list[np.ndarray], out: Path) -> None:
    """Every object of every frame as its own one-frame track (DET/SEG ignore links)."""
    out.mkdir(parents=True)
    rows, offset = [], 0
    for t, labels in enumerate(masks):
        present = np.unique(labels[labels > 0])
        lut = np.zeros(int(labels.max()) + 1, np.uint32)
        lut[present] = np.arange(offset + 1, offset + 1 + len(present))
        rows += [(int(v), t, t, 0) for v in lut[present]]
        offset += len(present)
        tifffile.imwrite(
            out / f"mask{t:03d}.tif", lut[labels].astype(np.uint16 if offset < 65535 else np.uint32)
        )
    (out / "res_track.txt").write_text(
        format_track_table(pd.DataFrame(rows, columns=["label", "begin", "end", "parent"]))
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="SegNet model folder (default: the shipped one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = SegNet.load(args.model)
    held_out = model.training_info.get("data", {}).get("held_out", {})
    rows = []
    for name in DATASETS:
        root = Path(args.data) / name
        frames = held_out.get(f"{name}/01", [])
        if not (root / "01").is_dir() or not frames:
            print(f"skip {name}: no data at {root} or no held-out frames recorded in the model")
            continue
        images = open_sequence(root / "01")
        sample = images[len(images) // 2]
        for method in ("segnet", "classic"):
            config = SegmentationConfig(method=method, model=args.model)
            _, segment = build_segmenter(config, sample=sample)
            segment(images[frames[0]])  # warm-up: one-time allocations are not per-frame cost
            start = time.perf_counter()
            masks = [segment(images[t]) for t in frames]
            seconds = (time.perf_counter() - start) / len(frames)
            with tempfile.TemporaryDirectory() as tmp:
                write_subset_gt(root / "01_GT", frames, Path(tmp) / "GT")
                write_frame_results(masks, Path(tmp) / "RES")
                metrics = ["DET", "SEG"] if (Path(tmp) / "GT" / "SEG").is_dir() else ["DET"]
                scores = evaluate(Path(tmp) / "RES", Path(tmp) / "GT", metrics=metrics).metrics
            rows.append(
                {
                    "data": name,
                    "method": method,
                    "frames": len(frames),
                    "SEG": scores.get("SEG"),
                    "DET": scores.get("DET"),
                    "s/frame": seconds,
                    "frame": "x".join(map(str, images.frame_shape)),
                }
            )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        f"\nSegNet ensemble: {model.config.n_members} members, {args.threads} threads. Goals (real data): "
        "SEG >= 0.90, DET >= 0.99, <= 1 s per 700x1100 frame."
    )


if __name__ == "__main__":
    main()
