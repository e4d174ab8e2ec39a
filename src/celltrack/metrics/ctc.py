"""Cell Tracking Challenge metrics through py-ctcmetrics (import name ``ctc_metrics``).

The measures themselves (TRA, DET, LNK, SEG, CT, TF, BC(i), CCA, ...) are py-ctcmetrics'.
This module only checks the folders first (our CTC rules, mask counts, label ranges), runs
the package single-threaded with its prints and warnings captured, and turns its
``assert`` failures into one-line ``ValueError`` messages that name the folder.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator

from celltrack.io import GroundTruth, list_frame_files, open_sequence, read_gt, validate_ctc_result
from celltrack.metrics.base import TrackingData

logger = logging.getLogger(__name__)

#: Metrics computed when none are named (SEG is added when the GT has SEG masks).
DEFAULT_CTC_METRICS: tuple[str, ...] = ("TRA", "DET", "LNK", "CT", "TF", "BC", "CCA")
#: Names py-ctcmetrics understands (``BC(i)`` for any integer i is accepted too).
KNOWN_CTC_METRICS: frozenset[str] = frozenset(
    {"Valid", "CHOTA", "BC", "CT", "CCA", "TF", "SEG", "TRA", "DET", "MOTA", "HOTA", "IDF1", "MTML",
     "FAF", "LNK", "OP_CTB", "OP_CSB", "BIO", "OP_CLB"}
)
_BC_PATTERN = re.compile(r"^BC\(\d+\)$")


def is_ctc_metric(name: str) -> bool:
    """True for names py-ctcmetrics computes (``TRA``, ``BC(2)``, ...)."""
    return name in KNOWN_CTC_METRICS or bool(_BC_PATTERN.match(name))


def ctc_metrics_version() -> str:
    """Installed py-ctcmetrics version ("unknown" if its metadata is missing)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("py-ctcmetrics")
    except PackageNotFoundError:
        return "unknown"


def _tif_files(folder: Path) -> list[str]:
    # py-ctcmetrics takes every *.tif of the folder as a frame, so stray TIFFs shift its frame count.
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tif"))


def check_ctc_result(res_dir: str | Path, gt_dir: str | Path) -> tuple[pd.DataFrame, GroundTruth]:
    """Check a result folder against our CTC rules and against its ground truth.

    Parameters
    ----------
    res_dir : str or pathlib.Path
        Result folder (``maskTTT.tif`` + ``res_track.txt``).
    gt_dir : str or pathlib.Path
        Ground-truth folder (``TRA/`` with ``man_track.txt``, optionally ``SEG/``).

    Returns
    -------
    tracks : pandas.DataFrame
        The validated ``res_track.txt`` table.
    gt : GroundTruth

    Raises
    ------
    ValueError
        Invalid result (see :func:`celltrack.io.validate_ctc_result`), no TRA ground truth,
        mask counts or frame shapes that differ from the GT, stray ``.tif`` files, or labels
        too large for the masks' dtype during matching.
    """
    res_dir, gt_dir = Path(res_dir), Path(gt_dir)
    if not res_dir.is_dir():
        raise ValueError(f"{res_dir}: result folder not found; pass the NN_RES folder")
    gt = read_gt(gt_dir)
    if gt.tra is None or gt.tracks is None:
        raise ValueError(f"{gt_dir}: no TRA/ ground truth; tracking metrics need NN_GT/TRA + man_track.txt")
    tracks = validate_ctc_result(res_dir)
    masks = open_sequence(res_dir, prefix="mask")
    if len(masks) != len(gt.tra):
        raise ValueError(
            f"{res_dir}: {len(masks)} result masks but {len(gt.tra)} GT TRA masks in {gt_dir / 'TRA'}; "
            "write one mask per frame of the movie"
        )
    if masks.frame_shape != gt.tra.frame_shape:
        raise ValueError(
            f"{res_dir}: result masks have shape {masks.frame_shape} but GT masks {gt.tra.frame_shape}; "
            "results must be on the GT's pixel grid"
        )
    for folder, prefix in ((res_dir, "mask"), (gt_dir / "TRA", "man_track")):
        _, frames = list_frame_files(folder, prefix=prefix)
        stray = sorted(set(_tif_files(folder)) - {p.name for p in frames.values()})
        if stray:
            raise ValueError(f"{folder}: stray TIFF files {stray[:3]} would be read as frames; remove them")
    # py-ctcmetrics shifts result labels by (max GT label + 1) in the masks' own dtype.
    res_top = int(tracks["label"].to_numpy().max(initial=0))
    top = res_top + int(gt.tracks["label"].to_numpy().max(initial=0)) + 1
    if masks.dtype.kind in "ui" and top > np.iinfo(masks.dtype).max:
        raise ValueError(
            f"{res_dir}: labels up to {res_top} in {masks.dtype} masks overflow during "
            "matching against the GT; save the masks as uint16 or uint32"
        )
    return tracks, gt


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Drop-in for ``sklearn.metrics.confusion_matrix(y_true, y_pred)`` on label images.

    py-ctcmetrics matches masks with sklearn's confusion matrix, which maps every pixel
    through a Python dict (about 0.3 s per 700x1100 frame, 35 s for a HeLa movie). This
    gives the same matrix with ``np.bincount``: rows/columns are the sorted union of the
    values present in either input.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray, shape (N,), integer
        Flattened label images.

    Returns
    -------
    numpy.ndarray, shape (L, L), int64
        ``cm[i, j]`` = pixels with ``y_true == labels[i]`` and ``y_pred == labels[j]``.
    """
    true = np.asarray(y_true).ravel()
    pred = np.asarray(y_pred).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"confusion_matrix inputs differ in length: {true.shape} vs {pred.shape}")
    if not (np.issubdtype(true.dtype, np.integer) and np.issubdtype(pred.dtype, np.integer)):
        raise TypeError(f"confusion_matrix expects integer labels, got {true.dtype} and {pred.dtype}")
    true = true.astype(np.int64)
    pred = pred.astype(np.int64)
    lowest = min(true.min(initial=0), pred.min(initial=0))
    highest = max(true.max(initial=0), pred.max(initial=0))
    if lowest >= 0 and highest < 4 * true.size + 1024:
        present = np.bincount(true, minlength=highest + 1) + np.bincount(pred, minlength=highest + 1)
        labels = np.flatnonzero(present)
        lut = np.zeros(highest + 1, np.int64)
        lut[labels] = np.arange(len(labels))
        true_index, pred_index = lut[true], lut[pred]
    else:
        labels = np.union1d(true, pred)
        true_index = np.searchsorted(labels, true)
        pred_index = np.searchsorted(labels, pred)
    n = len(labels)
    return np.bincount(true_index * n + pred_index, minlength=n * n).reshape(n, n).astype(np.int64)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


class CTCMetricsConfig(BaseModel):
    """Which py-ctcmetrics measures to compute.

    Attributes
    ----------
    metrics : tuple of str or None
        py-ctcmetrics names (``TRA``, ``DET``, ``LNK``, ``SEG``, ``CT``, ``TF``, ``BC`` (= BC(0..3)),
        ``BC(i)``, ``CCA``, ``HOTA``, ...). None: :data:`DEFAULT_CTC_METRICS`, plus ``SEG`` when the
        ground truth has SEG masks.
    fast_matching : bool
        Swap py-ctcmetrics' sklearn confusion matrix for :func:`confusion_matrix` (identical
        output, ~50x faster on full frames) while it runs. The swap patches a module attribute
        for the duration of the call, so do not run two evaluations in threads of one process
        with different settings.
    """

    model_config = ConfigDict(extra="forbid")

    metrics: tuple[str, ...] | None = None
    fast_matching: bool = True

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            unknown = [m for m in value if not is_ctc_metric(m)]
            if unknown:
                known = sorted(KNOWN_CTC_METRICS)
                raise ValueError(f"unknown CTC metrics {unknown}; choose from {known} or BC(i)")
        return value


class CTCMetrics:
    """CTC measures of a result folder against a ground-truth folder (py-ctcmetrics, one thread).

    Parameters
    ----------
    config : CTCMetricsConfig, optional
    **overrides
        Fields of :class:`CTCMetricsConfig`.
    """

    name = "ctc"

    def __init__(self, config: CTCMetricsConfig | None = None, **overrides: object) -> None:
        base = config.model_dump() if config is not None else {}
        self.config = CTCMetricsConfig(**{**base, **overrides})

    def resolve(self, gt: GroundTruth) -> list[str]:
        """The metric names to request for this ground truth."""
        if self.config.metrics is None:
            return [*DEFAULT_CTC_METRICS, *(["SEG"] if gt.seg else [])]
        if "SEG" in self.config.metrics and not gt.seg:
            raise ValueError(f"{gt.root}: SEG was requested but the ground truth has no SEG/ masks")
        return list(self.config.metrics)

    def score(self, res_dir: str | Path, gt_dir: str | Path, checked: bool = False) -> dict[str, float]:
        """Run py-ctcmetrics on two folders.

        Parameters
        ----------
        res_dir, gt_dir : str or pathlib.Path
            Result and ground-truth folders.
        checked : bool
            Skip :func:`check_ctc_result` (the caller has run it).

        Returns
        -------
        dict of str to float
            Every numeric output of py-ctcmetrics (e.g. ``TRA``, ``AOGM``, ``BC(0)``..``BC(3)``,
            ``tp_div(0)``); NaN where a measure is undefined (BC without GT divisions, CCA
            without complete cell cycles).

        Raises
        ------
        ValueError
            Invalid folders, or py-ctcmetrics rejecting or failing on them.
        """
        res_dir, gt_dir = Path(res_dir), Path(gt_dir)
        gt = read_gt(gt_dir) if checked else check_ctc_result(res_dir, gt_dir)[1]
        metrics = self.resolve(gt)
        from ctc_metrics.scripts.evaluate import calculate_metrics, load_data

        trajectory = metrics not in (["SEG"], ["CCA"])
        segmentation = "SEG" in metrics
        captured = io.StringIO()
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(captured))
            caught = stack.enter_context(warnings.catch_warnings(record=True))
            warnings.simplefilter("always")
            if self.config.fast_matching:
                from ctc_metrics.utils import representations

                stack.enter_context(mock.patch.object(representations, "confusion_matrix", confusion_matrix))
            try:
                comp, ref, traj, segm, _, is_valid = load_data(
                    str(res_dir), str(gt_dir), trajectory, segmentation, threads=1
                )
                raw = calculate_metrics(comp, ref, traj, segm, list(metrics), is_valid) if is_valid else {}
            except Exception as err:  # py-ctcmetrics signals bad input with assert/IndexError/etc.
                raise ValueError(
                    f"{res_dir}: py-ctcmetrics failed against {gt_dir} "
                    f"({type(err).__name__}: {_first_line(err)})"
                ) from err
        if not is_valid:
            reasons = "; ".join(str(w.message) for w in caught[:3]) or "no reason given"
            raise ValueError(f"{res_dir}: py-ctcmetrics judged the result invalid ({reasons})")
        for w in caught:
            logger.debug("py-ctcmetrics warning: %s", w.message)
        if captured.getvalue().strip():
            logger.debug("py-ctcmetrics output: %s", captured.getvalue().strip())
        out: dict[str, float] = {}
        for key, value in raw.items():
            if key == "BC" and value is None and any(k.startswith("BC(") for k in raw):
                continue  # a placeholder; the scores are under BC(i)
            out[key] = float("nan") if value is None else float(value)
        return out

    def compute(self, data: TrackingData) -> dict[str, float]:
        """The :class:`~celltrack.metrics.base.Metric` interface (needs ``res_dir`` and ``gt_dir``)."""
        if data.res_dir is None or data.gt_dir is None:
            raise ValueError("CTC metrics read CTC folders; this TrackingData has no res_dir/gt_dir")
        return self.score(data.res_dir, data.gt_dir, checked=data.validated)


def ctc_metrics(
    res_dir: str | Path, gt_dir: str | Path, metrics: Sequence[str] | None = None
) -> dict[str, float]:
    """CTC measures of ``res_dir`` against ``gt_dir`` (functional form of :class:`CTCMetrics`).

    Parameters
    ----------
    res_dir, gt_dir : str or pathlib.Path
    metrics : sequence of str, optional
        py-ctcmetrics names; default TRA, DET, LNK, CT, TF, BC, CCA (+ SEG when GT SEG exists).

    Returns
    -------
    dict of str to float
    """
    config = CTCMetricsConfig(metrics=tuple(metrics) if metrics is not None else None)
    return CTCMetrics(config).score(res_dir, gt_dir)
