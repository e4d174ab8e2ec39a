"""Report figures and the per-track statistics they draw.

Every figure is a :class:`matplotlib.figure.Figure` on an Agg canvas, never registered with
pyplot (no global state, garbage-collected normally); matplotlib is imported only inside the
drawing functions, so importing this module is cheap.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from celltrack.graph import TrackGraph

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Columns of :func:`track_summary`.
SUMMARY_COLUMNS: tuple[str, ...] = ("track_id", "parent", "begin", "end", "length", "mean_speed", "children")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- statistics
def track_summary(graph: TrackGraph) -> pd.DataFrame:
    """One row per CTC track of ``graph``.

    Parameters
    ----------
    graph : TrackGraph

    Returns
    -------
    pandas.DataFrame
        Columns ``track_id, parent`` (0 = none), ``begin, end`` (frames), ``length``
        (frames, ``end - begin + 1``), ``mean_speed`` (px/frame: mean displacement per frame
        between consecutive detections; NaN for one-detection tracks) and ``children``
        (number of tracks whose parent it is), sorted by ``track_id``.
    """
    assignment = graph.tracks()
    tracks = assignment.tracks.rename(columns={"label": "track_id"})
    if not len(tracks):
        return pd.DataFrame(
            {c: pd.Series(dtype=float if c == "mean_speed" else np.int64) for c in SUMMARY_COLUMNS}
        )
    nodes = graph.nodes.assign(track_id=assignment.node_track).sort_values(
        ["track_id", "frame"], kind="stable"
    )
    same = nodes["track_id"].to_numpy()[1:] == nodes["track_id"].to_numpy()[:-1]
    step = np.hypot(np.diff(nodes["y"].to_numpy(float)), np.diff(nodes["x"].to_numpy(float)))
    frames = np.diff(nodes["frame"].to_numpy(float))
    speeds = pd.Series(step[same] / frames[same]).groupby(nodes["track_id"].to_numpy()[1:][same]).mean()
    children = tracks.loc[tracks["parent"] > 0, "parent"].value_counts()
    summary = pd.DataFrame(
        {
            "track_id": tracks["track_id"].to_numpy(np.int64),
            "parent": tracks["parent"].to_numpy(np.int64),
            "begin": tracks["begin"].to_numpy(np.int64),
            "end": tracks["end"].to_numpy(np.int64),
            "length": (tracks["end"] - tracks["begin"] + 1).to_numpy(np.int64),
            "mean_speed": speeds.reindex(tracks["track_id"]).to_numpy(float),
            "children": children.reindex(tracks["track_id"], fill_value=0).to_numpy(np.int64),
        }
    )
    return summary.sort_values("track_id").reset_index(drop=True)


def lineage_families(summary: pd.DataFrame) -> list[list[int]]:
    """Tracks grouped by root ancestor, biggest family (most descendant tracks) first.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`track_summary` output (``track_id``, ``parent``).

    Returns
    -------
    list of list of int
        Track ids of each family, root first; families ordered by size (descending), then
        root id.
    """
    parent = dict(zip(summary["track_id"].to_numpy(), summary["parent"].to_numpy(), strict=True))
    root_of: dict[int, int] = {}
    for track in summary.sort_values("begin", kind="stable")["track_id"].to_numpy():
        up = int(parent[track])
        # A parent outside the table (a truncated lineage) makes the track a root.
        root_of[int(track)] = root_of.get(up, up) if up in parent else int(track)
    families: dict[int, list[int]] = {}
    for track in sorted(root_of, key=lambda t: (t != root_of[t], t)):
        families.setdefault(root_of[track], []).append(track)
    return sorted(families.values(), key=lambda members: (-len(members), members[0]))


# ---------------------------------------------------------------------- drawing helpers
def _figure(width: float, height: float, dpi: int) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _track_colours(track_ids: np.ndarray) -> dict[int, tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return {int(t): cmap(int(t) % cmap.N) for t in track_ids}


def _stretch(frame: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.5)) -> np.ndarray:
    """Frame scaled to 0..1 between two percentiles (camera offsets and hot pixels leave the scale)."""
    frame = np.asarray(frame, np.float64)
    low, high = np.percentile(frame, percentiles)
    if high <= low:
        return np.zeros_like(frame)
    return np.clip((frame - low) / (high - low), 0.0, 1.0)


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------- figures
def trajectory_figure(
    graph: TrackGraph,
    background: np.ndarray | None = None,
    frame_shape: tuple[int, int] | None = None,
    dpi: int = 100,
) -> Figure:
    """All trajectories drawn over a frame (usually the first), one colour per track.

    Parameters
    ----------
    graph : TrackGraph
    background : numpy.ndarray, shape (Y, X), optional
        Frame to draw under the tracks (contrast-stretched); a blank frame when None.
    frame_shape : tuple of int, optional
        ``(Y, X)`` of the blank frame; default the background's shape, else the extent of the
        detections.
    dpi : int

    Returns
    -------
    matplotlib.figure.Figure
        Division and gap links are drawn dashed from the parent's last position; track starts
        are marked with a dot.
    """
    if background is not None:
        background = np.asarray(background)
        if background.ndim != 2:
            raise ValueError(f"the background must be one 2-D frame, got shape {background.shape}")
        frame_shape = background.shape
    if frame_shape is None:
        extent = graph.nodes[["y", "x"]].max() if len(graph) else pd.Series({"y": 1.0, "x": 1.0})
        frame_shape = (int(np.ceil(extent["y"])) + 1, int(np.ceil(extent["x"])) + 1)
    height, width = frame_shape
    scale = 8.0 / max(height, width)
    fig = _figure(max(width * scale, 2.0) + 0.3, max(height * scale, 2.0) + 0.3, dpi)
    ax = fig.add_subplot()
    if background is not None:
        ax.imshow(_stretch(background), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.ones(frame_shape), cmap="gray", vmin=0.0, vmax=1.0)
    table = graph.to_table()
    colours = _track_colours(table["track_id"].unique())
    ends = table.groupby("track_id").tail(1).set_index("track_id")
    for track_id, track in table.groupby("track_id", sort=True):
        colour = colours[int(track_id)]
        ax.plot(track["x"], track["y"], "-", color=colour, linewidth=1.2)
        ax.plot(track["x"].iloc[:1], track["y"].iloc[:1], "o", color=colour, markersize=2.5)
        parent = int(track["parent_track_id"].iloc[0])
        if parent in ends.index:
            ax.plot(
                [ends.at[parent, "x"], track["x"].iloc[0]],
                [ends.at[parent, "y"], track["y"].iloc[0]],
                "--",
                color=colour,
                linewidth=0.8,
            )
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    first = "first frame" if background is not None else "blank background (raw frame not available)"
    ax.set_title(f"{table['track_id'].nunique()} tracks over the {first}", fontsize="small")
    return fig


def lineage_figure(summary: pd.DataFrame, n_families: int = 4, dpi: int = 100) -> Figure:
    """Lineage trees of the ``n_families`` biggest families as time-vs-branch dendrograms.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`track_summary` output.
    n_families : int
        Number of families drawn (the biggest by number of tracks).
    dpi : int

    Returns
    -------
    matplotlib.figure.Figure
        One panel per family: each track a horizontal line from its first to its last frame,
        vertical connectors from a parent's end to its children, leaves spread one row apart.
    """
    if n_families < 1:
        raise ValueError(f"n_families must be at least 1, got {n_families}")
    families = lineage_families(summary)[:n_families]
    rows = summary.set_index("track_id")
    leaf_counts = [max(1, sum(int(rows.at[t, "children"]) == 0 for t in family)) for family in families]
    heights = [0.35 * n + 0.6 for n in leaf_counts] or [1.0]
    fig = _figure(6.0, min(sum(heights) + 0.4, 14.0), dpi)
    if not families:
        _no_data(fig.add_subplot(), "no tracks")
        return fig
    axes = fig.subplots(len(families), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    last_frame = int(summary["end"].max())
    first_frame = int(summary["begin"].min())
    colours = _track_colours(summary["track_id"].to_numpy())
    for ax, family in zip(axes, families, strict=True):
        _draw_tree(ax, family, rows, colours)
        ax.set_xlim(first_frame - 0.5, last_frame + 0.5)
        ax.set_yticks([])
        noun = "track" if len(family) == 1 else "tracks"
        ax.set_title(f"lineage of track {family[0]}: {len(family)} {noun}", fontsize="small", loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("frame")
    return fig


def _draw_tree(
    ax: Axes, family: list[int], rows: pd.DataFrame, colours: dict[int, tuple[float, float, float, float]]
) -> None:
    children: dict[int, list[int]] = {t: [] for t in family}
    for track in family[1:]:
        children[int(rows.at[track, "parent"])].append(track)
    for kids in children.values():
        kids.sort(key=lambda t: (int(rows.at[t, "begin"]), t))
    position: dict[int, float] = {}
    next_leaf = 0.0

    def place(track: int) -> float:
        nonlocal next_leaf
        kids = children[track]
        if kids:
            position[track] = float(np.mean([place(kid) for kid in kids]))
        else:
            position[track] = next_leaf
            next_leaf += 1.0
        return position[track]

    # Iterative depth-first placement would be needed only for lineages deeper than Python's
    # recursion limit (~1,000 generations), far beyond any movie.
    place(family[0])
    for track in family:
        begin, end = int(rows.at[track, "begin"]), int(rows.at[track, "end"])
        y = position[track]
        colour = colours[track]
        ax.plot([begin, end], [y, y], "-", color=colour, linewidth=2.0, solid_capstyle="butt")
        ax.plot([begin], [y], "o", color=colour, markersize=3)
        kids = children[track]
        if kids:
            ax.plot(
                [end, end],
                [min(position[k] for k in kids), max(position[k] for k in kids)],
                "-",
                color="0.3",
                linewidth=0.8,
            )
            for kid in kids:
                ax.plot(
                    [end, int(rows.at[kid, "begin"])], [position[kid]] * 2, ":", color="0.3", linewidth=0.8
                )
        if len(family) <= 40:
            ax.annotate(str(track), (begin, y), xytext=(2, 3), textcoords="offset points", fontsize=6)
    ax.set_ylim(next_leaf - 0.5, -0.5)


def track_length_figure(summary: pd.DataFrame, dpi: int = 100) -> Figure:
    """Histogram of track lengths (frames), one bin per length up to 50 bins.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`track_summary` output.
    dpi : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure(5.0, 3.2, dpi)
    ax = fig.add_subplot()
    lengths = summary["length"].to_numpy()
    if not len(lengths):
        _no_data(ax, "no tracks")
        return fig
    top = int(lengths.max())
    bins = np.arange(0.5, top + 1.5) if top <= 50 else np.linspace(0.5, top + 0.5, 51)
    ax.hist(lengths, bins=bins, color="#4477aa", edgecolor="white", linewidth=0.5)
    ax.set_xlabel("track length (frames)")
    ax.set_ylabel("tracks")
    ax.set_title(
        f"{len(lengths)} tracks, median length {float(np.median(lengths)):g} frames", fontsize="small"
    )
    ax.grid(axis="y", alpha=0.3)
    return fig
