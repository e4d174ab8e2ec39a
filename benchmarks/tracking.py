"""Tracking quality on the CTC training data, next to laptrack, trackpy and a plain Hungarian linker.

For each sequence (HeLa 01, SIM+ 01) two settings are run:

* ``given``: the GT TRA markers are the detections (the CTC "linking on given detections" setting);
* ``e2e``: our own segmentation (``celltrack segment``'s default) provides the detections.

``celltrack+mitosis`` adds RecogNet's mitosis score to every detection (the shipped RecogNet was trained on
80 % of the frames of HeLa 01 and SIM+ 01, so its scores there are optimistic).

Every linker gets the same detections; results are written as CTC folders and scored with
py-ctcmetrics and the Wu precision curve. Prints TRA, DET, SEG, LNK, CT, TF, BC(0), P@20 and
seconds (linking only for the baselines; whole pipeline for ``celltrack`` e2e).

    python benchmarks/tracking.py [--data ../shared/data] [--settings given e2e] [--methods ...] [--tta flips]

``--tta`` sets the SegNet test-time augmentation of the ``e2e`` segmentation (default: as shipped).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from baselines import link_celltrack, link_hungarian, link_laptrack, link_trackpy

from celltrack.graph import TrackGraph
from celltrack.io import detections_from_sequence, open_sequence, read_gt, write_ctc_result
from celltrack.metrics import evaluate
from celltrack.models.segnet import TEST_TIME_AUGMENTATIONS
from celltrack.pipeline.segment import SegmentationConfig, run_segmentation

DATASETS = ("Fluo-N2DL-HeLa", "Fluo-N2DH-SIM+")
METRICS = ("TRA", "DET", "SEG", "LNK", "CT", "TF", "BC(0)", "P@20")


def link_celltrack_mitosis(table: pd.DataFrame, images) -> TrackGraph:
    """celltrack with RecogNet's per-detection mitosis score (``[mitosis] enabled = true`` in ``track``)."""
    from celltrack.link import Linker
    from celltrack.models.recognet import RecogNet, mitosis_scores

    # As `celltrack track` does: the linker measures intensity itself (central disc), RecogNet scores mitosis.
    table = table.drop(columns=["mean_intensity"], errors="ignore")
    table = table.assign(mitosis_score=mitosis_scores(RecogNet.load(), images, table))
    return Linker().link(table, images)


METHODS: dict[str, Callable[[pd.DataFrame, object], TrackGraph]] = {
    "celltrack": link_celltrack,
    "celltrack+mitosis": link_celltrack_mitosis,
    "laptrack": link_laptrack,
    "trackpy": link_trackpy,
    "hungarian": link_hungarian,
}


def run(
    data: Path, settings: list[str], methods: list[str], segmentation: SegmentationConfig | None = None
) -> pd.DataFrame:
    rows = []
    for name in DATASETS:
        root = data / name
        if not (root / "01").is_dir():
            print(f"skip {name}: {root} not found")
            continue
        images = open_sequence(root / "01")
        gt = read_gt(root / "01_GT")
        for setting in settings:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                if setting == "given":
                    labels = gt.tra
                    prep = 0.0
                else:
                    run_segmentation(images, Path(tmp) / "seg", segmentation or SegmentationConfig())
                    labels = open_sequence(Path(tmp) / "seg", prefix="mask")
                    prep = time.perf_counter() - start
                table = detections_from_sequence(labels, images)
                for method in methods:
                    start = time.perf_counter()
                    try:
                        graph = METHODS[method](table, images)
                    except ImportError as err:
                        print(f"skip {method}: {err} (pip install 'celltrack[bench]')")
                        continue
                    seconds = time.perf_counter() - start
                    res = Path(tmp) / f"{method}_RES"
                    write_ctc_result(
                        graph, res, images.frame_shape, len(images), label_source=labels.__getitem__
                    )
                    scores = evaluate(res, root / "01_GT").metrics
                    row = {"data": name, "setting": setting, "method": method}
                    row |= {k: scores.get(k) for k in METRICS}
                    row["divisions"] = len(graph.divisions())
                    row["link s"] = seconds
                    row["segment s"] = prep
                    rows.append(row)
                    print(format_row(row), flush=True)
    return pd.DataFrame(rows)


def format_row(row: dict) -> str:
    cells = []
    for key, value in row.items():
        if isinstance(value, float) and not np.isnan(value):
            cells.append(f"{key} {value:.3f}")
        else:
            cells.append(f"{key} {value}")
    return " | ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    parser.add_argument("--settings", nargs="+", default=["given", "e2e"], choices=["given", "e2e"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--tta", choices=TEST_TIME_AUGMENTATIONS, default=None,
        help="SegNet test-time augmentation for e2e (default: as shipped)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    segmentation = None if args.tta is None else SegmentationConfig(test_time_augmentation=args.tta)
    table = run(Path(args.data), args.settings, args.methods, segmentation)
    if not table.empty:
        print()
        print(
            table.to_markdown(index=False, floatfmt=".3f")
            if _has_tabulate()
            else table.to_string(index=False)
        )


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
