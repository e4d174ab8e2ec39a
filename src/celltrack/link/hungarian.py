"""Frame-to-frame Hungarian linking on centroid distance: the plain baseline linker.

Each pair of consecutive frames is one linear assignment problem: linking costs the squared
distance, and every detection may instead end (death) or start (birth) at a fixed cost
derived from the largest allowed displacement. No divisions, no gaps, no appearance.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from celltrack.graph import TrackGraph

logger = logging.getLogger(__name__)


class HungarianConfig(BaseModel):
    """Parameters of :class:`HungarianLinker`."""

    model_config = ConfigDict(extra="forbid")

    max_distance: float = Field(
        25.0, gt=0, description="Largest displacement between frames that may link (px)."
    )


def assign_frame_pair(
    source_yx: np.ndarray, target_yx: np.ndarray, max_distance: float, cost: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one links between two point sets, each point free to stay unlinked.

    Parameters
    ----------
    source_yx : numpy.ndarray, shape (N, 2)
    target_yx : numpy.ndarray, shape (M, 2)
    max_distance : float
        Pairs farther apart are never linked; leaving a point unlinked costs ``max_distance**2``
        on each side, so a link is only made when it is cheaper than a death plus a birth.
    cost : numpy.ndarray, shape (N, M), optional
        Dense costs to use instead of squared distance (``inf`` forbids a pair).

    Returns
    -------
    rows, cols : numpy.ndarray of int
        Indices of linked sources and targets.
    """
    n, m = len(source_yx), len(target_yx)
    if n == 0 or m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tree = cKDTree(target_yx)
    pairs = tree.query_ball_point(source_yx, r=max_distance)
    rows = np.repeat(np.arange(n), [len(p) for p in pairs])
    cols = np.fromiter((c for p in pairs for c in p), np.int64, count=len(rows))
    if len(rows) == 0:
        return rows, cols
    link_cost = np.sum((source_yx[rows] - target_yx[cols]) ** 2, axis=1) if cost is None else cost[rows, cols]
    keep = np.isfinite(link_cost)
    rows, cols, link_cost = rows[keep], cols[keep], link_cost[keep]
    # Solve only the pairs that can link; unreachable points stay unlinked at no extra cost.
    used_rows, row_index = np.unique(rows, return_inverse=True)
    used_cols, col_index = np.unique(cols, return_inverse=True)
    matrix = np.full((len(used_rows), len(used_cols)), np.inf)
    matrix[row_index, col_index] = link_cost
    alternative = float(max_distance) ** 2
    # Jaqaman's block form: a link competes with ending the source and starting the target.
    size = len(used_rows) + len(used_cols)
    block = np.full((size, size), 1e12)
    block[: len(used_rows), : len(used_cols)] = np.where(np.isfinite(matrix), matrix, 1e12)
    block[: len(used_rows), len(used_cols) :][np.diag_indices(len(used_rows))] = alternative
    block[len(used_rows) :, : len(used_cols)][np.diag_indices(len(used_cols))] = alternative
    block[len(used_rows) :, len(used_cols) :] = np.where(np.isfinite(matrix.T), 0.0, 1e12)
    r, c = linear_sum_assignment(block)
    linked = (r < len(used_rows)) & (c < len(used_cols))
    r, c = r[linked], c[linked]
    ok = np.isfinite(matrix[r, c])
    return used_rows[r[ok]], used_cols[c[ok]]


class HungarianLinker:
    """Link detections frame to frame by optimal assignment on distance.

    Parameters
    ----------
    config : HungarianConfig, optional
    """

    def __init__(self, config: HungarianConfig | None = None) -> None:
        self.config = config or HungarianConfig()

    def link(self, detections: pd.DataFrame) -> TrackGraph:
        """Link a detections table.

        Parameters
        ----------
        detections : pandas.DataFrame
            Columns ``frame, label, y, x, area``.

        Returns
        -------
        TrackGraph
            Node ids are the row positions of ``detections``.
        """
        graph = TrackGraph.from_detections(detections)
        nodes = graph.nodes
        by_frame = {f: g for f, g in nodes.groupby("frame")}
        sources, targets = [], []
        for frame in sorted(by_frame):
            nxt = by_frame.get(frame + 1)
            if nxt is None:
                continue
            cur = by_frame[frame]
            r, c = assign_frame_pair(
                cur[["y", "x"]].to_numpy(), nxt[["y", "x"]].to_numpy(), self.config.max_distance
            )
            sources.append(cur.index.to_numpy()[r])
            targets.append(nxt.index.to_numpy()[c])
        if sources:
            return graph.with_edges(np.concatenate(sources), np.concatenate(targets))
        return graph


def link_hungarian(detections: pd.DataFrame, **config: object) -> TrackGraph:
    """Functional wrapper: ``HungarianLinker(HungarianConfig(**config)).link(detections)``."""
    return HungarianLinker(HungarianConfig(**config)).link(detections)
