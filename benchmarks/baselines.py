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
    """btrack with its published cell model (``models/cell_config.json`` of the btrack repository).

    The model's lengths suit ~20 px steps; its search radius, distance thresholds and motion noise are
    scaled to this movie's measured scale (as the other baselines' radii). btrack runs in its own
    interpreter (``btrack_runner.py``): ``$CELLTRACK_BTRACK_PYTHON``, else ``.venv-btrack`` beside this
    checkout (``python3 -m venv .venv-btrack && .venv-btrack/bin/pip install btrack==0.6.5``): btrack
    0.7.0's library needs libstdc++ from GCC 13 (GLIBCXX_3.4.32), which Debian 12 does not have, and 0.6.5
    needs pydantic 1, which celltrack cannot share.
    """
    import os
    import subprocess
    import tempfile
    from pathlib import Path

    default = Path(__file__).resolve().parents[1] / ".venv-btrack" / "bin" / "python"
    python = os.environ.get("CELLTRACK_BTRACK_PYTHON", str(default))
    if not Path(python).is_file():
        raise ImportError(f"no btrack interpreter at {python}")
    rows = table.reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "objects.npz", Path(tmp) / "edges.npz"
        np.savez(
            data,
            t=rows["frame"].to_numpy(float),
            x=rows["x"].to_numpy(float),
            y=rows["y"].to_numpy(float),
            radius=scale(table),
        )
        runner = Path(__file__).resolve().parent / "btrack_runner.py"
        done = subprocess.run([python, str(runner), str(data), str(out)], capture_output=True, text=True)
        if done.returncode != 0:
            raise ImportError(f"btrack failed: {done.stderr.strip().splitlines()[-1:]}")
        edges = np.load(out)
        return TrackGraph(rows, pd.DataFrame({"source": edges["source"], "target": edges["target"]}))
