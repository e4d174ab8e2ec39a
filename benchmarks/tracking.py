"""Tracking quality per source, celltrack next to laptrack, btrack, trackpy and a plain Hungarian linker.

Sources: HeLa 01 and SIM+ 01 (``../shared/data``), and the synthetic movies made hard on purpose
(``celltrack.synthetic.hard_movie`` seed 0: ``dense`` > 300 nuclei per frame, ``transient`` border objects
that show for a frame or two, ``sparse`` 20 nuclei with rare divisions), written as CTC folders. Two
settings:

* ``given``: the GT TRA markers are the detections (the CTC "linking on given detections" setting);
* ``e2e``: our own segmentation (``celltrack segment``'s default) provides the detections (real data only).

Every linker gets the same detections; results are written as CTC folders and scored with py-ctcmetrics
and the Wu precision curve. The ``tuned on`` column says which movies each method's learned parts and
defaults were chosen on, ``tested on`` the movie scored:

* ``celltrack``: the shipped classifiers, trained on HeLa 01, SIM+ 01 and synthetic movies of other seeds
  (so in-sample on HeLa 01 and SIM+ 01), and the defaults cross-validated across them
  (``benchmarks/linking_cv.py``);
* ``celltrack (held out)``: the same linker with both classifiers retrained without the tested movie's
  source (HeLa 01, SIM+ 01, or all synthetic movies): the honest number for a movie never seen;
* ``celltrack+mitosis``: with RecogNet's mitosis score (trained on 80 % of HeLa 01 and SIM+ 01 frames);
* peers: their search radius from this movie's measured displacement and nucleus size (``baselines.py``).

    python benchmarks/tracking.py [--data ../shared/data] [--settings given e2e] [--methods ...]
                                  [--sources ...] [--tta flips] [--cache-dir DIR]
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
from baselines import link_btrack, link_celltrack, link_hungarian, link_laptrack, link_trackpy

from celltrack.graph import TrackGraph
from celltrack.io import detections_from_sequence, open_sequence, read_gt, write_ctc_dataset, write_ctc_result
from celltrack.metrics import evaluate
from celltrack.models.segnet import TEST_TIME_AUGMENTATIONS
from celltrack.pipeline.segment import SegmentationConfig, run_segmentation

REAL = {"HeLa 01": "Fluo-N2DL-HeLa", "SIM+ 01": "Fluo-N2DH-SIM+"}
SYNTHETIC = {"synthetic dense": "dense", "synthetic transient": "transient", "synthetic sparse": "sparse"}
METRICS = ("TRA", "DET", "SEG", "LNK", "CT", "TF", "BC(0)", "P@20")
SHIPPED = "HeLa 01, SIM+ 01, synthetic (seeds 1-3)"
PEERS = "none (radius from this movie)"


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
    "celltrack (held out)": link_celltrack,  # with held-out classifiers, see held_out_linker
    "celltrack+mitosis": link_celltrack_mitosis,
    "laptrack": link_laptrack,
    "btrack": link_btrack,
    "trackpy": link_trackpy,
    "hungarian": link_hungarian,
}


def group_of(name: str) -> str:
    return "synthetic" if name.startswith("synthetic") else name


def held_out_linker(name: str, cache_dir: Path) -> Callable[[pd.DataFrame, object], TrackGraph]:
    """celltrack with both classifiers trained without ``name``'s source group."""
    import event_models

    from celltrack.link import Linker

    models = {}
    for kind in ("division", "join"):
        data = event_models.examples(kind, cache_dir / f"{kind}_examples.pkl")
        keep = lambda n: event_models.group_of(n) != group_of(name)  # noqa: E731
        trained_on = sorted({n for n, _ in data if keep(n)})
        models[f"{kind}_model"] = event_models.fit(kind, data, keep, trained_on)

    def link(table: pd.DataFrame, images) -> TrackGraph:
        return Linker(**models).link(table.drop(columns=["mean_intensity"], errors="ignore"), images)

    return link


def tuned_on(method: str, name: str) -> str:
    if method == "celltrack":
        return SHIPPED + (" (in-sample)" if name in REAL else "")
    if method == "celltrack (held out)":
        return f"all but {group_of(name)}"
    if method == "celltrack+mitosis":
        return SHIPPED + "; RecogNet: HeLa 01, SIM+ 01"
    return PEERS


def sources(data: Path, names: list[str], tmp: Path) -> list[tuple[str, Path]]:
    """(name, folder holding 01 and 01_GT) of every source present."""
    from celltrack.synthetic import hard_movie

    out = []
    for name in names:
        if name in REAL:
            root = data / REAL[name]
            if not (root / "01").is_dir():
                print(f"skip {name}: {root} not found")
                continue
            out.append((name, root))
        else:
            movie = hard_movie(SYNTHETIC[name], seed=0)
            root = tmp / SYNTHETIC[name]
            write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, root)
            out.append((name, root))
    return out


def run(
    data: Path,
    settings: list[str],
    methods: list[str],
    names: list[str],
    cache_dir: Path,
    segmentation: SegmentationConfig | None = None,
) -> pd.DataFrame:
    rows = []
    with tempfile.TemporaryDirectory() as movies:
        for name, root in sources(data, names, Path(movies)):
            images = open_sequence(root / "01")
            gt = read_gt(root / "01_GT")
            for setting in settings:
                if setting == "e2e" and name not in REAL:
                    continue
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
                        if method == "celltrack+mitosis" and name not in REAL:
                            continue
                        linker = METHODS[method]
                        if method == "celltrack (held out)":
                            linker = held_out_linker(name, cache_dir)
                        start = time.perf_counter()
                        try:
                            graph = linker(table, images)
                        except ImportError as err:
                            print(f"skip {method}: {err} (pip install 'celltrack[bench]', btrack==0.7.0)")
                            continue
                        seconds = time.perf_counter() - start
                        res = Path(tmp) / f"{method}_RES".replace(" ", "_")
                        write_ctc_result(
                            graph, res, images.frame_shape, len(images), label_source=labels.__getitem__
                        )
                        scores = evaluate(res, root / "01_GT").metrics
                        row = {
                            "tested on": name,
                            "setting": setting,
                            "method": method,
                            "tuned on": tuned_on(method, name),
                        }
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
    parser.add_argument(
        "--sources", nargs="+", default=[*REAL, *SYNTHETIC], choices=[*REAL, *SYNTHETIC]
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="folder keeping the classifiers' training examples between runs (default: collected anew)",
    )
    parser.add_argument(
        "--tta", choices=TEST_TIME_AUGMENTATIONS, default=None,
        help="SegNet test-time augmentation for e2e (default: as shipped)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    segmentation = None if args.tta is None else SegmentationConfig(test_time_augmentation=args.tta)
    with tempfile.TemporaryDirectory() as scratch:
        cache_dir = Path(args.cache_dir) if args.cache_dir else Path(scratch)
        table = run(Path(args.data), args.settings, args.methods, args.sources, cache_dir, segmentation)
    if not table.empty:
        print()
        for setting, part in table.groupby("setting", sort=False):
            print(f"setting: {setting}")
            shown = part.drop(columns=["setting"])
            print(
                shown.to_markdown(index=False, floatfmt=".3f")
                if _has_tabulate()
                else shown.to_string(index=False)
            )


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
