"""Hands-off `celltrack track` on synthetic movies unlike the data the models were trained on.

Each row is one seeded synthetic movie (30 frames) with one property pushed away from the default HeLa-like
movie: tiny or large nuclei, a low signal-to-noise ratio, fast motion, a dense field, a wide brightness
range, 8-bit data, strong chromatin texture, blur, fast bleaching, elongated nuclei, uneven illumination.
The pipeline runs with its defaults (everything ``auto``) and the CTC metrics are computed against the
generator's ground truth. Nothing here is tuned per row: a drop shows where the defaults do not carry over.

    python benchmarks/robustness.py [--cases low-snr dense ...] [--threads 2] [--seed 11]
        [--set segmentation.min_significance=0 segmentation.model='"study"' ...]

``--set KEY=VALUE`` overrides one configuration key (dotted, as in the TOML file; VALUE in TOML syntax), to
compare a variant with the defaults on the same movies.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from celltrack.io import write_ctc_dataset
from celltrack.metrics import evaluate
from celltrack.pipeline.track import TrackingConfig, load_config, run_tracking
from celltrack.synthetic import generate_movie

#: Short name (``--cases``) -> (row title, generator overrides). "8-bit" and "uneven illumination" are made
#: from the default movie after rendering (rescaled to 0..255: quantised, not saturated; vignetted).
CASES: dict[str, tuple[str, dict]] = {
    "default": ("default", {}),
    "tiny": ("tiny nuclei (r 4 px)", {"radius_mean": 4.0, "radius_std": 0.7, "nuclei": 60, "speed": 1.0}),
    "large": (
        "large nuclei (r 22 px)",
        {"radius_mean": 22.0, "radius_std": 3.0, "height": 512, "width": 512, "nuclei": 25, "speed": 4.0},
    ),
    "low-snr": ("low SNR (40 over 100)", {"brightness_mean": 40.0, "brightness_std": 10.0}),
    "fast": ("fast (6 px/frame)", {"speed": 6.0}),
    "dense": ("dense (70 nuclei)", {"nuclei": 70}),
    "bright-range": ("wide brightness range", {"brightness_mean": 500.0, "brightness_std": 300.0}),
    "8-bit": ("8-bit", {}),
    "texture": ("strong texture", {"texture_strength": 0.8}),
    "blur": ("blurred (sigma 3 px)", {"blur_sigma": 3.0}),
    "bleaching": ("fast bleaching (3 %/frame)", {"bleaching_rate": 0.03}),
    "elongated": ("elongated nuclei", {"eccentricity": (0.75, 0.9)}),
    "uneven": ("uneven illumination", {}),
}
METRICS = ("TRA", "DET", "SEG", "LNK", "BC(0)")


def one_case(key: str, seed: int, folder: Path, config: TrackingConfig | None = None) -> dict:
    name, overrides = CASES[key]
    movie = generate_movie(**({"frames": 30, "seed": seed} | overrides))
    images = movie.images
    if key == "8-bit":
        images = np.round(images.astype(np.float64) * (255.0 / images.max())).astype(np.uint8)
    if key == "uneven":
        # Vignetting: the image falls to 40 % of its level in the corners.
        _, height, width = images.shape
        yy, xx = np.mgrid[:height, :width]
        radius = np.hypot((yy - height / 2) / height, (xx - width / 2) / width) / np.sqrt(0.5)
        images = np.round(images * (1.0 - 0.6 * radius**2)).astype(images.dtype)
    write_ctc_dataset(images, movie.labels, movie.markers, movie.tracks, folder)
    start = time.perf_counter()
    run_tracking(folder / "01", folder / "01_RES", config)
    seconds = time.perf_counter() - start
    scores = evaluate(folder / "01_RES", folder / "01_GT").metrics
    return (
        {"movie": name, "nuclei": len(movie.centroids)} | {k: scores.get(k) for k in METRICS} | {"s": seconds}
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE",
        help="configuration overrides, e.g. segmentation.min_significance=0 (VALUE in TOML syntax)",
    )
    args = parser.parse_args()
    import tomllib

    overrides = []
    for item in args.set:
        key, _, value = item.partition("=")
        overrides.append((key, tomllib.loads(f"v = {value}")["v"]))
    config = load_config(None, overrides)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.cases:
            rows.append(one_case(key, args.seed, Path(tmp) / key, config))
            print(
                pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True
            )
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
