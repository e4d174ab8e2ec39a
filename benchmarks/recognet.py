"""RecogNet features for cf-track, chosen by cross-validation: chosen on one movie, tested on the others.

    python benchmarks/recognet.py [--data ../shared/data] [--model FOLDER] [--baseline-model FOLDER]
                                  [--candidates all|default] [--threads 1] [--crops]

Every candidate feature set (layers, layer weights, per-window normalisation) of the model runs
``cf-track`` as a user would (``celltrack cf-track SEQ --detections NN_GT/TRA --features recognet``: GT
markers of frame 0 are the targets, each tracked cell takes the detection under it) on

* Fluo-N2DL-HeLa 01 and Fluo-N2DH-SIM+ 01 (scored from frame 0 by P@5/10/20, the study's protocol);
* HeLa 01 from frame 60 (the nuclei present then, about 2.5 times as many as in frame 0, followed to the
  end): a denser proxy for unseen dense HeLa movies (not an unseen movie: the network was fine-tuned on it);
* synthetic movies made hard on purpose: many look-alike nuclei (similar size, brightness and texture)
  moving fast and erratically, so that neighbours touch and cross.

The candidate with the best P@20 on one movie (ties: mean of P@5/10/20) is reported on the others, in both
directions; the default is the candidate with the best *worst* P@20 over HeLa 01 and SIM+ 01, reported on
the synthetic movies it was not chosen on. ``raw`` features run beside every movie. The network was
fine-tuned on tracks of HeLa 01 and SIM+ 01; ``--baseline-model`` (e.g. the pre-trained model alone, which
never saw a tracked movie) adds rows for it.

Speed: cell·frames per second of the features alone (one batched window call per frame for all GT nuclei,
tiles or whole frame as the extractor chooses), and the cf-track time of recognet / raw on every movie,
tracking alone and end to end. Times are CPU seconds of this process (torch on ``--threads`` threads, 1 by
default), which stay comparable when other jobs share the cores; wall time is not.
``--crops`` adds the crop-level scores (identity accuracy, next-frame retrieval, mitosis) of the models.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASETS = ("Fluo-N2DL-HeLa", "Fluo-N2DH-SIM+")
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: Synthetic movies made hard on purpose: look-alike nuclei that touch and cross.
HARD_MOVIE = {
    "frames": 30,
    "height": 256,
    "width": 256,
    "nuclei": 45,
    "radius_mean": 8.0,
    "radius_std": 0.6,
    "eccentricity": (0.2, 0.5),
    "brightness_std": 30.0,
    "speed": 4.0,
    "persistence": 0.6,
    "random_step": 2.0,
    "min_separation": 0.6,
    "division_probability": 0.0,
    "death_probability": 0.0,
    "entry_rate": 0.0,
    "marker_fraction": 1.0,  # TRA markers cover whole nuclei, as in HeLa and SIM+ (the window follows them)
}
HARD_SEEDS = (11, 12)

#: (layers, layer weights, normalisation, principal components per layer); conv layers 0-based, -1 the
#: normalised input.
CANDIDATES = {
    "all": [
        ((3, 5), (1.0, 1.0), "layer", None),
        ((3, 5), (1.0, 1.0), "layer", 8),
        ((3, 5), (1.0, 1.0), "layer", 4),
        ((3, 5), (1.0, 0.5), "layer", 8),
        ((-1, 3, 5), (0.5, 1.0, 1.0), "layer", 8),
        ((-1, 3, 5), (1.0, 1.0, 1.0), "layer", 4),
        ((2, 3, 5), (0.5, 1.0, 0.5), "layer", 8),
        ((1, 3, 5), (0.5, 1.0, 0.5), "layer", 8),
        ((5,), (1.0,), "layer", 8),
        ((3,), (1.0,), "layer", 8),
        ((-1, 5), (1.0, 1.0), "layer", 8),
        ((3, 5), (1.0, 1.0), "channel", 8),
    ],
    "default": [],
}


@dataclass
class Movie:
    name: str
    seq: Path
    gt: Path
    start: int = 0


@dataclass
class Run:
    p5: float
    p10: float
    p20: float
    seconds: float
    cell_frames: int


def hard_movies(root: Path) -> list[Movie]:
    """The synthetic hard movies as CTC folders under ``root``."""
    from celltrack.io import write_ctc_dataset
    from celltrack.synthetic import generate_movie

    movies = []
    for seed in HARD_SEEDS:
        movie = generate_movie(seed=seed, **HARD_MOVIE)
        folder = root / f"hard-{seed}"
        write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, folder)
        movies.append(Movie(f"synthetic hard {seed}", folder / "01", folder / "01_GT"))
    return movies


def cf_run(movie: Movie, extractor_for) -> Run:
    """cf-track as ``celltrack cf-track SEQ --detections NN_GT/TRA``: P@5/10/20 and tracking seconds."""
    from celltrack.cftrack import CFTracker
    from celltrack.io import open_sequence, write_ctc_result
    from celltrack.metrics import evaluate
    from celltrack.pipeline.cftrack import initial_targets

    images = open_sequence(movie.seq)
    detections = open_sequence(movie.gt / "TRA")
    targets = initial_targets(images, None, detections, None, movie.start)
    diameter = float(2 * np.sqrt(np.median(targets["area"]) / np.pi))
    extractor = extractor_for(diameter)
    start = time.process_time()
    result = CFTracker(extractor).track(images, targets, start=movie.start)
    seconds = time.process_time() - start
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "RES"
        write_ctc_result(
            result.graph(detections),
            out,
            images.frame_shape,
            len(images),
            label_source=lambda t: detections[t],
        )
        scores = evaluate(out, movie.gt, metrics=["precision"], from_frame=movie.start).metrics
    cell_frames = int(np.isfinite(result.positions[..., 0]).sum())
    return Run(scores["P@5"], scores["P@10"], scores["P@20"], seconds, cell_frames)


def end_to_end(movie: Movie, extractor_for) -> float:
    """CPU seconds of ``run_cf_track`` (what ``celltrack cf-track SEQ --detections NN_GT/TRA`` runs).

    A movie with a later start runs on a folder of links to its frames from ``start`` on.
    """
    from celltrack.io import open_sequence
    from celltrack.pipeline.cftrack import initial_targets, run_cf_track

    with tempfile.TemporaryDirectory() as tmp:
        seq, tra = movie.seq, movie.gt / "TRA"
        if movie.start:
            seq, tra = Path(tmp) / "01", Path(tmp) / "TRA"
            seq.mkdir()
            tra.mkdir()
            n = len(open_sequence(movie.seq))
            for t in range(movie.start, n):
                (seq / f"t{t - movie.start:03d}.tif").symlink_to(movie.seq / f"t{t:03d}.tif")
                (tra / f"man_track{t - movie.start:03d}.tif").symlink_to(
                    movie.gt / "TRA" / f"man_track{t:03d}.tif"
                )
        targets = initial_targets(open_sequence(seq), None, open_sequence(tra), None)
        extractor = extractor_for(float(2 * np.sqrt(np.median(targets["area"]) / np.pi)))
        start = time.process_time()
        run_cf_track(seq, Path(tmp) / "RES", detections=tra, features=extractor)
        return time.process_time() - start


def feature_throughput(movie: Movie, extractor_for, size: int | None = None) -> tuple[float, int]:
    """Cell·frames per second of the features alone: all GT nuclei of a frame in one window call."""
    from celltrack.cf import CFConfig
    from celltrack.features import to_grid
    from celltrack.graph import measure_detections
    from celltrack.io import open_sequence

    images = open_sequence(movie.seq)
    detections = open_sequence(movie.gt / "TRA")
    tables = [measure_detections(np.asarray(detections[t]), t) for t in range(len(images))]
    frames = [np.asarray(images[t]) for t in range(len(images))]
    diameter = float(2 * np.sqrt(np.median(tables[0]["area"]) / np.pi))
    extractor = extractor_for(diameter)
    window = size or CFConfig().window_for(diameter)
    grid_window = max(8, round(window * extractor.grid_scale))
    cells = 0
    start = time.process_time()
    for frame, table in zip(frames, tables, strict=True):
        centres = to_grid(table[["y", "x"]].to_numpy(np.float64), extractor.grid_scale)
        extractor.window_cropper(frame, grid_window)(centres)
        cells += len(table)
    return cells / (time.process_time() - start), grid_window


def choose(results: dict, candidates: list, on: list[str]) -> int:
    """Index of the candidate with the best worst-case P@20 over ``on`` (ties: mean P@5/10/20)."""

    def key(i: int) -> tuple[float, float]:
        runs = [results[(name, i)] for name in on]
        return (min(r.p20 for r in runs), float(np.mean([[r.p5, r.p10, r.p20] for r in runs])))

    return max(range(len(candidates)), key=key)


def describe(candidate) -> str:
    layers, weights, normalisation, components = candidate
    return f"layers {layers} weights {weights} {normalisation} k={components or 'all'}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default=None, help="RecogNet model folder (default: the tracking model)")
    parser.add_argument("--baseline-model", default=None, help="a second model reported with the default")
    parser.add_argument("--candidates", choices=tuple(CANDIDATES), default="all")
    parser.add_argument(
        "--movies", default="hela,sim,dense,synthetic", help="subset of hela,sim,dense,synthetic"
    )
    parser.add_argument("--crops", action="store_true", help="also print crop-level scores of the models")
    parser.add_argument("--speed-only", action="store_true", help="only the end-to-end and feature timings")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from celltrack.features import RawExtractor
    from celltrack.features.recognet import RecogNetFeatures, RecogNetFeaturesConfig
    from celltrack.models.recognet import TRACKING_RECOGNET_PATH, RecogNet

    model = RecogNet.load(args.model or TRACKING_RECOGNET_PATH)
    default = RecogNetFeaturesConfig()
    default_candidate = (default.layers, default.layer_weights, default.normalisation, default.components)
    candidates = (
        [default_candidate] if args.speed_only else CANDIDATES[args.candidates] or [default_candidate]
    )
    wanted = set(args.movies.split(","))
    tmp = tempfile.TemporaryDirectory()
    movies: list[Movie] = []
    for key, name in zip(("hela", "sim"), DATASETS, strict=True):
        root = Path(args.data) / name
        if key in wanted and (root / "01").is_dir():
            movies.append(Movie(f"{name} 01", root / "01", root / "01_GT"))
    tracked = [m.name for m in movies]
    hela = Path(args.data) / DATASETS[0]
    if "dense" in wanted and (hela / "01").is_dir():
        # A denser proxy: HeLa 01's nuclei of frame 60 (about 2.5 times frame 0's), followed to the end.
        movies.append(Movie(f"{DATASETS[0]} 01 from frame 60", hela / "01", hela / "01_GT", start=60))
    if "synthetic" in wanted:
        movies += hard_movies(Path(tmp.name))
    if args.crops:
        crop_report(args, model)

    def recognet_for(candidate, network=model):
        layers, weights, normalisation, components = candidate
        config = RecogNetFeaturesConfig(
            layers=layers, layer_weights=weights, normalisation=normalisation, components=components
        )
        return lambda diameter: RecogNetFeatures(network, config, nucleus_diameter=diameter)

    default_index = 0
    if not args.speed_only:
        results: dict = {}
        for movie in movies:
            results[(movie.name, "raw")] = cf_run(movie, lambda diameter: RawExtractor())
            for i, candidate in enumerate(candidates):
                results[(movie.name, i)] = cf_run(movie, recognet_for(candidate))
                run = results[(movie.name, i)]
                print(
                    f"  {movie.name} | {describe(candidate)} | P@20 {run.p20:.3f} | {run.seconds:.1f} s",
                    flush=True,
                )

        print("\n### All candidates (cf-track P@20; seconds)\n")
        names = [m.name for m in movies]
        print("| features | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        raw_row = " | ".join(
            f"{results[(n, 'raw')].p20:.3f} ({results[(n, 'raw')].seconds:.0f} s)" for n in names
        )
        print(f"| raw | {raw_row} |")
        for i, candidate in enumerate(candidates):
            row = " | ".join(f"{results[(n, i)].p20:.3f} ({results[(n, i)].seconds:.0f} s)" for n in names)
            print(f"| {describe(candidate)} | {row} |")

        print("\n### Chosen on / tested on (cf-track P@5 / P@10 / P@20, raw features beside)\n")
        print(
            "| chosen on | features chosen | tested on | raw P@5/10/20 | recognet P@5/10/20 | "
            "time recognet/raw |"
        )
        print("|---|---|---|---|---|---|")
        selections = [([name], name) for name in tracked]
        if len(tracked) > 1:
            selections.append((tracked, "worst of " + " and ".join(tracked) + " (the default)"))
        for on, label in selections:
            best = choose(results, candidates, on)
            for name in names:
                raw, rec = results[(name, "raw")], results[(name, best)]
                where = f"{name} (chosen here)" if name in on else name
                print(
                    f"| {label} | {describe(candidates[best])} | {where} | {raw.p5:.3f} / {raw.p10:.3f} / "
                    f"{raw.p20:.3f} | {rec.p5:.3f} / {rec.p10:.3f} / {rec.p20:.3f} | "
                    f"{rec.seconds / raw.seconds:.1f}× ({rec.seconds:.0f} / {raw.seconds:.0f} s) |"
                )
        default_index = choose(results, candidates, tracked) if tracked else 0
        if args.baseline_model:
            baseline = RecogNet.load(args.baseline_model)
            print(f"\n### {args.baseline_model} with {describe(candidates[default_index])}\n")
            print("| movie | P@5 / P@10 / P@20 | seconds |")
            print("|---|---|---|")
            for movie in movies:
                run = cf_run(movie, recognet_for(candidates[default_index], baseline))
                print(f"| {movie.name} | {run.p5:.3f} / {run.p10:.3f} / {run.p20:.3f} | {run.seconds:.0f} |")

    print("\n### celltrack cf-track end to end (read, track, write), CPU seconds\n")
    print("| movie | raw | recognet (default features) | recognet / raw |")
    print("|---|---|---|---|")
    for movie in movies:
        raw_seconds = end_to_end(movie, lambda diameter: RawExtractor())
        rec_seconds = end_to_end(movie, recognet_for(candidates[default_index]))
        print(f"| {movie.name} | {raw_seconds:.1f} | {rec_seconds:.1f} | {rec_seconds / raw_seconds:.2f}× |")

    print("\n### Speed of the features (all GT nuclei of a frame in one batched call)\n")
    print("| movie | grid window (px) | recognet cell·frames/s | raw cell·frames/s |")
    print("|---|---|---|---|")
    for movie in [m for m in movies if m.start == 0]:  # every GT nucleus of every frame already
        rate, window = feature_throughput(movie, recognet_for(candidates[default_index]))
        raw_rate, _ = feature_throughput(movie, lambda diameter: RawExtractor())
        print(f"| {movie.name} | {window} | {rate:.0f} | {raw_rate:.0f} |")
    tmp.cleanup()


def crop_report(args, model) -> None:
    """Identity accuracy, next-frame retrieval and mitosis calls on the held-out frames of tracked movies."""
    from celltrack.models.recognet import DEFAULT_RECOGNET_PATH, RecogNet, evaluate_recognet
    from celltrack.models.recognet_data import TEST, CropDatasetConfig, build_crop_dataset_from_ctc

    sequences = [
        Path(args.data) / name / "01" for name in DATASETS if (Path(args.data) / name / "01").is_dir()
    ]
    print("| model | movie | identity acc | next-frame retrieval | mitosis precision / recall |")
    print("|---|---|---|---|---|")
    for label, network in (
        ("study (recognet_default)", RecogNet.load(DEFAULT_RECOGNET_PATH)),
        ("tracking", model),
    ):
        info = network.training_info
        config = CropDatasetConfig(**info.get("dataset_config", {}))
        dataset = build_crop_dataset_from_ctc(sequences, config, n_identities=network.config.n_identities)
        for index, movie in enumerate(dataset.movies):
            scores = evaluate_recognet(network, dataset.subset(dataset.movie == index), TEST)
            print(
                f"| {label} | {movie} | {scores['identity_accuracy']:.3f} | "
                f"{scores['retrieval_accuracy']:.3f} | {scores['mitosis_precision']:.3f} / "
                f"{scores['mitosis_recall']:.3f} |"
            )
    print()


if __name__ == "__main__":
    main()
