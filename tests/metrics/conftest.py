"""Fixtures of the metric tests: a tiny hand-built movie with exact ground truth.

Layout (8 frames, 100x100, nuclei are discs of radius 6, TRA markers discs of radius 2 at the centre):

- cell 1 ("A") moves right along y = 15,
- cell 2 ("E") moves right along y = 50 (35 px from A: a swap moves a centroid > 20 px),
- cell 3 ("B") sits at y = 82 for frames 0-3 and divides into cells 4 and 5 (frames 4-7),
  which move apart along the same row.

A is alone in its row, so its mask can be stretched to the right without touching other cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from celltrack.graph import TrackGraph
from celltrack.io import detections_from_sequence, paint_markers, write_ctc_dataset, write_ctc_result


@dataclass
class Movie:
    """Ground truth of the tiny movie: (T, Y, X) arrays and the ``label, begin, end, parent`` table."""

    N_FRAMES: ClassVar[int] = 8
    SHAPE: ClassVar[tuple[int, int]] = (100, 100)
    CELL_RADIUS: ClassVar[float] = 6.0
    MARKER_RADIUS: ClassVar[float] = 2.0
    A: ClassVar[int] = 1
    E: ClassVar[int] = 2
    B: ClassVar[int] = 3
    C: ClassVar[int] = 4
    D: ClassVar[int] = 5
    DIVISION_FRAME: ClassVar[int] = 4  # first frame of the daughters

    images: np.ndarray
    labels: np.ndarray
    markers: np.ndarray
    tracks: pd.DataFrame

    @property
    def n_gt_nodes(self) -> int:
        return sum(len(np.unique(m[m > 0])) for m in self.markers)

    def prediction(self) -> tuple[TrackGraph, np.ndarray]:
        """The GT lineage as a prediction: nodes at mask centroids, label images = copies of the GT masks."""
        labels = self.labels.copy()
        return TrackGraph.from_ctc(detections_from_sequence(labels), self.tracks), labels


def cell_centres() -> pd.DataFrame:
    """Rows ``frame, label, y, x`` (integer pixel centres) of every cell in every frame."""
    m = Movie
    rows = []
    for t in range(m.N_FRAMES):
        rows.append((t, m.A, 15, 10 + 3 * t))
        rows.append((t, m.E, 50, 12 + 3 * t))
        if t < m.DIVISION_FRAME:
            rows.append((t, m.B, 82, 40 + t))
        else:
            rows.append((t, m.C, 82, 35 - 2 * (t - m.DIVISION_FRAME)))
            rows.append((t, m.D, 82, 51 + 2 * (t - m.DIVISION_FRAME)))
    return pd.DataFrame(rows, columns=["frame", "label", "y", "x"])


def build_movie() -> Movie:
    m = Movie
    labels = np.zeros((m.N_FRAMES, *m.SHAPE), np.uint16)
    markers = np.zeros((m.N_FRAMES, *m.SHAPE), np.uint16)
    for t, rows in cell_centres().groupby("frame"):
        ys, xs, ids = rows["y"].to_numpy(), rows["x"].to_numpy(), rows["label"].to_numpy()
        labels[t] = paint_markers(m.SHAPE, ys, xs, ids, m.CELL_RADIUS)
        markers[t] = paint_markers(m.SHAPE, ys, xs, ids, m.MARKER_RADIUS)
    images = (100 + 400 * (labels > 0)).astype(np.uint16)
    last = m.N_FRAMES - 1
    tracks = pd.DataFrame(
        [(m.A, 0, last, 0), (m.E, 0, last, 0), (m.B, 0, m.DIVISION_FRAME - 1, 0),
         (m.C, m.DIVISION_FRAME, last, m.B), (m.D, m.DIVISION_FRAME, last, m.B)],
        columns=["label", "begin", "end", "parent"],
    )
    return Movie(images, labels, markers, tracks)


@pytest.fixture(scope="session")
def tiny_movie() -> Movie:
    return build_movie()


@pytest.fixture(scope="session")
def tiny_gt_dir(tmp_path_factory: pytest.TempPathFactory, tiny_movie: Movie) -> Path:
    """``NN_GT`` folder (TRA + SEG on every frame) of the tiny movie."""
    root = tmp_path_factory.mktemp("tiny") / "dataset"
    write_ctc_dataset(tiny_movie.images, tiny_movie.labels, tiny_movie.markers, tiny_movie.tracks, root)
    return root / "01_GT"


WriteResult = Callable[..., Path]


@pytest.fixture
def write_result(tmp_path: Path) -> WriteResult:
    """``write(graph, labels, name="01_RES")`` -> a CTC result folder in ``tmp_path``."""

    def write(graph: TrackGraph, labels: np.ndarray, name: str = "01_RES") -> Path:
        return write_ctc_result(
            graph, tmp_path / name, labels.shape[1:], labels.shape[0], label_source=lambda t: labels[t]
        )

    return write
