"""Segmentation quality and speed: SEG and DET (py-ctcmetrics) and seconds per frame, SegNet vs classic.

Only frames the shipped model did not train on are scored (its ``held_out`` frames, read from the
model folder's config), plus the demo's synthetic movie (all 30 frames; the model never saw it).
They are copied into a temporary CTC ground truth (TRA markers and, where
annotated, SEG masks, renumbered 0..k-1), each predicted object becomes a one-frame track, and
py-ctcmetrics computes DET and SEG on exactly those frames.

    python benchmarks/segmentation.py [--data ../shared/data] [--threads 2] [--model DIR] [--members 1 2]
                                      [--extent default|on|off|both] [--tta none flip flips d4]

``--extent`` sets the SegNet segmenter's half-maximum growth step (``SegNetSegmenterConfig.extent``):
as shipped (``default``), on, off, or both (each SegNet size is run with and without it).
``--tta`` sets its test-time augmentation (``SegNetSegmenterConfig.test_time_augmentation``); several
values are compared (default: as shipped).
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

from celltrack.io import format_track_table, open_sequence, read_gt, write_ctc_dataset
from celltrack.metrics import evaluate
from celltrack.models import SegNet
from celltrack.models.segnet import TEST_TIME_AUGMENTATIONS
from celltrack.pipeline.segment import MovieSegmenter, SegmentationConfig, build_segmenter, estimate_diameter
from celltrack.segment import ExtentConfig
from celltrack.segment.segnet import SegNetSegmenter, SegNetSegmenterConfig
from celltrack.synthetic import SyntheticConfig, generate_movie

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


def ensemble_subset(model: SegNet, n_members: int) -> SegNet:
    """The same model with only its first ``n_members`` members (for the size/speed trade-off)."""
    if not 1 <= n_members <= model.config.n_members:
        raise ValueError(f"--members must be in 1..{model.config.n_members}, got {n_members}")
    subset = SegNet(model.config.model_copy(update={"n_members": n_members}))
    subset.members = torch.nn.ModuleList(list(model.members)[:n_members])
    subset.training_info = model.training_info
    return subset.eval()


def score(masks: list[np.ndarray], gt_dir: Path, frames: list[int]) -> dict[str, float]:
    """DET and (where annotated) SEG of per-frame masks on ``frames`` of a CTC GT folder."""
    with tempfile.TemporaryDirectory() as tmp:
        write_subset_gt(gt_dir, frames, Path(tmp) / "GT")
        write_frame_results(masks, Path(tmp) / "RES")
        metrics = ["DET", "SEG"] if (Path(tmp) / "GT" / "SEG").is_dir() else ["DET"]
        return evaluate(Path(tmp) / "RES", Path(tmp) / "GT", metrics=metrics).metrics


def as_in_the_pipeline(
    masks: list[np.ndarray], images, frames: list[int], pixel_scale: float | None
) -> list[np.ndarray]:
    """What `celltrack segment`/`track` make of consecutive frames' masks: merge split, then growth."""
    given = iter(masks)
    movie = MovieSegmenter(lambda _: next(given), SegmentationConfig(), pixel_scale=pixel_scale)
    return list(movie.label_frames(images, frames))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="SegNet model folder (default: the shipped one)")
    parser.add_argument(
        "--members", type=int, nargs="+", default=None,
        help="ensemble sizes to compare (first N members of the model; default: all of them)",
    )
    parser.add_argument(
        "--extent", choices=("default", "on", "off", "both"), default="default",
        help="SegNet's half-maximum growth step: as shipped, on, off, or both (compared)",
    )
    parser.add_argument(
        "--tta", nargs="+", choices=TEST_TIME_AUGMENTATIONS, default=None,
        help="SegNet test-time augmentation(s) to compare (default: as shipped)",
    )
    args = parser.parse_args()
    shipped = SegNetSegmenterConfig().extent
    augmentations = args.tta or [SegNetSegmenterConfig().test_time_augmentation]
    extents = {
        "default": [shipped], "on": [ExtentConfig()], "off": [None], "both": [None, ExtentConfig()],
    }[args.extent]
    torch.set_num_threads(args.threads)
    model = SegNet.load(args.model)
    sizes = args.members or [model.config.n_members]
    held_out = model.training_info.get("data", {}).get("held_out", {})
    rows = []
    with tempfile.TemporaryDirectory() as synthetic_dir:
        # The demo's synthetic movie (touching nuclei, exact GT): never part of the shipped model's training.
        demo = generate_movie(SyntheticConfig(frames=30, height=256, width=256, nuclei=30, seed=0))
        write_ctc_dataset(demo.images, demo.labels, demo.markers, demo.tracks, Path(synthetic_dir) / "demo")
        sources = [(name, Path(args.data) / name, held_out.get(f"{name}/01", [])) for name in DATASETS]
        sources.append(("synthetic (demo)", Path(synthetic_dir) / "demo", list(range(len(demo.images)))))
        for name, root, frames in sources:
            if not (root / "01").is_dir() or not frames:
                print(f"skip {name}: no data at {root} or no held-out frames recorded in the model")
                continue
            images = open_sequence(root / "01")
            sample = images[len(images) // 2]
            diameter = estimate_diameter(sample)
            methods = [
                (
                    f"segnet x{n}" + (" + extent" if extent is not None else "")
                    + (f" + tta {tta}" if tta != "none" else ""),
                    n, extent, tta,
                )
                for n in sizes for extent in extents for tta in augmentations
            ] + [("classic", 0, None, "none")]
            for method, n_members, extent, tta in methods:
                pixel_scale = None
                if n_members:
                    subset = ensemble_subset(model, n_members)
                    segnet_config = SegNetSegmenterConfig(
                        nucleus_diameter=diameter, extent=extent, test_time_augmentation=tta
                    )
                    segmenter = SegNetSegmenter(segnet_config, subset)
                    segment = segmenter.segment
                    # The pipeline grows SegNet objects after the merge split (not when grown already).
                    pixel_scale = segmenter.pixel_scale if extent is None else None
                else:
                    classic = SegmentationConfig(method="classic", nucleus_diameter=diameter)
                    _, segment = build_segmenter(classic)
                segment(images[frames[0]])  # warm-up: one-time allocations are not per-frame cost
                start = time.perf_counter()
                masks = [segment(images[t]) for t in frames]
                seconds = (time.perf_counter() - start) / len(frames)
                variants = [(method, masks)]
                if np.all(np.diff(frames) == 1):
                    # What `celltrack segment` and `track` write: frames in order, merged nuclei split,
                    # SegNet objects then grown to their half-maximum.
                    variants.append(
                        (f"{method} + pipeline", as_in_the_pipeline(masks, images, frames, pixel_scale))
                    )
                for label, variant in variants:
                    scores = score(variant, root / "01_GT", frames)
                    rows.append(
                        {
                            "data": name,
                            "method": label,
                            "frames": len(frames),
                            "SEG": scores.get("SEG"),
                            "DET": scores.get("DET"),
                            "s/frame": seconds,
                            "frame": "x".join(map(str, images.frame_shape)),
                        }
                    )
                    print(f"{name} {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                          + f", {seconds:.3f} s/frame", flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        f"\nSegNet: model with {model.config.n_members} members (segnet xN = its first N; + extent = with "
        f"the half-maximum growth step; + tta = probabilities averaged over flips/transposes), "
        f"{args.threads} threads. Goals (real data): SEG >= 0.90, "
        "DET >= 0.99, <= 1 s per 700x1100 frame."
    )


if __name__ == "__main__":
    main()
