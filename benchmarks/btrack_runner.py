"""Run btrack on detections in an .npz and write the links (run by baselines.link_btrack in btrack's venv).

    python btrack_runner.py objects.npz edges.npz

``objects.npz``: ``t, x, y`` per detection and ``radius`` (the movie's search radius, px); ``edges.npz``:
``source, target`` row indices. Only numpy and btrack are needed (btrack 0.6.5 or 0.7).
"""

from __future__ import annotations

import sys

import btrack
import numpy as np
from btrack.config import HypothesisModel, MotionModel, TrackerConfig


def main(objects_path: str, edges_path: str) -> None:
    data = np.load(objects_path)
    radius = float(data["radius"])
    unit = radius / 20.0  # the published cell model's distances suit ~20 px steps
    motion = MotionModel(
        name="cell_motion",
        dt=1.0,
        measurements=3,
        states=6,
        accuracy=7.5,
        prob_not_assign=0.001,
        max_lost=5,
        A={"matrix": (np.eye(6) + np.eye(6, k=3)).ravel().tolist()},
        H={"matrix": np.eye(3, 6).ravel().tolist()},
        P={"sigma": 150.0 * unit, "matrix": np.diag([0.1, 0.1, 0.1, 1, 1, 1]).ravel().tolist()},
        G={"sigma": 15.0 * unit, "matrix": [0.5, 0.5, 0.5, 1, 1, 1]},
        R={"sigma": 5.0 * unit, "matrix": np.eye(3).ravel().tolist()},
    )
    hypotheses = HypothesisModel(
        name="cell_hypothesis",
        hypotheses=["P_FP", "P_init", "P_term", "P_link", "P_branch", "P_dead"],
        lambda_time=5.0,
        lambda_dist=3.0,
        lambda_link=10.0,
        lambda_branch=50.0,
        eta=1e-10,
        theta_dist=20.0 * unit,
        theta_time=5.0,
        dist_thresh=40.0 * unit,
        time_thresh=2,
        apop_thresh=5,
        segmentation_miss_rate=0.1,
        apoptosis_rate=0.001,
        relax=True,
    )
    xy = np.column_stack([data["x"], data["y"]])
    objects = btrack.io.objects_from_array(
        np.column_stack([data["t"], xy]), default_keys=["t", "x", "y"]
    )
    span = xy.max(axis=0) + 2 * radius
    with btrack.BayesianTracker(verbose=False) as tracker:
        tracker.configure(
            TrackerConfig(motion_model=motion, hypothesis_model=hypotheses, max_search_radius=2 * radius)
        )
        tracker.volume = ((-2 * radius, float(span[0])), (-2 * radius, float(span[1])))
        tracker.append(objects)
        tracker.track(step_size=100)
        tracker.optimize()
        tracks = tracker.tracks
    sources, targets = [], []
    first_of, last_of = {}, {}
    for track in tracks:
        refs = [int(r) for r in track.refs if int(r) >= 0]  # negative refs are btrack's gap dummies
        if not refs:
            continue
        sources += refs[:-1]
        targets += refs[1:]
        first_of[track.ID], last_of[track.ID] = refs[0], refs[-1]
    for track in tracks:
        if track.ID in first_of and track.parent in last_of and track.parent != track.ID:
            sources.append(last_of[track.parent])
            targets.append(first_of[track.ID])
    np.savez(edges_path, source=np.asarray(sources, np.int64), target=np.asarray(targets, np.int64))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
