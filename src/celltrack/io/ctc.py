"""Cell Tracking Challenge (CTC) ground truth and results.

Reads ``NN_GT`` / ``NN_ST`` folders and ``man_track.txt`` tables, and writes CTC result
folders (``maskTTT.tif`` + ``res_track.txt``) from a :class:`~celltrack.graph.TrackGraph`,
checked against the CTC rules before anything is moved into place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from celltrack.graph import TRACK_COLUMNS, TrackGraph, drop_far_pieces, measure_detections, relabel_frame
from celltrack.io.atomic import atomic_output_dir
from celltrack.io.sequence import ImageSequence, list_frame_files, open_sequence

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- track tables
def parse_track_table(text: str, source: str = "<track table>") -> pd.DataFrame:
    """Parse and validate the text of a ``man_track.txt`` / ``res_track.txt``.

    Parameters
    ----------
    text : str
        Lines ``L B E P`` separated by spaces or tabs.
    source : str
        Name used in error messages.

    Returns
    -------
    pandas.DataFrame
        Columns ``label, begin, end, parent`` (int64).

    Raises
    ------
    ValueError
        Lines without exactly four integers, non-positive or duplicate labels, begin > end,
        unknown parents, children that begin before their parent ends, and parent cycles.
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4:
            raise ValueError(
                f"{source}: line {number} has {len(parts)} columns, expected 4 (L B E P); fix the track file"
            )
        try:
            rows.append([int(p) for p in parts])
        except ValueError as err:
            raise ValueError(f"{source}: line {number} holds a non-integer value {line.strip()!r}") from err
    table = pd.DataFrame(rows or np.zeros((0, 4), np.int64), columns=list(TRACK_COLUMNS)).astype(np.int64)
    validate_track_table(table, source)
    return table


def validate_track_table(table: pd.DataFrame, source: str = "<track table>") -> None:
    """Check a ``label, begin, end, parent`` table against the CTC rules (see :func:`parse_track_table`)."""
    if (table["label"] <= 0).any():
        raise ValueError(f"{source}: track labels must be positive integers")
    if table["label"].duplicated().any():
        dup = table.loc[table["label"].duplicated(), "label"].iloc[0]
        raise ValueError(f"{source}: track label {dup} is listed twice")
    if (table["begin"] < 0).any() or (table["begin"] > table["end"]).any():
        bad = table[(table["begin"] < 0) | (table["begin"] > table["end"])].iloc[0]
        raise ValueError(f"{source}: track {bad['label']} has begin {bad['begin']} > end {bad['end']} or < 0")
    by_label = table.set_index("label")
    with_parent = table[table["parent"] != 0]
    unknown = ~with_parent["parent"].isin(by_label.index)
    if unknown.any():
        row = with_parent[unknown].iloc[0]
        raise ValueError(f"{source}: track {row['label']} names parent {row['parent']}, which is not a track")
    parent_end = by_label.loc[with_parent["parent"], "end"].to_numpy()
    early = with_parent["begin"].to_numpy() <= parent_end
    if early.any():
        row = with_parent[early].iloc[0]
        raise ValueError(
            f"{source}: track {row['label']} begins at frame {row['begin']} before its parent "
            f"{row['parent']} ends; a child must start after its parent"
        )
    # begin > parent's end on every edge makes cycles impossible, but a self-parent slips through.
    if (with_parent["parent"] == with_parent["label"]).any():
        raise ValueError(f"{source}: a track is its own parent (a cycle)")


def read_track_table(path: str | Path) -> pd.DataFrame:
    """Read and validate ``man_track.txt`` / ``res_track.txt`` (see :func:`parse_track_table`)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: track file not found; a CTC folder needs man_track.txt or res_track.txt")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read the track file ({err})") from err
    return parse_track_table(text, str(path))


read_man_track = read_track_table


def format_track_table(table: pd.DataFrame) -> str:
    """The CTC text of a ``label, begin, end, parent`` table."""
    return "".join(f"{r.label} {r.begin} {r.end} {r.parent}\n" for r in table.itertuples(index=False))


# ---------------------------------------------------------------------- ground truth
@dataclass
class GroundTruth:
    """A CTC ``NN_GT`` (or ``NN_ST``) folder.

    Attributes
    ----------
    root : pathlib.Path
    tra : ImageSequence or None
        TRA marker frames (``man_trackTTT.tif``), lazily read.
    tracks : pandas.DataFrame or None
        ``man_track.txt`` as ``label, begin, end, parent``.
    seg : dict of int to pathlib.Path
        Frame index to ``man_segTTT.tif`` (usually a subset of frames).
    """

    root: Path
    tra: ImageSequence | None
    tracks: pd.DataFrame | None
    seg: dict[int, Path] = field(default_factory=dict)

    def read_seg(self, frame: int) -> np.ndarray:
        """The SEG mask of ``frame`` (only frames in :attr:`seg`)."""
        if frame not in self.seg:
            raise ValueError(
                f"{self.root}: no SEG mask for frame {frame}; SEG frames are {sorted(self.seg)[:10]}"
            )
        return tifffile.imread(self.seg[frame])

    def detections(self) -> pd.DataFrame:
        """Centroids and areas of all TRA markers (``frame, label, y, x, area``)."""
        if self.tra is None:
            raise ValueError(f"{self.root}: no TRA folder; tracking ground truth needs NN_GT/TRA")
        return detections_from_sequence(self.tra)

    def graph(self) -> TrackGraph:
        """The ground-truth lineage as a :class:`TrackGraph` (nodes at TRA marker centroids)."""
        if self.tracks is None:
            raise ValueError(f"{self.root}: no man_track.txt in TRA")
        return TrackGraph.from_ctc(self.detections(), self.tracks)


def read_gt(gt_dir: str | Path) -> GroundTruth:
    """Open a CTC ground-truth folder (``NN_GT`` or silver truth ``NN_ST``).

    Parameters
    ----------
    gt_dir : str or pathlib.Path
        Folder containing ``TRA/`` (markers + ``man_track.txt``) and/or ``SEG/``.

    Returns
    -------
    GroundTruth
    """
    root = Path(gt_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: ground-truth folder not found; pass the NN_GT (or NN_ST) folder")
    tra_dir, seg_dir = root / "TRA", root / "SEG"
    if not tra_dir.is_dir() and not seg_dir.is_dir():
        raise ValueError(f"{root}: neither TRA/ nor SEG/ inside; pass the NN_GT folder, not its parent")
    tra = tracks = None
    if tra_dir.is_dir():
        tra = open_sequence(tra_dir, prefix="man_track")
        tracks = read_track_table(tra_dir / "man_track.txt")
    seg: dict[int, Path] = {}
    if seg_dir.is_dir():
        _, seg = list_frame_files(seg_dir, prefix="man_seg")
    return GroundTruth(root, tra, tracks, seg)


def label_frame(labels: ImageSequence, t: int) -> np.ndarray:
    """Frame ``t`` of a label movie, checked, with far pieces of split labels dropped.

    A label split into pieces far apart (allowed by the CTC format) keeps its largest piece as
    the nucleus, with a warning naming the file and the label (:func:`celltrack.graph.drop_far_pieces`).

    Raises
    ------
    ValueError
        A frame that is not an integer label image, or holds negative labels; the message names the file.
    """
    frame = labels[t]
    where = labels.paths[t] if labels.paths else f"{labels.source} frame {t}"
    if frame.dtype.kind not in "ui":
        raise ValueError(f"{where}: expected integer label images, got {frame.dtype}")
    if frame.dtype.kind == "i" and frame.min(initial=0) < 0:
        raise ValueError(f"{where}: holds negative labels; labels must be 0 (background) or positive")
    frame, split = drop_far_pieces(frame)
    for row in split.itertuples(index=False):
        logger.warning(
            "%s: label %d lies in %d pieces up to %.0f px apart; the largest (%d px) is taken as the "
            "nucleus and %d px elsewhere are ignored",
            where,
            row.label,
            row.pieces,
            row.gap,
            row.kept_area,
            row.dropped_area,
        )
    return frame


def detections_from_sequence(
    labels: ImageSequence | Iterable[np.ndarray], images: ImageSequence | None = None
) -> pd.DataFrame:
    """Detections of every frame of a label movie (see :func:`celltrack.graph.measure_detections`).

    Frames of an :class:`ImageSequence` are read by :func:`label_frame`: a label split into pieces
    far apart is measured on its largest piece, with a warning.
    """
    tables = []
    if isinstance(labels, ImageSequence):
        frames: Iterable[np.ndarray] = (label_frame(labels, t) for t in range(len(labels)))
    else:
        frames = labels
    for t, frame in enumerate(frames):
        image = images[t] if images is not None else None
        tables.append(measure_detections(frame, t, image))
    if not tables:
        return measure_detections(np.zeros((1, 1), np.uint16), 0)
    return pd.concat(tables, ignore_index=True)


# ---------------------------------------------------------------------- results
def frame_name(prefix: str, t: int, n_frames: int) -> str:
    """CTC file name of frame ``t`` (3 digits, 4 when the movie has more than 1,000 frames)."""
    digits = 4 if n_frames > 1000 else 3
    return f"{prefix}{t:0{digits}d}.tif"


def paint_markers(
    shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, values: np.ndarray, radius: float | np.ndarray
) -> np.ndarray:
    """Discs at (y, x) with the given label values; later discs overwrite earlier ones.

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)`` of the output.
    ys, xs, values : numpy.ndarray, shape (N,)
        Disc centres and labels.
    radius : float or numpy.ndarray, shape (N,)
        Disc radius (px), one for all or one per disc.

    Returns
    -------
    numpy.ndarray, shape ``shape``, uint32
    """
    radii = np.broadcast_to(np.asarray(radius, float), np.shape(ys))
    if radii.size and not np.all(radii == radii.flat[0]):
        out = np.zeros(shape, np.uint32)
        # Large discs first so that a small neighbour drawn later is not swallowed whole.
        for r in np.unique(radii)[::-1]:
            one = radii == r
            ys_r, xs_r, values_r = np.asarray(ys)[one], np.asarray(xs)[one], np.asarray(values)[one]
            painted = paint_markers(shape, ys_r, xs_r, values_r, r)
            out = np.where(painted > 0, painted, out)
        # Every disc keeps at least its centre pixel, so overlapping discs never hide a track.
        return _stamp_centres(out, ys, xs, values)
    radius = float(radii.flat[0]) if radii.size else 1.0
    out = np.zeros(shape, np.uint32)
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = dy**2 + dx**2 <= radius**2
    dy, dx = dy[inside], dx[inside]
    cy = np.rint(np.asarray(ys, float)).astype(np.int64)[:, None] + dy[None]
    cx = np.rint(np.asarray(xs, float)).astype(np.int64)[:, None] + dx[None]
    val = np.broadcast_to(np.asarray(values, np.uint32)[:, None], cy.shape)
    ok = (cy >= 0) & (cy < shape[0]) & (cx >= 0) & (cx < shape[1])
    out[cy[ok], cx[ok]] = val[ok]
    return _stamp_centres(out, ys, xs, values)


def _stamp_centres(out: np.ndarray, ys: np.ndarray, xs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Write each disc's centre pixel last (clipped into the frame) so that every disc stays visible."""
    cy = np.clip(np.rint(np.asarray(ys, float)).astype(np.int64), 0, out.shape[0] - 1)
    cx = np.clip(np.rint(np.asarray(xs, float)).astype(np.int64), 0, out.shape[1] - 1)
    out[cy, cx] = np.asarray(values, out.dtype)
    return out


def render_result_masks(
    graph: TrackGraph,
    frame_shape: tuple[int, int],
    n_frames: int,
    label_source: Callable[[int], np.ndarray] | None = None,
    marker_radius: float = 3.0,
) -> Iterable[tuple[int, np.ndarray]]:
    """Yield ``(t, mask)`` CTC result masks in which every pixel carries its track id.

    Nodes with ``label > 0`` take their object from ``label_source(t)``; nodes with
    ``label == 0`` (no segmented object: a tracker-only position or a gap) get a disc at
    their centroid, of the node's ``area`` when it is positive, else of ``marker_radius``.
    Discs are drawn under objects, but each disc's centre pixel is written last, so every
    track stays visible in every frame it spans.
    """
    assignment = graph.tracks()
    nodes = graph.nodes.assign(track_id=assignment.node_track)
    by_frame = dict(tuple(nodes.groupby("frame")))
    dtype = np.uint16 if len(assignment.tracks) <= np.iinfo(np.uint16).max else np.uint32
    for t in range(n_frames):
        mask = np.zeros(frame_shape, dtype)
        frame_nodes = by_frame.get(t)
        if frame_nodes is not None:
            with_object = frame_nodes[frame_nodes["label"] > 0]
            if len(with_object):
                if label_source is None:
                    raise ValueError("nodes refer to label images but no label source was given")
                labels = np.asarray(label_source(t))
                if labels.shape != tuple(frame_shape):
                    raise ValueError(
                        f"label image of frame {t} has shape {labels.shape}, expected {frame_shape}"
                    )
                mask = relabel_frame(
                    labels, with_object["label"].to_numpy(), with_object["track_id"].to_numpy()
                ).astype(dtype)
            markers = frame_nodes[frame_nodes["label"] <= 0]
            if len(markers):
                area = markers["area"].to_numpy(float)
                radius = np.where(area > 0, np.sqrt(np.maximum(area, 1.0) / np.pi), marker_radius)
                painted = paint_markers(
                    frame_shape,
                    markers["y"].to_numpy(),
                    markers["x"].to_numpy(),
                    markers["track_id"].to_numpy(),
                    radius,
                )
                # Objects keep their pixels; a disc keeps at least its centre, so no track disappears.
                mask = np.where(mask > 0, mask, painted).astype(dtype)
                mask = _stamp_centres(
                    mask, markers["y"].to_numpy(), markers["x"].to_numpy(), markers["track_id"].to_numpy()
                )
        yield t, mask


def write_ctc_result(
    graph: TrackGraph,
    out_dir: str | Path,
    frame_shape: tuple[int, int],
    n_frames: int,
    label_source: Callable[[int], np.ndarray] | None = None,
    marker_radius: float = 3.0,
    overwrite: bool = False,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a CTC result folder atomically and check it against the CTC rules.

    Parameters
    ----------
    graph : TrackGraph
        The tracking result.
    out_dir : str or pathlib.Path
        Target folder (``NN_RES``); replaced only with ``overwrite``.
    frame_shape : tuple of int
        ``(Y, X)`` of the masks.
    n_frames : int
        Number of masks to write (frames without nodes get an empty mask).
    label_source : callable, optional
        ``label_source(t) -> (Y, X) int array``: the label image that node labels refer to.
    marker_radius : float
        Disc radius for nodes without an object.
    overwrite : bool
        Replace an existing ``out_dir``.
    extra_files : dict of str to bytes, optional
        More files to place in the folder (e.g. the track table, the run record).

    Returns
    -------
    pathlib.Path
        The written folder.
    """
    assignment = graph.tracks()
    with atomic_output_dir(out_dir, overwrite) as tmp:
        seen: dict[int, list[int]] = {}
        for t, mask in render_result_masks(graph, frame_shape, n_frames, label_source, marker_radius):
            tifffile.imwrite(tmp / frame_name("mask", t, n_frames), mask, compression="zlib")
            for label in np.unique(mask[mask > 0]):
                seen.setdefault(int(label), []).append(t)
        tracks = assignment.tracks
        check_masks_against_tracks(seen, tracks, str(out_dir))
        (tmp / "res_track.txt").write_text(format_track_table(tracks), encoding="utf-8")
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
    return Path(out_dir)


def check_masks_against_tracks(seen: dict[int, list[int]], tracks: pd.DataFrame, source: str) -> None:
    """The CTC consistency rules between masks and the track table.

    Parameters
    ----------
    seen : dict of int to list of int
        Label to the frames whose mask contains it.
    tracks : pandas.DataFrame
        ``label, begin, end, parent``.
    source : str
        Folder named in errors.

    Raises
    ------
    ValueError
        A label in the masks without a track, a track whose frames in the masks differ from
        ``begin..end`` (missing or extra frames), or an invalid table.
    """
    validate_track_table(tracks, source)
    spans = tracks.set_index("label")
    unknown = sorted(set(seen) - set(spans.index))
    if unknown:
        raise ValueError(f"{source}: mask labels {unknown[:5]} have no row in res_track.txt")
    for label, row in spans.iterrows():
        frames = seen.get(int(label), [])
        expected = list(range(int(row["begin"]), int(row["end"]) + 1))
        if sorted(frames) != expected:
            raise ValueError(
                f"{source}: track {label} spans frames {row['begin']}-{row['end']} in res_track.txt but "
                f"appears in {len(frames)} masks ({sorted(frames)[:3]}…); masks and table disagree"
            )


def validate_ctc_result(res_dir: str | Path) -> pd.DataFrame:
    """Check a CTC result folder (``maskTTT.tif`` + ``res_track.txt``) by the CTC rules.

    Returns
    -------
    pandas.DataFrame
        The validated track table.
    """
    res_dir = Path(res_dir)
    tracks = read_track_table(res_dir / "res_track.txt")
    masks = open_sequence(res_dir, prefix="mask")
    if masks.dtype.kind not in "ui":
        raise ValueError(f"{res_dir}: result masks must be integer label images, got {masks.dtype}")
    seen: dict[int, list[int]] = {}
    for t, mask in enumerate(masks):
        for label in np.unique(mask[mask > 0]):
            seen.setdefault(int(label), []).append(t)
    check_masks_against_tracks(seen, tracks, str(res_dir))
    return tracks


def write_sequence(
    frames: Iterable[np.ndarray], out_dir: str | Path, prefix: str = "t", overwrite: bool = False
) -> Path:
    """Write frames as a CTC folder (``t000.tif`` …) atomically."""
    frames = list(frames) if not hasattr(frames, "__len__") else frames
    n = len(frames)  # type: ignore[arg-type]
    with atomic_output_dir(out_dir, overwrite) as tmp:
        for t, frame in enumerate(frames):
            tifffile.imwrite(tmp / frame_name(prefix, t, n), np.asarray(frame), compression="zlib")
    return Path(out_dir)


def write_ctc_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    markers: np.ndarray,
    tracks: pd.DataFrame | np.ndarray,
    out_dir: str | Path,
    sequence: str = "01",
    overwrite: bool = False,
) -> Path:
    """Write a movie with full ground truth in the CTC layout.

    Creates ``out_dir/NN`` (raw ``tTTT.tif``), ``out_dir/NN_GT/TRA`` (``man_trackTTT.tif`` +
    ``man_track.txt``) and ``out_dir/NN_GT/SEG`` (``man_segTTT.tif``), all in one atomic move.

    Parameters
    ----------
    images, labels, markers : numpy.ndarray, shape (T, Y, X)
        Raw frames, instance masks and TRA markers (labels = track labels).
    tracks : pandas.DataFrame or numpy.ndarray, shape (N, 4)
        ``label, begin, end, parent``.
    """
    if not (images.shape == labels.shape == markers.shape) or images.ndim != 3:
        raise ValueError(
            f"images {images.shape}, labels {labels.shape} and markers {markers.shape} "
            "must share one shape (T, Y, X)"
        )
    table = pd.DataFrame(np.asarray(tracks, np.int64).reshape(-1, 4), columns=list(TRACK_COLUMNS))
    validate_track_table(table, "synthetic tracks")
    n = images.shape[0]
    with atomic_output_dir(out_dir, overwrite) as tmp:
        raw, tra, seg = tmp / sequence, tmp / f"{sequence}_GT" / "TRA", tmp / f"{sequence}_GT" / "SEG"
        for folder in (raw, tra, seg):
            folder.mkdir(parents=True)
        for t in range(n):
            tifffile.imwrite(raw / frame_name("t", t, n), images[t], compression="zlib")
            tifffile.imwrite(
                tra / frame_name("man_track", t, n), markers[t].astype(np.uint16), compression="zlib"
            )
            tifffile.imwrite(
                seg / frame_name("man_seg", t, n), labels[t].astype(np.uint16), compression="zlib"
            )
        (tra / "man_track.txt").write_text(format_track_table(table), encoding="utf-8")
    return Path(out_dir)


def find_ground_truth(seq_dir: str | Path) -> dict[str, Path]:
    """The CTC ground-truth folders beside a sequence folder ``NN``: ``NN_GT`` and ``NN_ST`` when present."""
    seq_dir = Path(seq_dir)
    found = {}
    for kind in ("GT", "ST"):
        candidate = seq_dir.with_name(f"{seq_dir.name}_{kind}")
        if candidate.is_dir():
            found[kind] = candidate
    return found


def describe_sequence(path: str | Path) -> dict[str, object]:
    """A JSON-friendly summary of a movie and the ground truth beside it.

    Returns
    -------
    dict
        ``source, frames, shape, dtype`` and, where found, ``gt``/``st`` folders, number of GT
        tracks and divisions, SEG frames, and ``nuclei_per_frame`` counted from the TRA markers.
    """
    seq = open_sequence(path)
    info: dict[str, object] = {
        "source": str(path),
        "frames": len(seq),
        "shape": list(seq.frame_shape),
        "dtype": str(seq.dtype),
    }
    for kind, folder in find_ground_truth(path).items():
        gt = read_gt(folder)
        info[kind.lower()] = str(folder)
        if kind == "GT" and gt.tracks is not None and gt.tra is not None:
            info["gt_tracks"] = len(gt.tracks)
            info["gt_divisions"] = int(gt.tracks.loc[gt.tracks["parent"] > 0, "parent"].nunique())
            info["nuclei_per_frame"] = [int(len(np.unique(frame)) - (frame == 0).any()) for frame in gt.tra]
        info[f"{kind.lower()}_seg_frames"] = len(gt.seg)
    return info
