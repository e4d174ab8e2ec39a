"""Baseline linkers run on the same detections as celltrack (laptrack, btrack, trackpy, plain Hungarian).

Used by benchmarks/tracking.py and benchmarks/speed.py; laptrack and trackpy come with the
``bench`` extra (``pip install "celltrack[bench]"``); btrack is optional (``pip install btrack==0.7.0``),
skipped when not importable.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from celltrack.graph import TrackGraph
from celltrack.link import HungarianConfig, HungarianLinker, Linker, measure_scene


def scale(table: pd.DataFrame) -> float:
    """A search radius for the baselines from the data, as our linker derives its own."""
    stats = measure_scene(table)
    step = stats.step_p90 if stats.step_p90 is not None else stats.diameter / 2
    return float(max(3.0 * step, 0.75 * stats.diameter))


def link_celltrack(table: pd.DataFrame, images) -> TrackGraph:
    # As `celltrack track` does: the linker measures intensity itself, over the central part of each nucleus
    # (a whole-mask mean blurs the brightening of a nucleus entering mitosis).
    return Linker().link(table.drop(columns=["mean_intensity"], errors="ignore"), images)


def link_hungarian(table: pd.DataFrame, images) -> TrackGraph:
    return HungarianLinker(HungarianConfig(max_distance=scale(table))).link(table)


def link_laptrack(table: pd.DataFrame, images) -> TrackGraph:
    from laptrack import LapTrack

    radius = scale(table)
    tracker = LapTrack(
        track_cost_cutoff=radius**2,
        gap_closing_cost_cutoff=radius**2,
        gap_closing_max_frame_count=2,
        splitting_cost_cutoff=(1.5 * radius) ** 2,
    )
    frames = sorted(table["frame"].unique())
    n_frames = int(max(frames)) + 1
    rows = [table.index[table["frame"] == t].to_numpy() for t in range(n_frames)]
    coords = [table.loc[r, ["y", "x"]].to_numpy() for r in rows]
    tree = tracker.predict(coords)
    sources = [rows[a[0]][a[1]] for a, _ in tree.edges()]
    targets = [rows[b[0]][b[1]] for _, b in tree.edges()]
    return TrackGraph(table, pd.DataFrame({"source": sources, "target": targets}))


def link_trackpy(table: pd.DataFrame, images) -> TrackGraph:
    import trackpy

    trackpy.quiet()
    linked = trackpy.link_df(
        table.assign(particle=-1).drop(columns="particle"),
        search_range=scale(table),
        memory=2,
        pos_columns=["y", "x"],
        t_column="frame",
    )
    linked = linked.sort_values(["particle", "frame"])
    same = linked["particle"].to_numpy()[1:] == linked["particle"].to_numpy()[:-1]
    ids = linked.index.to_numpy()
    return TrackGraph(table, pd.DataFrame({"source": ids[:-1][same], "target": ids[1:][same]}))


def link_btrack(table: pd.DataFrame, images) -> TrackGraph:
    """btrack 0.7 with its published cell model (``models/cell_config.json`` of the btrack repository).

    The model's lengths are in pixels of the movies it was made for; its search radius, distance
    thresholds and motion noise are scaled to this movie's measured scale (as the other baselines' radii),
    so that the comparison is not lost to units.
    """
    import btrack
    from btrack.config import HypothesisModel, MotionModel, TrackerConfig

    radius = scale(table)
    unit = radius / 20.0  # the cell model's distances suit ~20 px steps
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
    rows = table.reset_index(drop=True)
    objects = btrack.io.objects_from_array(
        np.column_stack(
            [rows["frame"].to_numpy(float), rows["x"].to_numpy(float), rows["y"].to_numpy(float)]
        ),
        default_keys=["t", "x", "y"],
    )
    span = np.ptp(rows[["x", "y"]].to_numpy(float), axis=0) + 2 * radius
    with btrack.BayesianTracker(verbose=False) as tracker:
        tracker.configure(
            TrackerConfig(motion_model=motion, hypothesis_model=hypotheses, max_search_radius=2 * radius)
        )
        tracker.volume = ((0, float(span[0])), (0, float(span[1])))
        tracker.append(objects)
        tracker.track(step_size=100)
        tracker.optimize()
        tracks = tracker.tracks
    sources, targets = [], []
    last_of: dict[int, int] = {}
    first_of: dict[int, int] = {}
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
    return TrackGraph(rows, pd.DataFrame({"source": sources, "target": targets}))
