"""Train the global pass's classifiers (divisions, joins) and measure how they transfer between movies.

Examples come from movies with a ground truth, GT TRA markers as detections: HeLa 01, SIM+ 01 and
synthetic movies (the hard kinds of ``celltrack.synthetic.hard_movie`` and default movies, with seeds other
than the benchmark's seed 0). Each movie contributes its candidates with intensities measured from the
frames and again without (how the linker runs when no frames are given). Every source group (HeLa, SIM+,
synthetic) weighs the same in training.

- ``division``: every division hypothesis the global pass weighs (``celltrack.link.training``).
- ``join``: every gap-closing / joining candidate after 2 % of the detections were dropped at random (two
  drop seeds per movie): the dropped ones are the detector misses that joins exist for; the GT itself has
  no gaps, so every other candidate is a wrong join.

    python benchmarks/event_models.py division cv     # leave one source out; train on one, test on another
    python benchmarks/event_models.py division train  # fit on everything, write the shipped weights
    python benchmarks/event_models.py join cv
    python benchmarks/event_models.py join train

``cv`` prints, per held-out source, the candidates' log-loss and ranking (AUC), the calls made at p > 0.5,
and the tracking scores of the linker with the model trained without that source. ``train`` writes
``src/celltrack/models/weights/{division,join}_default/weights.json`` (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import linkeval
import numpy as np
import pandas as pd
import torch

from celltrack.link import Linker
from celltrack.link.divisions import DIVISION_FEATURES
from celltrack.link.joins import JOIN_FEATURES
from celltrack.link.training import division_examples, join_examples
from celltrack.models.events import DEFAULT_DIVISION_MODEL_PATH, DEFAULT_JOIN_MODEL_PATH, EventClassifier

#: Synthetic training movies: (source name, seed, settings); the benchmark scores seed 0 of each hard kind.
SYNTHETIC_TRAINING = [
    ("synthetic dense", 1, {}),
    ("synthetic dense", 3, {"daughter_offset": 26.0, "frames": 20}),  # daughters 1.5 diameters away
    ("synthetic transient", 1, {}),
    ("synthetic sparse", 1, {}),
    ("synthetic sparse", 2, {}),
    ("synthetic default", 1, {}),
    ("synthetic default", 2, {"daughter_offset": 14.0, "daughter_jitter": 0.25}),
]
KINDS = {
    "division": {"features": DIVISION_FEATURES, "path": DEFAULT_DIVISION_MODEL_PATH},
    "join": {"features": JOIN_FEATURES, "path": DEFAULT_JOIN_MODEL_PATH},
}
HIDDEN, L2, SEED = 0, 1e-2, 0
JOIN_DROP, JOIN_DROP_SEEDS = 0.02, (1, 2)


def load(name: str, seed: int, settings: dict | None = None) -> linkeval.Source | None:
    if name == "synthetic default":
        settings = {"frames": 60, "nuclei": 30, "division_probability": 0.02, **(settings or {})}
    if name in linkeval.REAL:
        return linkeval.load_source(name)
    return linkeval.synthetic_source(name, seed=seed, **(settings or {}))


def collect(kind: str, source: linkeval.Source) -> dict[str, object]:
    """Labelled candidates of one movie: with and without intensities."""
    detections = source.detections.drop(columns=["mean_intensity"])
    if kind == "division":
        parent_of = dict(zip(source.tracks["label"], source.tracks["parent"], strict=True))
        return {
            "with": division_examples(detections, parent_of, source.frames),
            "without": division_examples(detections, parent_of, frame_shape=source.frame_shape),
        }
    out: dict[str, object] = {}
    for seed in JOIN_DROP_SEEDS:
        out[f"with {seed}"] = join_examples(detections, source.frames, drop=JOIN_DROP, seed=seed)
        out[f"without {seed}"] = join_examples(
            detections, frame_shape=source.frame_shape, drop=JOIN_DROP, seed=seed
        )
    return out


def examples(kind: str, cache: Path | None) -> dict[tuple[str, int], dict]:
    """Labelled candidates of every training movie (cached on disk when ``cache`` is given)."""
    if cache is not None and cache.is_file():
        with cache.open("rb") as handle:
            return pickle.load(handle)
    movies = [(name, 0, {}) for name in linkeval.REAL] + SYNTHETIC_TRAINING
    out = {}
    for name, seed, settings in movies:
        start = time.perf_counter()
        source = load(name, seed, settings)
        if source is None:
            print(f"skip {name}: data not found")
            continue
        out[(name, seed)] = collect(kind, source)
        labels = np.concatenate([part.label for part in out[(name, seed)].values()])
        print(
            f"{name} seed {seed}: {len(labels)} candidates, {labels.sum()} true "
            f"({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
    if cache is not None:
        with cache.open("wb") as handle:
            pickle.dump(out, handle)
    return out


def group_of(name: str) -> str:
    return "synthetic" if name.startswith("synthetic") else name


def stack(data: dict, keep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and row weights of the kept movies: every source group weighs the same."""
    keys = [key for key in data if keep(key[0])]
    rows = {group_of(key[0]): 0 for key in keys}
    for key in keys:
        rows[group_of(key[0])] += sum(len(part.label) for part in data[key].values())
    parts = [(part, 1.0 / rows[group_of(key[0])]) for key in keys for part in data[key].values()]
    return (
        np.concatenate([p.features for p, _ in parts]),
        np.concatenate([p.label for p, _ in parts]),
        np.concatenate([np.full(len(p.label), w) for p, w in parts]),
    )


def fit(kind: str, data: dict, keep, sources: list[str]) -> EventClassifier:
    x, y, w = stack(data, keep)
    return EventClassifier.fit(
        x, y, KINDS[kind]["features"], hidden=HIDDEN, l2=L2, seed=SEED, sample_weight=w,
        provenance={"trained_on": sources, "command": f"python benchmarks/event_models.py {kind} train"},
    )


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (ties broken by order; NaN with one class)."""
    order = np.argsort(score)
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    positives = label == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def cross_validate(kind: str, data: dict, track: bool) -> pd.DataFrame:
    rows = []
    present = sorted({group_of(name) for name, _ in data})
    plans = [(f"all but {g}", lambda n, g=g: group_of(n) != g, g) for g in present]
    plans += [(f"{a} only", lambda n, a=a: group_of(n) == a, b) for a in present for b in present if a != b]
    for tuned, keep, tested in plans:
        trained_on = sorted({n for n, _ in data if keep(n)})
        model = fit(kind, data, keep, trained_on)
        x, y, _ = stack(data, lambda n, t=tested: group_of(n) == t)
        p = np.clip(model.probability(x), 1e-9, 1 - 1e-9)
        row = {
            "tuned on": tuned,
            "tested on": tested,
            "candidates": len(y),
            "true": int(y.sum()),
            "log-loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
            "AUC": auc(p, y),
            "called": int((p > 0.5).sum()),
            "right": int(((p > 0.5) & (y == 1)).sum()),
        }
        if not track:
            rows.append(row)
            print(row, flush=True)
            continue
        for name in (n for n in linkeval.ALL_SOURCES if group_of(n) == tested):
            source = linkeval.load_source(name)
            if source is None:
                continue
            linker = Linker(**{f"{kind}_model": model})
            graph = linker.link(source.detections.drop(columns=["mean_intensity"]), source.frames)
            scores = linkeval.score(graph, source)
            rows.append(row | {"tested on": name} | {k: scores[k] for k in ("LNK", "BC(0)", "CT", "TRA")})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=list(KINDS))
    parser.add_argument("command", choices=["cv", "train"])
    parser.add_argument("--out", default=None, help="weights file to write (default: the shipped one)")
    parser.add_argument(
        "--cache", default=None, help="pickle of the collected candidates (reused if present)"
    )
    parser.add_argument("--no-tracking", action="store_true", help="cv: candidate scores only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = examples(args.kind, Path(args.cache) if args.cache else None)
    if args.command == "cv":
        table = cross_validate(args.kind, data, track=not args.no_tracking)
        print()
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        return
    sources = sorted({f"{name} (seed {seed})" for name, seed in data})
    model = fit(args.kind, data, lambda n: True, sources)
    path = model.save(args.out or KINDS[args.kind]["path"])
    x, y, _ = stack(data, lambda n: True)
    print(
        f"wrote {path}: {len(y)} candidates, {int(y.sum())} true, in-sample AUC "
        f"{auc(model.probability(x), y):.4f}"
    )


if __name__ == "__main__":
    main()
