"""Baseline linkers run on the same detections as celltrack (laptrack, trackpy, plain Hungarian).

Used by benchmarks/tracking.py and benchmarks/speed.py; laptrack and trackpy come with the
``bench`` extra (``pip install "celltrack[bench]"``).
"""

from __future__ import annotations

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
