"""The track graph: detections as nodes, links as edges, and its conversions.

A :class:`TrackGraph` is what every tracker in the package returns and every writer
consumes. Nodes are detections (one nucleus in one frame), edges are links from a
detection to the same cell (or a daughter) in a later frame. CTC *tracks* are derived:
a track is a maximal chain of one-to-one links between consecutive frames; a division
(two successors) or a gap (a link that skips frames) starts new tracks whose parent is
the track before it. This is the convention the CTC evaluation software accepts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components

logger = logging.getLogger(__name__)

NODE_COLUMNS: tuple[str, ...] = ("frame", "label", "y", "x", "area")
#: Node columns that may carry a detection score (TrackMate's QUALITY), in order of preference.
QUALITY_COLUMNS: tuple[str, ...] = ("quality", "confidence", "score")
#: Columns of the table :func:`drop_far_pieces` returns.
SPLIT_LABEL_COLUMNS: tuple[str, ...] = ("label", "pieces", "gap", "kept_area", "dropped_area")
TRACK_COLUMNS: tuple[str, ...] = ("label", "begin", "end", "parent")


@dataclass(frozen=True)
class TrackAssignment:
    """CTC tracks derived from a :class:`TrackGraph`.

    Attributes
    ----------
    node_track : pandas.Series
        Track id (1-based) of every node, indexed by node id.
    tracks : pandas.DataFrame
        One row per track with columns ``label, begin, end, parent`` (the
        ``res_track.txt`` table; ``parent`` is 0 for tracks without a parent).
    """

    node_track: pd.Series
    tracks: pd.DataFrame


class TrackGraph:
    """Detections linked through time.

    Parameters
    ----------
    nodes : pandas.DataFrame
        One row per detection, indexed by a unique integer node id, with at least
        the columns ``frame`` (int), ``label`` (int, the detection's value in that
        frame's label image, 0 if it has none), ``y``, ``x`` (centroid in pixels) and
        ``area`` (pixels). Extra columns (confidence, intensity, ...) are kept.
    edges : pandas.DataFrame, optional
        Columns ``source``, ``target``: node ids, the target in a later frame than the
        source. A node may have at most one predecessor (no merges) and any number
        of successors (two for a division).

    Raises
    ------
    ValueError
        If columns are missing, node ids are not unique, an edge names an unknown
        node, goes backwards in time, or two edges enter one node.
    """

    def __init__(self, nodes: pd.DataFrame, edges: pd.DataFrame | None = None) -> None:
        missing = [c for c in NODE_COLUMNS if c not in nodes.columns]
        if missing:
            raise ValueError(f"TrackGraph nodes lack columns {missing}; have {list(nodes.columns)}")
        if not nodes.index.is_unique:
            raise ValueError("TrackGraph node ids (the nodes' index) must be unique")
        nodes = nodes.copy()
        nodes.index = nodes.index.astype(np.int64)
        nodes.index.name = "node_id"
        nodes["frame"] = nodes["frame"].astype(np.int64)
        nodes["label"] = nodes["label"].astype(np.int64)
        if edges is None:
            edges = pd.DataFrame({"source": np.zeros(0, np.int64), "target": np.zeros(0, np.int64)})
        if not {"source", "target"} <= set(edges.columns):
            raise ValueError(
                f"TrackGraph edges need columns 'source' and 'target'; have {list(edges.columns)}"
            )
        edges = edges.reset_index(drop=True).astype({"source": np.int64, "target": np.int64})
        unknown = ~edges["source"].isin(nodes.index) | ~edges["target"].isin(nodes.index)
        if unknown.any():
            raise ValueError(f"TrackGraph has {int(unknown.sum())} edges naming unknown nodes")
        src_frame = nodes.loc[edges["source"], "frame"].to_numpy()
        dst_frame = nodes.loc[edges["target"], "frame"].to_numpy()
        if np.any(dst_frame <= src_frame):
            raise ValueError("TrackGraph edges must point forward in time (target frame > source frame)")
        if edges["target"].duplicated().any():
            raise ValueError(
                "TrackGraph has merges (a node with two predecessors); CTC lineages cannot merge"
            )
        self.nodes = nodes
        self.edges = edges

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_detections(cls, detections: pd.DataFrame) -> TrackGraph:
        """A graph without links from a detections table (node ids 0..N-1)."""
        return cls(detections.reset_index(drop=True))

    def with_edges(self, sources: Iterable[int], targets: Iterable[int]) -> TrackGraph:
        """A new graph with extra edges added."""
        extra = pd.DataFrame(
            {"source": np.asarray(list(sources), np.int64), "target": np.asarray(list(targets), np.int64)}
        )
        return TrackGraph(self.nodes, pd.concat([self.edges, extra], ignore_index=True))

    # ------------------------------------------------------------------ derived views
    @property
    def n_frames(self) -> int:
        """Number of frames spanned (max frame + 1; 0 for an empty graph)."""
        return int(self.nodes["frame"].max()) + 1 if len(self.nodes) else 0

    def out_degree(self) -> pd.Series:
        """Number of successors per node, indexed by node id."""
        counts = self.edges["source"].value_counts()
        return counts.reindex(self.nodes.index, fill_value=0).astype(np.int64)

    def divisions(self) -> pd.Index:
        """Node ids with two or more successors."""
        deg = self.out_degree()
        return deg.index[deg >= 2]

    def tracks(self) -> TrackAssignment:
        """Split the graph into CTC tracks.

        A link continues a track when its source has exactly one successor and the
        target is in the next frame; every other link (division, gap) starts a new
        track whose parent is the source's track.

        Returns
        -------
        TrackAssignment
            Node-to-track mapping and the ``label, begin, end, parent`` table, with
            tracks numbered 1..K by first frame, then node id.
        """
        nodes = self.nodes
        n = len(nodes)
        if n == 0:
            return TrackAssignment(
                pd.Series(np.zeros(0, np.int64), index=nodes.index, name="track_id"),
                pd.DataFrame({c: np.zeros(0, np.int64) for c in TRACK_COLUMNS}),
            )
        position = pd.Series(np.arange(n), index=nodes.index)
        src = position.loc[self.edges["source"]].to_numpy()
        dst = position.loc[self.edges["target"]].to_numpy()
        frames = nodes["frame"].to_numpy()
        out_deg = np.bincount(src, minlength=n)
        continuing = (out_deg[src] == 1) & (frames[dst] == frames[src] + 1)
        chain = sparse.coo_matrix(
            (np.ones(int(continuing.sum())), (src[continuing], dst[continuing])), shape=(n, n)
        )
        _, component = connected_components(chain, directed=True, connection="weak")
        # Number tracks by their first frame so that labels read naturally in time.
        first_frame = pd.Series(frames).groupby(component).min()
        first_node = pd.Series(np.arange(n)).groupby(component).min()
        order = pd.DataFrame({"f": first_frame, "n": first_node}).sort_values(["f", "n"]).index.to_numpy()
        track_of_component = np.empty(len(order), np.int64)
        track_of_component[order] = np.arange(1, len(order) + 1)
        node_track = track_of_component[component]
        grouped = pd.Series(frames).groupby(node_track)
        table = pd.DataFrame(
            {
                "label": grouped.min().index.to_numpy(),
                "begin": grouped.min().to_numpy(),
                "end": grouped.max().to_numpy(),
            }
        )
        parent = np.zeros(len(table), np.int64)
        starts = ~continuing
        parent[node_track[dst[starts]] - 1] = node_track[src[starts]]
        table["parent"] = parent
        table = table.astype(np.int64)
        return TrackAssignment(pd.Series(node_track, index=nodes.index, name="track_id"), table)

    # ------------------------------------------------------------------ conversions
    def to_table(self) -> pd.DataFrame:
        """One row per node with ``track_id`` and ``parent_track_id`` (0 = none).

        Returns
        -------
        pandas.DataFrame
            Columns ``node_id, frame, label, y, x, area, track_id, parent_track_id`` plus
            any extra node columns, sorted by track then frame. Written as CSV/parquet by
            :mod:`celltrack.io`.
        """
        assignment = self.tracks()
        table = self.nodes.copy()
        table["track_id"] = assignment.node_track
        parents = assignment.tracks.set_index("label")["parent"]
        table["parent_track_id"] = parents.reindex(table["track_id"]).fillna(0).astype(np.int64).to_numpy()
        table = table.reset_index().sort_values(["track_id", "frame"], kind="stable").reset_index(drop=True)
        return table

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> TrackGraph:
        """Rebuild a graph from :meth:`to_table` output (or any table with ``track_id``).

        Consecutive nodes of one ``track_id`` are linked; the first node of a track
        with ``parent_track_id`` > 0 is linked from the last node of the parent track.
        """
        required = {*NODE_COLUMNS, "track_id"}
        if not required <= set(table.columns):
            raise ValueError(f"a track table needs columns {sorted(required)}; have {list(table.columns)}")
        table = table.copy()
        if "node_id" in table.columns:
            table = table.set_index("node_id")
        else:
            table.index = pd.RangeIndex(len(table), name="node_id")
        table = table.sort_values(["track_id", "frame"], kind="stable")
        same_track = table["track_id"].to_numpy()[1:] == table["track_id"].to_numpy()[:-1]
        ids = table.index.to_numpy()
        sources, targets = list(ids[:-1][same_track]), list(ids[1:][same_track])
        if "parent_track_id" in table.columns:
            first = table.groupby("track_id").head(1)
            last = table.groupby("track_id").tail(1).reset_index().set_index("track_id")["node_id"]
            with_parent = first[first["parent_track_id"] > 0]
            unknown = ~with_parent["parent_track_id"].isin(last.index)
            if unknown.any():
                bad = sorted(with_parent.loc[unknown, "parent_track_id"].unique().tolist())
                raise ValueError(f"track table names parent tracks that do not exist: {bad[:10]}")
            sources += list(last.loc[with_parent["parent_track_id"]].to_numpy())
            targets += list(with_parent.index.to_numpy())
        nodes = table.drop(columns=[c for c in ("track_id", "parent_track_id") if c in table.columns])
        return cls(nodes.sort_index(), pd.DataFrame({"source": sources, "target": targets}))

    def to_napari(self) -> tuple[np.ndarray, dict[int, list[int]]]:
        """Data for a napari ``Tracks`` layer.

        Returns
        -------
        data : numpy.ndarray, shape (N, 4)
            Rows ``track_id, t, y, x`` sorted by track then time.
        graph : dict of int to list of int
            ``{child_track_id: [parent_track_id]}`` for every track with a parent.
        """
        table = self.to_table()
        data = table[["track_id", "frame", "y", "x"]].to_numpy(dtype=np.float64)
        with_parent = table.drop_duplicates("track_id")
        with_parent = with_parent[with_parent["parent_track_id"] > 0]
        pairs = zip(with_parent["track_id"], with_parent["parent_track_id"], strict=True)
        graph = {int(c): [int(p)] for c, p in pairs}
        return data, graph

    @classmethod
    def from_ctc(cls, detections: pd.DataFrame, tracks: pd.DataFrame) -> TrackGraph:
        """Build a graph from CTC data.

        Parameters
        ----------
        detections : pandas.DataFrame
            Detections of the CTC label images (``frame, label, y, x, area``), where
            ``label`` is the track label.
        tracks : pandas.DataFrame
            The ``man_track.txt``/``res_track.txt`` table (``label, begin, end, parent``).

        Returns
        -------
        TrackGraph
            Nodes of one label linked in time order (frames a label skips become gap
            links), and each child's first node linked from its parent's last node.
        """
        nodes = detections.sort_values(["label", "frame"], kind="stable").reset_index(drop=True)
        nodes.index.name = "node_id"
        labels = nodes["label"].to_numpy()
        ids = nodes.index.to_numpy()
        same = labels[1:] == labels[:-1]
        sources, targets = list(ids[:-1][same]), list(ids[1:][same])
        first = nodes.groupby("label").head(1).reset_index().set_index("label")["node_id"]
        last = nodes.groupby("label").tail(1).reset_index().set_index("label")["node_id"]
        children = tracks[(tracks["parent"] > 0) & tracks["label"].isin(first.index)]
        children = children[children["parent"].isin(last.index)]
        sources += list(last.loc[children["parent"]].to_numpy())
        targets += list(first.loc[children["label"]].to_numpy())
        return cls(nodes, pd.DataFrame({"source": sources, "target": targets}))

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return (
            f"TrackGraph(nodes={len(self.nodes)}, edges={len(self.edges)}, frames={self.n_frames}, "
            f"divisions={len(self.divisions())})"
        )


def relabel_frame(labels: np.ndarray, source_labels: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
    """Map a frame's detection labels to track ids; unmapped labels become background.

    Parameters
    ----------
    labels : numpy.ndarray, shape (Y, X), integer
        Label image of one frame.
    source_labels : numpy.ndarray, shape (K,)
        Labels present in the graph for this frame.
    track_ids : numpy.ndarray, shape (K,)
        Track id each of those labels becomes.

    Returns
    -------
    numpy.ndarray, shape (Y, X)
        uint16 when all ids fit, uint32 otherwise.
    """
    top = int(max(labels.max(initial=0), source_labels.max(initial=0)))
    dtype = np.uint16 if int(track_ids.max(initial=0)) <= np.iinfo(np.uint16).max else np.uint32
    # The table in the output type: one gather over the frame, no wide temporary.
    lut = np.zeros(top + 1, dtype)
    lut[source_labels.astype(np.int64)] = track_ids
    return lut[labels]


def measure_detections(labels: np.ndarray, frame: int, image: np.ndarray | None = None) -> pd.DataFrame:
    """Centroid and area of every labelled object in one frame.

    Parameters
    ----------
    labels : numpy.ndarray, shape (Y, X), integer
        Label image; 0 is background, labels need not be consecutive.
    frame : int
        Frame index written into the ``frame`` column.
    image : numpy.ndarray, shape (Y, X), optional
        Intensities; adds a ``mean_intensity`` column.

    Returns
    -------
    pandas.DataFrame
        Columns ``frame, label, y, x, area`` (+ ``mean_intensity``), one row per label,
        sorted by label. Empty (with those columns) for a frame without objects.
    """
    if labels.ndim != 2:
        raise ValueError(f"measure_detections expects a 2-D label image, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"label images must be integer, got dtype {labels.dtype}")
    flat = labels.ravel()
    if flat.size and labels.dtype.kind == "i" and flat.min() < 0:
        raise ValueError("label images must not contain negative labels")
    # Only labelled pixels are visited (objects cover a small part of most frames); the sums run in pixel
    # order as over the whole frame, so the numbers are the same.
    inside = np.flatnonzero(flat)
    values = flat[inside].astype(np.int64)
    area = np.bincount(values)
    present = np.flatnonzero(area)
    rows, cols = np.divmod(inside, labels.shape[1])
    columns: dict[str, np.ndarray] = {
        "frame": np.full(len(present), frame, np.int64),
        "label": present.astype(np.int64),
        "y": np.bincount(values, weights=rows)[present] / area[present],
        "x": np.bincount(values, weights=cols)[present] / area[present],
        "area": area[present].astype(np.int64),
    }
    if image is not None:
        if image.shape != labels.shape:
            raise ValueError(f"image shape {image.shape} differs from label shape {labels.shape}")
        sums = np.bincount(values, weights=image.ravel()[inside].astype(np.float64))
        columns["mean_intensity"] = sums[present] / area[present]
    return pd.DataFrame(columns)


def drop_far_pieces(labels: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """Keep only the largest piece of every label split into pieces far apart.

    The CTC format allows a label in several pieces. A piece farther from the label's largest
    piece than a nucleus' radius (the larger of that piece's equivalent radius and the median one
    of the frame's labels) is not part of the nucleus: measured with it, the nucleus' centre would
    lie between the pieces. Nearer pieces (a mask broken by a thin line, a fragmented marker)
    stay. Pieces are 8-connected.

    Parameters
    ----------
    labels : numpy.ndarray, shape (Y, X), integer
        Label image; 0 is background.

    Returns
    -------
    cleaned : numpy.ndarray, shape (Y, X)
        ``labels`` itself when nothing was dropped, else a copy with the far pieces set to 0.
    split : pandas.DataFrame
        One row per label that lost pieces: ``label``, ``pieces`` (8-connected pieces it had),
        ``gap`` (px between the largest piece and the nearest dropped one), ``kept_area`` and
        ``dropped_area`` (px).
    """
    if labels.ndim != 2:
        raise ValueError(f"drop_far_pieces expects a 2-D label image, got shape {labels.shape}")
    rows: list[tuple[int, int, float, int, int]] = []
    cleaned = labels
    eight = np.ones((3, 3), bool)
    candidates, areas = _labels_maybe_in_pieces(labels, eight)
    if not len(candidates):
        return labels, _empty_split_table()
    typical_radius = float(np.sqrt(np.median(areas) / np.pi))
    ys, xs = np.nonzero(np.isin(labels, candidates))
    boxes = pd.DataFrame({"label": labels[ys, xs], "y": ys, "x": xs}).groupby("label").agg(["min", "max"])
    for label, (y0, y1, x0, x1) in zip(boxes.index, boxes.to_numpy(), strict=True):
        box = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        pieces, n = ndimage.label(labels[box] == label, structure=eight)
        if n < 2:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        largest = int(np.argmax(sizes)) + 1
        radius = max(float(np.sqrt(sizes[largest - 1] / np.pi)), typical_radius)
        distance = ndimage.distance_transform_edt(pieces != largest)
        gaps = ndimage.minimum(distance, pieces, np.arange(1, n + 1))
        far = [p for p in range(1, n + 1) if p != largest and gaps[p - 1] > radius]
        if not far:
            continue
        if cleaned is labels:
            cleaned = labels.copy()
        cleaned[box][np.isin(pieces, far)] = 0
        dropped = int(sizes[np.asarray(far) - 1].sum())
        rows.append((int(label), n, float(min(gaps[p - 1] for p in far)), int(sizes[largest - 1]), dropped))
    table = pd.DataFrame(rows, columns=list(SPLIT_LABEL_COLUMNS)) if rows else _empty_split_table()
    return cleaned, table


def _labels_maybe_in_pieces(labels: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels that may lie in several pieces, and the areas of all labels.

    Candidates span several foreground components, or share one with another label (touching
    nuclei hide a split from the foreground alone).
    """
    foreground = labels > 0
    components, n = ndimage.label(foreground, structure=structure)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    values, areas = np.unique(labels[foreground], return_counts=True)
    label_index = np.searchsorted(values, labels[foreground])
    pairs = np.unique(label_index * np.int64(n + 1) + components[foreground])
    label_of_pair, component_of_pair = np.divmod(pairs, n + 1)
    spanning = label_of_pair[np.bincount(label_of_pair)[label_of_pair] > 1]
    shared = label_of_pair[np.bincount(component_of_pair)[component_of_pair] > 1]
    return values[np.union1d(spanning, shared)].astype(np.int64), areas


def _empty_split_table() -> pd.DataFrame:
    return pd.DataFrame({c: np.zeros(0, float if c == "gap" else np.int64) for c in SPLIT_LABEL_COLUMNS})


def lineage_ids(graph: TrackGraph) -> pd.Series:
    """Lineage (weakly connected component) of every node, numbered 0.. by first frame then node id.

    Returns
    -------
    pandas.Series
        int64 lineage id indexed by node id.
    """
    return _components(graph, np.ones(len(graph.edges), bool))


def tracklet_ids(graph: TrackGraph) -> pd.Series:
    """GEFF tracklets: maximal one-to-one chains, numbered 0.. by first frame then node id.

    Unlike CTC tracks (``graph.tracks()``), a one-to-one link that skips frames does not
    start a new tracklet; only divisions do.

    Returns
    -------
    pandas.Series
        int64 tracklet id indexed by node id.
    """
    out_degree = graph.out_degree()
    keep = out_degree.loc[graph.edges["source"]].to_numpy() == 1
    return _components(graph, keep)


def _components(graph: TrackGraph, keep: np.ndarray) -> pd.Series:
    nodes = graph.nodes
    n = len(nodes)
    if n == 0:
        return pd.Series(np.zeros(0, np.int64), index=nodes.index)
    position = pd.Series(np.arange(n), index=nodes.index)
    src = position.loc[graph.edges["source"]].to_numpy()[keep]
    dst = position.loc[graph.edges["target"]].to_numpy()[keep]
    adjacency = sparse.coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    _, component = connected_components(adjacency, directed=True, connection="weak")
    order = (
        pd.DataFrame({"component": component, "frame": nodes["frame"].to_numpy(), "node": np.arange(n)})
        .groupby("component")[["frame", "node"]]
        .min()
        .sort_values(["frame", "node"])
        .index.to_numpy()
    )
    renumber = np.empty(len(order), np.int64)
    renumber[order] = np.arange(len(order))
    return pd.Series(renumber[component], index=nodes.index, dtype=np.int64)
