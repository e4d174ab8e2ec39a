"""Linking on given detections: the sources of the cross-validation and an in-memory CTC scorer.

A *source* is a movie whose ground-truth TRA markers serve as detections: HeLa 01 and SIM+ 01 from the
shared data, and the synthetic hard kinds of :func:`celltrack.synthetic.hard_movie` (dense, transient,
sparse). With the markers as detections every detection is one GT nucleus, so py-ctcmetrics' mask matching
is the identity and :func:`score` hands it the matches directly instead of writing and re-reading a CTC
folder (same numbers as ``celltrack evaluate`` on the written folder; checked in docs/benchmarks.md).

Used by benchmarks/tracking.py, benchmarks/event_models.py and benchmarks/linking_cv.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from celltrack.graph import TrackGraph, measure_detections
from celltrack.io import detections_from_sequence, open_sequence, read_gt

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL = {"HeLa 01": "Fluo-N2DL-HeLa", "SIM+ 01": "Fluo-N2DH-SIM+"}
SYNTHETIC = {"synthetic dense": "dense", "synthetic transient": "transient", "synthetic sparse": "sparse"}
ALL_SOURCES = (*REAL, *SYNTHETIC)
METRICS = ("TRA", "LNK", "CT", "TF", "BC(0)")


@dataclass
class Source:
    """A movie with GT markers as detections.

    Attributes
    ----------
    name : str
    detections : pandas.DataFrame
        ``frame, label, y, x, area`` (+ ``mean_intensity``); ``label`` is the GT track label.
    frames : sequence of numpy.ndarray
        Raw (Y, X) frames in memory.
    tracks : pandas.DataFrame
        GT ``label, begin, end, parent``.
    frame_shape : tuple of int
    """

    name: str
    detections: pd.DataFrame
    frames: Sequence[np.ndarray]
    tracks: pd.DataFrame
    frame_shape: tuple[int, int]

    @property
    def n_frames(self) -> int:
        return len(self.frames)


def load_source(name: str, data: Path = DATA, seed: int = 0) -> Source | None:
    """A source by name (None when its real data is absent)."""
    if name in REAL:
        root = data / REAL[name]
        if not (root / "01").is_dir():
            return None
        images = open_sequence(root / "01")
        frames = [np.asarray(images[t]) for t in range(len(images))]
        gt = read_gt(root / "01_GT")
        detections = detections_from_sequence(gt.tra, images)
        return Source(name, detections, frames, gt.tracks, images.frame_shape)
    return synthetic_source(name, seed=seed)


def synthetic_source(name: str, seed: int = 0, **overrides: object) -> Source:
    """A synthetic source: a hard kind by its name in :data:`SYNTHETIC`, else a default movie."""
    from celltrack.synthetic import generate_movie, hard_movie

    if name in SYNTHETIC:
        movie = hard_movie(SYNTHETIC[name], seed=seed, **overrides)
    else:
        movie = generate_movie(seed=seed, **overrides)
    detections = pd.concat(
        [measure_detections(movie.markers[t], t, movie.images[t]) for t in range(len(movie.images))],
        ignore_index=True,
    )
    tracks = pd.DataFrame(movie.tracks, columns=["label", "begin", "end", "parent"])
    return Source(name, detections, list(movie.images), tracks, movie.images.shape[1:])


def score(graph: TrackGraph, source: Source) -> dict[str, float]:
    """py-ctcmetrics TRA, LNK, CT, TF and BC(0) of a graph over the source's detections (node label = GT)."""
    from ctc_metrics.scripts.evaluate import calculate_metrics

    assignment = graph.tracks()
    comp = assignment.tracks[["label", "begin", "end", "parent"]].to_numpy(np.int64)
    ref = source.tracks[["label", "begin", "end", "parent"]].to_numpy(np.int64)
    nodes = graph.nodes
    frame = nodes["frame"].to_numpy(np.int64)
    gt_label = nodes["label"].to_numpy(np.int64)
    track = assignment.node_track.to_numpy(np.int64)
    labels_ref, labels_comp, mapped_ref, mapped_comp, ious = [], [], [], [], []
    order = np.lexsort((gt_label, frame))
    bounds = np.searchsorted(frame[order], np.arange(source.n_frames + 1))
    for t in range(source.n_frames):
        rows = order[bounds[t] : bounds[t + 1]]
        ref_t = gt_label[rows].tolist()
        comp_t = track[rows].tolist()
        labels_ref.append(ref_t)
        labels_comp.append(sorted(comp_t))
        mapped_ref.append(ref_t)
        mapped_comp.append(comp_t)
        ious.append([1.0] * len(rows))
    traj = {
        "labels_ref": labels_ref,
        "labels_comp": labels_comp,
        "mapped_ref": mapped_ref,
        "mapped_comp": mapped_comp,
        "ious": ious,
    }
    raw = calculate_metrics(comp, ref, traj, {}, ["TRA", "LNK", "CT", "TF", "BC(0)"], True)
    out = {key: float("nan") if raw.get(key) is None else float(raw[key]) for key in METRICS}
    out["divisions"] = float(len(graph.divisions()))
    out["gt divisions"] = float(raw.get("gt_divisions", np.nan))
    return out


def link_errors(graph: TrackGraph, source: Source) -> dict[str, int]:
    """Counts of link errors against the GT: false and missed links, false and missed divisions."""
    nodes = graph.nodes
    label = nodes["label"].to_numpy(np.int64)
    frame = nodes["frame"].to_numpy(np.int64)
    src, dst = graph.edges["source"].to_numpy(), graph.edges["target"].to_numpy()
    found = set(zip(frame[src].tolist(), label[src].tolist(), frame[dst].tolist(), label[dst].tolist(),
                    strict=True))
    tracks = source.tracks
    truth = set()
    key = {(int(f), int(lab)) for f, lab in zip(frame, label, strict=True)}
    for lab, begin, end, parent in tracks[["label", "begin", "end", "parent"]].to_numpy().tolist():
        truth |= {(t, lab, t + 1, lab) for t in range(begin, end) if (t, lab) in key and (t + 1, lab) in key}
        if parent > 0:
            parent_end = int(tracks.loc[tracks["label"] == parent, "end"].iloc[0])
            truth.add((parent_end, parent, begin, lab))
    children = tracks[tracks["parent"] > 0].groupby("parent").size()
    true_div = {
        (int(tracks.loc[tracks["label"] == p, "end"].iloc[0]), int(p)) for p in children[children >= 2].index
    }
    mothers = graph.divisions()
    found_div = {(int(frame[m]), int(label[m])) for m in mothers}
    return {
        "false links": len(found - truth),
        "missed links": len(truth - found),
        "false divisions": len(found_div - true_div),
        "missed divisions": len(true_div - found_div),
        "gap joins": int(np.sum(frame[dst] - frame[src] > 1)),
    }
