"""The laptrack side of the whole-process speed comparison: read label images, link, write a CTC result.

What a laptrack user writes to do what ``celltrack track SEQ --detections DIR --out RES`` does: read every
label image, take each object's centroid, link with laptrack (gap closing and splitting on, the search
radius from the measured displacement and nucleus size as in ``baselines.py``), relabel the masks by track
and write ``maskTTT.tif`` + ``res_track.txt``. Only numpy, scipy, tifffile, pandas and laptrack are
imported, as such a script would.

    python benchmarks/laptrack_ctc.py DETECTIONS_DIR RES_DIR
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from laptrack import LapTrack
from scipy.spatial import cKDTree


def read_detections(folder: Path) -> tuple[list[Path], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Label images' paths, and per frame the labels present, their centroids (y, x) and areas."""
    paths = sorted(p for p in folder.glob("*.tif") if p.stem.startswith(("man_track", "mask")))
    labels, centroids, areas = [], [], []
    for path in paths:
        image = tifffile.imread(path)
        flat = image.ravel()
        inside = np.flatnonzero(flat)
        values = flat[inside]
        count = np.bincount(values)
        present = np.flatnonzero(count)
        rows, cols = np.divmod(inside, image.shape[1])
        sums = np.stack([np.bincount(values, rows), np.bincount(values, cols)], axis=1)
        labels.append(present)
        centroids.append(sums[present] / count[present, None])
        areas.append(count[present])
    return paths, labels, centroids, areas


def search_radius(centroids: list[np.ndarray], areas: list[np.ndarray]) -> float:
    """Three 90th-percentile steps, at least 0.75 nucleus diameters (as ``baselines.scale``)."""
    steps = [cKDTree(a).query(b)[0] for a, b in itertools.pairwise(centroids) if len(a) and len(b)]
    step = np.percentile(np.concatenate(steps), 90) if steps else 10.0
    area = np.concatenate(areas)
    diameter = float(np.median(2 * np.sqrt(area / np.pi))) if len(area) else 20.0
    return float(max(3.0 * step, 0.75 * diameter))


def main(detections: str, out: str) -> None:
    paths, labels, centroids, areas = read_detections(Path(detections))
    radius = search_radius(centroids, areas)
    tracker = LapTrack(
        track_cost_cutoff=radius**2,
        gap_closing_cost_cutoff=radius**2,
        gap_closing_max_frame_count=2,
        splitting_cost_cutoff=(1.5 * radius) ** 2,
    )
    table = pd.concat(
        [
            pd.DataFrame({"frame": t, "y": c[:, 0], "x": c[:, 1], "label": lab})
            for t, (c, lab) in enumerate(zip(centroids, labels, strict=True))
        ],
        ignore_index=True,
    )
    track_df, split_df, _ = tracker.predict_dataframe(table, ["y", "x"], only_coordinate_cols=False)
    # CTC labels: laptrack's tracks cut where a gap was closed (a CTC label has no gaps), parents from the
    # gaps and the splits.
    track_df = track_df.sort_values(["track_id", "frame"])
    frame, track = track_df["frame"].to_numpy(), track_df["track_id"].to_numpy()
    new_piece = np.r_[True, (track[1:] != track[:-1]) | (frame[1:] != frame[:-1] + 1)]
    ctc = np.cumsum(new_piece)
    track_df["ctc"] = ctc
    first_piece = pd.Series(ctc[new_piece], index=track[new_piece]).groupby(level=0).min()
    last_piece = pd.Series(ctc, index=track).groupby(level=0).max()
    parent = np.zeros(ctc.max() + 1, np.int64)
    starts, start_track = ctc[new_piece], track[new_piece]
    parent[starts[1:]] = np.where(start_track[1:] == start_track[:-1], starts[:-1], 0)
    for parent_track, child_track in split_df[["parent_track_id", "child_track_id"]].to_numpy():
        parent[first_piece[child_track]] = last_piece[parent_track]
    spans = track_df.groupby("ctc")["frame"].agg(["min", "max"])
    res = Path(out)
    res.mkdir(parents=True, exist_ok=True)
    lines = [f"{c} {row['min']} {row['max']} {parent[c]}" for c, row in spans.iterrows()]
    (res / "res_track.txt").write_text("\n".join(lines) + "\n")
    by_frame = dict(tuple(track_df.groupby("frame")))
    for t, path in enumerate(paths):
        image = tifffile.imread(path)
        lut = np.zeros(int(image.max()) + 1, np.uint16)
        part = by_frame.get(t)
        if part is not None:
            lut[part["label"].to_numpy()] = part["ctc"].to_numpy()
        tifffile.imwrite(res / f"mask{t:03d}.tif", lut[image], compression="zlib")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
