"""RecogNet quality: identity, embedding retrieval, mitosis calls and cf-track precision with its features.

    python benchmarks/recognet.py [--data ../shared/data] [--model FOLDER] [--skip-tracking]

The default run prints, for the shipped model (or ``--model``):

* on the held-out test frames of HeLa 01 and SIM+ 01 (blocks of frames never seen in training): identity
  accuracy over the 256 training identities, next-frame embedding retrieval (is the nearest embedding among
  all nuclei of frame t+1 the same nucleus; a raw-pixel correlation baseline beside it), mitosis
  precision / recall;
* the same retrieval and mitosis scores on a synthetic movie the network never saw (generalisation);
* cf-track P@5/10/20 on HeLa 01 and SIM+ 01 (GT tracks of frame 0, followed until they end, as in
  ``benchmarks/cf_precision.py``) with ``raw``, ``segnet`` and ``recognet`` features and the study's
  per-window RecogNet recipe.

The shipped weights (``src/celltrack/models/weights/recognet_default``) are reproduced bit for bit by
``OMP_NUM_THREADS=1 celltrack train recognet`` with the options in the README (and in the model's
``config.json``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

DATASETS = ("Fluo-N2DL-HeLa", "Fluo-N2DH-SIM+")
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pixel_features(crops: np.ndarray) -> np.ndarray:
    """Baseline descriptor: the central 24×24 pixels, standardised (dot product = normalised correlation)."""
    centre = crops[:, 8:32, 8:32].reshape(len(crops), -1).astype(np.float64)
    centre = centre - centre.mean(1, keepdims=True)
    return centre / np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-9)


def crop_scores(model, dataset, name: str) -> list[tuple[str, str, str]]:
    from celltrack.models.recognet import evaluate_recognet, retrieval_counts
    from celltrack.models.recognet_data import TEST

    rows = []
    for movie_index, movie in enumerate(dataset.movies):
        part = dataset.subset(dataset.movie == movie_index)
        scores = evaluate_recognet(model, part, TEST)
        test = part.subset(part.split == TEST)
        correct, total = retrieval_counts(pixel_features(test.centre_crops()), test)
        rows.append(
            (
                f"{movie} ({name})",
                f"{scores['identity_accuracy']:.3f} ({scores['identity_samples']:.0f} crops)",
                f"{scores['retrieval_accuracy']:.3f} (pixels {correct / max(total, 1):.3f}, "
                f"{scores['retrieval_pairs']:.0f} queries)",
                f"{scores['mitosis_precision']:.3f} / {scores['mitosis_recall']:.3f} "
                f"({scores['mitosis_samples']:.0f} mitotic crops)",
            )
        )
    return rows


def synthetic_scores(model) -> tuple[str, str, str, str]:
    from celltrack.models.recognet import evaluate_recognet, retrieval_counts
    from celltrack.models.recognet_data import TEST, CropDatasetConfig, build_crop_dataset
    from celltrack.synthetic import generate_movie

    movie = generate_movie(frames=40, height=256, width=256, nuclei=30, seed=123)
    # Every frame in the test split: the network never saw this movie.
    config = CropDatasetConfig(test_fraction=0.99, validation_fraction=0.0, split_block_frames=1000)
    data = build_crop_dataset(movie.images, movie.markers, movie.tracks, config, movie="synthetic")
    data = replace(data, split=np.full(len(data), TEST, np.int8))
    scores = evaluate_recognet(model, data, TEST)
    correct, total = retrieval_counts(pixel_features(data.centre_crops()), data)
    return (
        "synthetic, unseen",
        "n/a",
        f"{scores['retrieval_accuracy']:.3f} (pixels {correct / max(total, 1):.3f}, "
        f"{scores['retrieval_pairs']:.0f} queries)",
        f"{scores['mitosis_precision']:.3f} / {scores['mitosis_recall']:.3f} "
        f"({scores['mitosis_samples']:.0f} mitotic crops)",
    )


def cf_precision(root: Path, build, label: str) -> tuple[str, str, float, float, float, str, float]:
    """cf-track from the GT markers of frame 0 (the study's protocol): P@5/10/20, cells lost, seconds."""
    from celltrack.cftrack import CFTracker
    from celltrack.graph import measure_detections
    from celltrack.io import open_sequence, read_gt, write_ctc_result
    from celltrack.metrics import evaluate

    images = open_sequence(root / "01")
    gt = read_gt(root / "01_GT")
    initial = measure_detections(np.asarray(gt.tra[0]), 0)
    # as `celltrack cf-track`: SegNet features see nuclei at the model's scale
    diameter = float(2 * np.sqrt(np.median(initial["area"]) / np.pi))
    start = time.perf_counter()
    result = CFTracker(build(diameter)).track(images, initial)
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "RES"
        write_ctc_result(result.graph(), out, images.frame_shape, len(images))
        scores = evaluate(out, root / "01_GT", metrics=["precision"], from_frame=0)
    lost = f"{int((result.lost_at >= 0).sum())}/{len(result.labels)}"
    m = scores.metrics
    return (root.name, label, m["P@5"], m["P@10"], m["P@20"], lost, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default=None, help="RecogNet model folder (default: the shipped one)")
    parser.add_argument("--skip-tracking", action="store_true")
    parser.add_argument("--layers", default=None, help="recognet feature layers, e.g. -1,1,3,5 (-1: input)")
    parser.add_argument("--layer-weights", default=None, help="recognet layer weights, e.g. 1,0.5,0.25")
    parser.add_argument("--sequences", default=",".join(DATASETS), help="cf-track on these data sets' 01")
    parser.add_argument("--skip-crops", action="store_true")
    parser.add_argument(
        "--features", default="raw,segnet,recognet,recognet-study", help="cf-track rows to run"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from celltrack.features import RawExtractor
    from celltrack.features.recognet import RecogNetFeatures, RecogNetFeaturesConfig, StudyWindowFeatures
    from celltrack.features.segnet import SegNetFeatures
    from celltrack.models.recognet import RecogNet
    from celltrack.models.recognet_data import CropDatasetConfig, build_crop_dataset_from_ctc

    model = RecogNet.load(args.model)
    info = model.training_info
    dataset_config = CropDatasetConfig(**info.get("dataset_config", {}))
    sequences = [
        Path(args.data) / name / "01" for name in DATASETS if (Path(args.data) / name / "01").is_dir()
    ]
    rows = []
    if sequences and not args.skip_crops:
        dataset = build_crop_dataset_from_ctc(
            sequences, dataset_config, n_identities=model.config.n_identities
        )
        rows += crop_scores(model, dataset, "test frames")
    if not args.skip_crops:
        rows.append(synthetic_scores(model))
        header = ("data", "identity acc", "next-frame retrieval", "mitosis precision / recall")
        print(" | ".join(header))
        print(" | ".join("---" for _ in header))
        for row in rows:
            print(" | ".join(row))
    if args.skip_tracking:
        return
    features_config = RecogNetFeaturesConfig()
    if args.layers or args.layer_weights:
        layers = tuple(int(v) for v in args.layers.split(",")) if args.layers else features_config.layers
        weights = (
            tuple(float(w) for w in args.layer_weights.split(","))
            if args.layer_weights
            else features_config.layer_weights
        )
        features_config = RecogNetFeaturesConfig(layers=layers, layer_weights=weights)
    builders = {
        "raw": lambda diameter: RawExtractor(),
        "segnet": lambda diameter: SegNetFeatures(nucleus_diameter=diameter),
        "recognet": lambda diameter: RecogNetFeatures(model, features_config),
        "recognet-study": lambda diameter: StudyWindowFeatures(model),
    }
    tracking = []
    for name in args.sequences.split(","):
        root = Path(args.data) / name
        if not (root / "01").is_dir():
            print(f"skip cf-track: {root} not found")
            continue
        tracking += [cf_precision(root, builders[f], f) for f in args.features.split(",")]
    print()
    header = ("data", "features", "P@5", "P@10", "P@20", "lost", "seconds")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for data, label, p5, p10, p20, lost, seconds in tracking:
        if label == "recognet":
            label += f" layers {features_config.layers} weights {features_config.layer_weights}"
        print(f"{data} | {label} | {p5:.3f} | {p10:.3f} | {p20:.3f} | {lost} | {seconds:.0f}")


if __name__ == "__main__":
    main()
