"""Segmentation on held-out data: the default SegNet next to the study SegNet and the classic method.

One table, every method in the same run, on data no shipped model trained on:

* ``S-BSST265 test``: the authors' test split of Kromp et al. 2020 (37 images);
* ``DSB stage1_test``: the 2018 Data Science Bowl's stage-1 test images with their released solution (53);
* ``HeLa 01 t0-15`` and ``SIM+ 01 t0-9``: the first frames of the two CTC movies (DET from the TRA markers of
  every frame, SEG on the frames with gold SEG truth, scored by py-ctcmetrics on exactly those frames; F1
  against the silver truth where there is one, as HeLa's gold SEG labels only some nuclei of a frame);
* ``S-BSST265 all, LOSO``: with ``--loso-model``, a model trained without any S-BSST265 image, on all 79: how
  the recipe transfers to a kind of data it has never seen.

Columns: SEG and DET (CTC definitions; still images through :mod:`celltrack.metrics.segmentation`, which
equals py-ctcmetrics with the truth as markers), F1 at IoU 0.5, the diameter each method worked at against
the true median diameter (``d est/true``: median ratio; ``d ok``: share of images within ±25 %), and seconds
per megapixel of the input (segmentation only, ``--threads`` torch threads). ``auto`` rows measure the
diameter as a user's run does (the default model's size head on the image, or 5 frames spread through a
movie; the classic segmenter's median object for the others); ``true d`` rows are given the true diameter.

For the movies, ``+ temporal`` rows add what ``celltrack segment``/``track`` run after the per-frame step
(noise-blob significance filter, merge split) one at a time, to measure whether each still earns its place on
top of the model (growth to the half-maximum and the rejoin of a nucleus's pieces were measured this way and
with `celltrack track` end to end, and deleted: docs/benchmarks.md).

    python benchmarks/segmentation.py [--data ../shared/data] [--threads 2] [--model default]
        [--loso-model DIR] [--methods default study classic] [--max-images N] [--end-to-end]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch

from celltrack.io import format_track_table, open_sequence, read_gt
from celltrack.io.annotations import AnnotatedImage, read_image_folder
from celltrack.metrics import evaluate
from celltrack.metrics.segmentation import SegmentationCounts, segmentation_counts
from celltrack.models.panoptic import PanopticSegNet
from celltrack.models.registry import load_segmentation_model
from celltrack.models.training import estimate_nucleus_diameter
from celltrack.pipeline.segment import (
    MovieSegmenter,
    SegmentationConfig,
    estimate_diameter,
    measure_diameter,
    significance_filter,
)
from celltrack.segment import MergeSplitConfig
from celltrack.segment.classic import ClassicConfig, ClassicSegmenter
from celltrack.segment.segnet import SegNetSegmenter, SegNetSegmenterConfig

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
Segment = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------- CTC movie subsets
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


def movie_scores(masks: list[np.ndarray], seq_dir: Path, frames: list[int]) -> dict[str, float]:
    """py-ctcmetrics DET and SEG on ``frames``, plus F1 at IoU 0.5 against complete instance truth: the
    silver truth where there is one (HeLa's gold SEG labels only some nuclei of a frame), else the gold."""
    gt_dir = seq_dir.parent / f"{seq_dir.name}_GT"
    with tempfile.TemporaryDirectory() as tmp:
        write_subset_gt(gt_dir, frames, Path(tmp) / "GT")
        write_frame_results(masks, Path(tmp) / "RES")
        metrics = ["DET", "SEG"] if (Path(tmp) / "GT" / "SEG").is_dir() else ["DET"]
        scores = dict(evaluate(Path(tmp) / "RES", Path(tmp) / "GT", metrics=metrics).metrics)
    silver = seq_dir.parent / f"{seq_dir.name}_ST"
    complete = read_gt(silver if (silver / "SEG").is_dir() else gt_dir)
    counts = SegmentationCounts()
    for mask, t in zip(masks, frames, strict=True):
        if t in complete.seg:
            counts += segmentation_counts(mask, complete.read_seg(t))
    scores["F1@0.5"] = counts.f1
    return scores


def true_movie_diameter(seq_dir: Path) -> float:
    """Median equivalent diameter of the gold (else silver) SEG objects of a CTC sequence."""
    for suffix in ("_GT", "_ST"):
        folder = seq_dir.parent / f"{seq_dir.name}{suffix}"
        if (folder / "SEG").is_dir():
            truth = read_gt(folder)
            areas = np.concatenate([np.bincount(truth.read_seg(t).ravel())[1:] for t in sorted(truth.seg)])
            return float(np.median(np.sqrt(4 * areas[areas > 0] / math.pi)))
    return float("nan")


# ---------------------------------------------------------------------------- methods
class Method:
    """A segmentation method: its name, how it measures the diameter, its per-frame function."""

    def __init__(self, name: str, model: object | None) -> None:
        self.name = name
        self.model = model

    def diameter(self, frames: list[np.ndarray]) -> float | None:
        """The diameter a user's run would work at (size head for the default model, classic otherwise)."""
        if isinstance(self.model, PanopticSegNet):
            value = measure_diameter(self.model, frames, count=len(frames)).diameter
        else:
            value = estimate_diameter(frames[len(frames) // 2])
        return float(value) if value is not None and np.isfinite(value) else None

    def segmenter(self, diameter: float | None) -> Segment:
        """Per-frame function at ``diameter``."""
        if self.model is None:
            classic = ClassicConfig(nucleus_diameter=diameter) if diameter else ClassicConfig()
            return ClassicSegmenter(classic).segment
        return SegNetSegmenter(SegNetSegmenterConfig(nucleus_diameter=diameter), self.model).segment


def temporal(masks: list[np.ndarray], images, frames: list[int]) -> list[np.ndarray]:
    """The pipeline's merge split on consecutive frames' masks."""
    config = SegmentationConfig(merge_split=MergeSplitConfig())
    given = iter(masks)
    return list(MovieSegmenter(lambda _: next(given), config).label_frames(images, frames))


def timed(segment: Segment, frames: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Masks and seconds per megapixel of input."""
    segment(frames[0])  # warm-up: one-time allocations are not per-frame cost
    start = time.perf_counter()
    masks = [segment(f) for f in frames]
    seconds = time.perf_counter() - start
    return masks, seconds / (sum(f.size for f in frames) / 1e6)


# ---------------------------------------------------------------------------- held-out sets
def still_rows(set_name: str, images: list[AnnotatedImage], methods: list[Method], scales: list[str]
               ) -> list[dict]:
    rows = []
    for method in methods:
        for scale in scales if isinstance(method.model, PanopticSegNet) else ["auto"]:
            counts, ratios, seconds, pixels = SegmentationCounts(), [], 0.0, 0
            for item in images:
                frame = np.asarray(item.image)
                truth_d = item.diameter
                if not np.isfinite(truth_d):
                    truth_d = estimate_nucleus_diameter(item.mask)
                diameter = truth_d if scale == "true d" else method.diameter([frame])
                segment = method.segmenter(diameter)
                start = time.perf_counter()
                labels = segment(frame)
                seconds += time.perf_counter() - start
                pixels += frame.size
                counts += segmentation_counts(labels, item.mask)
                used = diameter if diameter else (
                    method.model.config.nucleus_diameter if method.model is not None else float("nan")
                )
                ratios.append(used / truth_d)
            ratios_arr = np.asarray(ratios)
            within = float(np.mean(np.abs(np.log(ratios_arr)) < math.log(1.25)))
            rows.append(_row(set_name, f"{method.name} ({scale})", len(images), counts.seg, counts.det,
                             counts.f1, float(np.nanmedian(ratios_arr)), within, seconds / (pixels / 1e6)))
            print(_line(rows[-1]), flush=True)
    return rows


def movie_rows(set_name: str, seq_dir: Path, frames: list[int], methods: list[Method], scales: list[str],
               temporal_variants: bool) -> list[dict]:
    images = open_sequence(seq_dir)
    frame_list = [np.asarray(images[t]) for t in frames]
    spread = [np.asarray(images[t]) for t in np.linspace(0, len(images) - 1, 5).round().astype(int)]
    truth_d = true_movie_diameter(seq_dir)
    rows = []
    for method in methods:
        for scale in scales if isinstance(method.model, PanopticSegNet) else ["auto"]:
            diameter = truth_d if scale == "true d" else method.diameter(spread)
            segment = method.segmenter(diameter)
            masks, s_per_mp = timed(segment, frame_list)
            used = diameter or float("nan")
            label = f"{method.name} ({scale})"
            variants = [(label, masks)]
            if temporal_variants and method.model is not None:
                drop = significance_filter(SegmentationConfig(nucleus_diameter=diameter))
                filtered = [drop(m, f) for m, f in zip(masks, frame_list, strict=True)]
                variants += [
                    (f"{label} + significance", filtered),
                    (f"{label} + merge split", temporal(masks, images, frames)),
                    (f"{label} + all (the pipeline)", temporal(filtered, images, frames)),
                ]
            for name, variant in variants:
                scores = movie_scores(variant, seq_dir, frames)
                rows.append(_row(set_name, name, len(frames), scores.get("SEG"), scores.get("DET"),
                                 scores.get("F1@0.5"), used / truth_d, float(abs(math.log(used / truth_d))
                                                                              < math.log(1.25)), s_per_mp))
                print(_line(rows[-1]), flush=True)
    return rows


def _row(data: str, method: str, n: int, seg, det, f1, ratio, ok, s_per_mp) -> dict:
    return {"held-out set": data, "method": method, "images": n, "SEG": seg, "DET": det, "F1@0.5": f1,
            "d est/true": ratio, "d ok": ok, "s/MP": s_per_mp}


def _line(row: dict) -> str:
    return " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values())


def end_to_end(data: Path, model: str) -> list[dict]:
    """``celltrack track`` on whole movies, scored by py-ctcmetrics."""
    from celltrack.pipeline.track import TrackingConfig, run_tracking

    rows = []
    for name in ("Fluo-N2DL-HeLa", "Fluo-N2DH-SIM+"):
        seq = data / name / "01"
        if not seq.is_dir():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            config = TrackingConfig(segmentation=SegmentationConfig(model=model))
            start = time.perf_counter()
            result = run_tracking(seq, Path(tmp) / "RES", config)
            seconds = time.perf_counter() - start
            scores = evaluate(Path(tmp) / "RES", data / name / "01_GT",
                              metrics=["TRA", "DET", "SEG", "LNK", "CT", "BC(0)"]).metrics
            images = open_sequence(seq)
            mp = len(images) * np.prod(images.frame_shape) / 1e6
            row = {"movie": f"{name}/01", "model": model, **{k: round(v, 3) for k, v in scores.items()},
                   "s": round(seconds, 1), "s/MP": round(seconds / mp, 3), "tracks": result.summary()}
            print(row, flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="default", help="the default-model row: 'default' or a folder")
    parser.add_argument("--loso-model", default=None, help="a model trained without S-BSST265 (LOSO row)")
    parser.add_argument("--methods", nargs="+", default=["default", "study", "classic"],
                        choices=("default", "study", "classic"))
    parser.add_argument("--sets", nargs="+", default=["bsst", "dsb", "hela", "sim"],
                        choices=("bsst", "dsb", "hela", "sim"))
    parser.add_argument("--max-images", type=int, default=None, help="at most this many images per still set")
    parser.add_argument("--no-temporal", action="store_true", help="skip the temporal-correction rows")
    parser.add_argument("--end-to-end", action="store_true", help="also run `celltrack track` on the movies")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    methods = []
    for name in args.methods:
        if name == "classic":
            methods.append(Method("classic", None))
        else:
            methods.append(Method("default" if name == "default" else "study SegNet",
                                  load_segmentation_model(args.model if name == "default" else "study")))
    scales = ["auto", "true d"]
    seg = data / "nuclei-seg"
    rows: list[dict] = []
    if "bsst" in args.sets and (seg / "S-BSST265").is_dir():
        test = [i for i in read_image_folder(seg / "S-BSST265") if i.split == "test"][: args.max_images]
        rows += still_rows("S-BSST265 test", test, methods, scales)
    if "dsb" in args.sets and (seg / "DSB2018-fluo").is_dir():
        dsb = read_image_folder(seg / "DSB2018-fluo")
        test = [i for i in dsb if i.split == "stage1_test"][: args.max_images]
        rows += still_rows("DSB stage1_test", test, methods, scales)
    if "hela" in args.sets and (data / "Fluo-N2DL-HeLa" / "01").is_dir():
        rows += movie_rows("HeLa 01 t0-15", data / "Fluo-N2DL-HeLa" / "01", list(range(16)), methods, scales,
                           not args.no_temporal)
    if "sim" in args.sets and (data / "Fluo-N2DH-SIM+" / "01").is_dir():
        rows += movie_rows("SIM+ 01 t0-9", data / "Fluo-N2DH-SIM+" / "01", list(range(10)), methods, scales,
                           not args.no_temporal)
    if args.loso_model and (seg / "S-BSST265").is_dir():
        everything = read_image_folder(seg / "S-BSST265")[: args.max_images]
        loso = Method("default trained without S-BSST265", load_segmentation_model(args.loso_model))
        rows += still_rows("S-BSST265 all, LOSO", everything, [loso], scales)
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\n{args.threads} torch threads; s/MP = seconds of segmentation per megapixel of input "
          "(diameter measurement excluded).")
    if args.end_to_end:
        print()
        print(pd.DataFrame(end_to_end(data, args.model)).to_string(index=False))


if __name__ == "__main__":
    main()
