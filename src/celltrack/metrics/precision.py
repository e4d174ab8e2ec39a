"""The Wu et al. (2013) precision curve, as the correlation-filter tracking study used it.

Every ground-truth cell is followed by the predicted track that covers its marker in the
first compared frame (more than half of the marker's pixels), until the GT cell ends
(death, division or end of movie). Frame by frame, the predicted centroid either lies within
``k`` pixels of the GT marker centroid or not; a predicted track that ends, divides or skips
the frame scores a miss. ``precision@k`` is the share of compared frames within ``k`` pixels.

"Cells" on both sides are chains of single-successor links, gaps included: a track whose
only child continues it after a gap is the same cell (the CTC file format splits it in two).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from celltrack.graph import TrackGraph
from celltrack.metrics.base import LabelSource, TrackingData, read_label_frame

logger = logging.getLogger(__name__)

REPORTED_THRESHOLDS: tuple[float, ...] = (5.0, 10.0, 20.0)


class PrecisionConfig(BaseModel):
    """Settings of the precision curve.

    Attributes
    ----------
    max_distance : float
        Largest location-error threshold of the curve, pixels (curve runs 0..max_distance).
    step : float
        Threshold spacing, pixels.
    report_at : tuple of float
        Thresholds (pixels) reported as ``P@k`` scores.
    from_frame : int or None
        Only GT cells present in this frame, each followed from it (a tracker initialised on
        that frame's nuclei); None follows every GT cell from its first frame.
    min_coverage : float
        Share of the marker's pixels the predicted object must cover to be the one followed
        (strictly more than this; 0.5 is the CTC matching rule and keeps the match unique).
    """

    model_config = ConfigDict(extra="forbid")

    max_distance: float = Field(50.0, gt=0)
    step: float = Field(1.0, gt=0)
    report_at: tuple[float, ...] = REPORTED_THRESHOLDS
    from_frame: int | None = Field(None, ge=0)
    min_coverage: float = Field(0.5, ge=0.5, lt=1.0)


@dataclass(frozen=True)
class PrecisionCurve:
    """A precision curve and the per-frame comparisons behind it.

    Attributes
    ----------
    thresholds : numpy.ndarray, shape (K,)
        Location-error thresholds, pixels.
    precision : numpy.ndarray, shape (K,)
        Share of compared frames with error <= threshold (NaN when nothing was compared).
    pairs : pandas.DataFrame
        One row per compared GT frame: ``gt_node, gt_cell, frame, pred_node`` (-1 when the
        followed prediction has no node in that frame) and ``distance`` (inf for a miss).
    n_cells : int
        Number of GT cells followed.
    from_frame : int or None
        See :class:`PrecisionConfig`.
    """

    thresholds: np.ndarray
    precision: np.ndarray
    pairs: pd.DataFrame
    n_cells: int
    from_frame: int | None = None

    @property
    def n_compared(self) -> int:
        """Number of compared GT frames (the denominator of every precision value)."""
        return len(self.pairs)

    def at(self, k: float) -> float:
        """Precision at threshold ``k`` pixels (any ``k``, not only the curve's thresholds)."""
        if not len(self.pairs):
            return float("nan")
        return float(np.mean(self.pairs["distance"].to_numpy() <= k))


def cell_segments(graph: TrackGraph) -> pd.Series:
    """Cell id of every node: chains of links whose source has exactly one successor.

    Unlike CTC tracks, a chain continues across gaps (a link skipping frames), so a cell
    lost for a frame and found again stays one cell; divisions end the mother's chain.

    Returns
    -------
    pandas.Series
        Cell id (0..C-1) indexed by node id.
    """
    nodes = graph.nodes
    n = len(nodes)
    if n == 0:
        return pd.Series(np.zeros(0, np.int64), index=nodes.index, name="cell")
    position = pd.Series(np.arange(n), index=nodes.index)
    src = position.loc[graph.edges["source"]].to_numpy()
    dst = position.loc[graph.edges["target"]].to_numpy()
    single = np.bincount(src, minlength=n)[src] == 1
    chain = sparse.coo_matrix((np.ones(int(single.sum())), (src[single], dst[single])), shape=(n, n))
    _, cell = connected_components(chain, directed=True, connection="weak")
    return pd.Series(cell.astype(np.int64), index=nodes.index, name="cell")


def marker_coverage(markers: np.ndarray, labels: np.ndarray, min_coverage: float = 0.5) -> pd.Series:
    """Which predicted object covers each GT marker.

    Parameters
    ----------
    markers : numpy.ndarray, shape (Y, X), integer
        GT marker labels of one frame (0 = background).
    labels : numpy.ndarray, shape (Y, X), integer
        Predicted object labels of the same frame.
    min_coverage : float
        The object must cover strictly more than this share of the marker's pixels (>= 0.5).

    Returns
    -------
    pandas.Series
        Covering predicted label (0 if none) indexed by every marker label present.
    """
    if markers.shape != labels.shape:
        raise ValueError(f"GT marker image {markers.shape} and predicted label image {labels.shape} differ")
    inside = markers > 0
    gt = markers[inside].astype(np.int64)
    pred = labels[inside].astype(np.int64)
    area = np.bincount(gt)
    present = np.flatnonzero(area)
    covering = pd.Series(np.zeros(len(present), np.int64), index=present, name="pred_label")
    if not len(gt):
        return covering
    # Pair counts over marker pixels only: markers are small, so this stays cheap on full frames.
    stride = int(pred.max()) + 1
    pair, count = np.unique(gt * stride + pred, return_counts=True)
    gt_of_pair, pred_of_pair = np.divmod(pair, stride)
    wins = (pred_of_pair > 0) & (count > min_coverage * area[gt_of_pair])
    covering.loc[gt_of_pair[wins]] = pred_of_pair[wins]
    return covering


def _take(values: np.ndarray, positions: np.ndarray, fill: float) -> np.ndarray:
    """``values[positions]`` with ``fill`` where a position is -1 (also for empty ``values``)."""
    out = np.full(len(positions), fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
    found = positions >= 0
    out[found] = values[positions[found]]
    return out


def _lookup(index: pd.MultiIndex, keys: list[np.ndarray]) -> np.ndarray:
    """Positions of ``keys`` in a unique MultiIndex, -1 where absent."""
    if not len(keys[0]):
        return np.zeros(0, np.int64)
    return index.get_indexer(pd.MultiIndex.from_arrays(keys))


class WuPrecision:
    """Precision curve of Wu et al. 2013 (see the module docstring).

    Parameters
    ----------
    config : PrecisionConfig, optional
    **overrides
        Fields of :class:`PrecisionConfig` (e.g. ``from_frame=10``).
    """

    name = "precision"

    def __init__(self, config: PrecisionConfig | None = None, **overrides: object) -> None:
        base = config.model_dump() if config is not None else {}
        self.config = PrecisionConfig(**{**base, **overrides})

    def thresholds(self) -> np.ndarray:
        """Curve thresholds 0..max_distance, pixels, shape (K,)."""
        cfg = self.config
        return np.arange(0.0, cfg.max_distance + cfg.step / 2, cfg.step)

    def curve(
        self,
        gt_graph: TrackGraph,
        gt_markers: LabelSource,
        pred_graph: TrackGraph,
        pred_labels: LabelSource,
    ) -> PrecisionCurve:
        """Compute the curve.

        Parameters
        ----------
        gt_graph : TrackGraph
            GT lineage; node ``label`` = marker label in ``gt_markers``, ``y, x`` = marker centroid.
        gt_markers : LabelSource
            GT marker images (Y, X); only the frames where a followed cell starts are read.
        pred_graph : TrackGraph
            Predicted lineage; node ``label`` = object label in ``pred_labels``, ``y, x`` = object centroid.
        pred_labels : LabelSource
            Predicted label images (Y, X), read for the same frames as ``gt_markers``.

        Returns
        -------
        PrecisionCurve

        Raises
        ------
        ValueError
            ``from_frame`` holds no GT node, or two predicted nodes share a (frame, label).
        """
        cfg = self.config
        gt = gt_graph.nodes[["frame", "label", "y", "x"]].assign(cell=cell_segments(gt_graph))
        pred = pred_graph.nodes[["frame", "label", "y", "x"]].assign(cell=cell_segments(pred_graph))
        located = pred[pred["label"] > 0]
        if located.duplicated(["frame", "label"]).any():
            row = located.loc[located.duplicated(["frame", "label"]), ["frame", "label"]].iloc[0]
            raise ValueError(
                f"predicted graph has two nodes with label {int(row['label'])} in frame {int(row['frame'])}; "
                "node labels must be unique per frame"
            )

        if cfg.from_frame is None:
            starts = gt.loc[gt.groupby("cell")["frame"].idxmin()]
            compared = gt
        else:
            starts = gt[gt["frame"] == cfg.from_frame]
            if not len(starts):
                frames = gt["frame"]
                span = f"{frames.min()}..{frames.max()}" if len(frames) else "none"
                raise ValueError(
                    f"from_frame={cfg.from_frame}: the ground truth has no cell in that frame "
                    f"(GT frames {span}); choose a frame with annotated nuclei"
                )
            compared = gt[gt["cell"].isin(starts["cell"]) & (gt["frame"] >= cfg.from_frame)]

        # The followed prediction of each GT cell: read each start frame once.
        start_pred_label = np.zeros(len(starts), np.int64)
        start_frames = starts["frame"].to_numpy()
        for t in np.unique(start_frames):
            in_t = start_frames == t
            markers = read_label_frame(gt_markers, int(t), "GT marker image")
            labels = read_label_frame(pred_labels, int(t), "predicted label image")
            covering = marker_coverage(markers, labels, cfg.min_coverage)
            wanted = starts["label"].to_numpy()[in_t]
            start_pred_label[in_t] = covering.reindex(wanted, fill_value=0).to_numpy()
        pred_by_label = pd.MultiIndex.from_arrays([located["frame"].to_numpy(), located["label"].to_numpy()])
        hit = _lookup(pred_by_label, [start_frames, start_pred_label])
        followed = _take(located["cell"].to_numpy(), hit, -1)
        pred_cell_of_gt_cell = pd.Series(followed, index=starts["cell"].to_numpy())

        pred_cell = pred_cell_of_gt_cell.reindex(compared["cell"].to_numpy()).to_numpy()
        pred_by_cell = pd.MultiIndex.from_arrays([pred["cell"].to_numpy(), pred["frame"].to_numpy()])
        match = _lookup(pred_by_cell, [pred_cell, compared["frame"].to_numpy()])
        match[pred_cell < 0] = -1
        dy = compared["y"].to_numpy() - _take(pred["y"].to_numpy(np.float64), match, np.nan)
        dx = compared["x"].to_numpy() - _take(pred["x"].to_numpy(np.float64), match, np.nan)
        distance = np.where(match >= 0, np.hypot(dy, dx), np.inf)
        pairs = pd.DataFrame(
            {
                "gt_node": compared.index.to_numpy(),
                "gt_cell": compared["cell"].to_numpy(),
                "frame": compared["frame"].to_numpy(),
                "pred_node": _take(pred.index.to_numpy(), match, -1),
                "distance": distance,
            }
        )
        thresholds = self.thresholds()
        if len(distance):
            precision = np.searchsorted(np.sort(distance), thresholds, side="right") / len(distance)
        else:
            precision = np.full(len(thresholds), np.nan)
        logger.debug("precision curve: %d GT cells, %d compared frames", len(starts), len(pairs))
        return PrecisionCurve(thresholds, precision, pairs, len(starts), cfg.from_frame)

    def scores(self, curve: PrecisionCurve) -> dict[str, float]:
        """``P@k`` for every ``k`` in ``report_at`` (keys like ``"P@5"``)."""
        return {f"P@{k:g}": curve.at(k) for k in self.config.report_at}

    def compute(self, data: TrackingData) -> dict[str, float]:
        """The :class:`~celltrack.metrics.base.Metric` interface: ``P@k`` scores."""
        return self.scores(self.curve(data.gt_graph, data.gt_markers, data.pred_graph, data.pred_labels))


def precision_curve(
    gt_graph: TrackGraph,
    gt_markers: LabelSource,
    pred_graph: TrackGraph,
    pred_labels: LabelSource,
    *,
    from_frame: int | None = None,
    max_distance: float = 50.0,
    step: float = 1.0,
    min_coverage: float = 0.5,
) -> PrecisionCurve:
    """Wu et al. 2013 precision curve (functional form of :meth:`WuPrecision.curve`).

    Parameters
    ----------
    gt_graph, gt_markers, pred_graph, pred_labels
        See :meth:`WuPrecision.curve`.
    from_frame : int, optional
        Follow only GT cells present in this frame, from this frame on.
    max_distance, step : float
        Curve thresholds 0..max_distance pixels every ``step`` pixels.
    min_coverage : float
        Marker share the followed prediction must cover in the start frame (> 0.5 by default).

    Returns
    -------
    PrecisionCurve
    """
    metric = WuPrecision(
        from_frame=from_frame, max_distance=max_distance, step=step, min_coverage=min_coverage
    )
    return metric.curve(gt_graph, gt_markers, pred_graph, pred_labels)
