"""Segmentation scores of still images: the CTC SEG and DET measures and F1 at IoU 0.5.

The CTC measures follow their definitions (Maška et al. 2014; Matula et al. 2015), as py-ctcmetrics
computes them, with the ground-truth objects themselves as the detection markers:

* a predicted object *matches* a ground-truth object when it covers more than half of its pixels;
* SEG is the mean, over ground-truth objects, of the Jaccard index with the matching object (0 when none);
* DET is ``1 - min(AOGM_D, AOGM_D0) / AOGM_D0`` with ``AOGM_D = 5·NS + 10·FN + 1·FP`` (a predicted object
  that matches k > 1 truths costs k - 1 splits; a truth matched by none is a false negative; a predicted
  object matching none is a false positive) and ``AOGM_D0 = 10 × truths``.

:class:`SegmentationCounts` holds the raw sums, so scores over many images are computed from their pooled
counts (the same as scoring one image holding them all).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

_W_NS, _W_FN, _W_FP = 5.0, 10.0, 1.0


@dataclass
class SegmentationCounts:
    """Pooled counts behind SEG, DET and F1 (add them over images with ``+``)."""

    n_truth: int = 0
    n_predicted: int = 0
    jaccard_sum: float = 0.0
    false_negatives: int = 0
    false_positives: int = 0
    splits_needed: int = 0
    matches_iou50: int = 0

    def __add__(self, other: SegmentationCounts) -> SegmentationCounts:
        return SegmentationCounts(*(a + b for a, b in zip(self._values(), other._values(), strict=True)))

    def _values(self) -> tuple:
        return (self.n_truth, self.n_predicted, self.jaccard_sum, self.false_negatives, self.false_positives,
                self.splits_needed, self.matches_iou50)

    @property
    def seg(self) -> float:
        """CTC SEG: mean Jaccard index of the ground-truth objects (NaN without any)."""
        return self.jaccard_sum / self.n_truth if self.n_truth else float("nan")

    @property
    def det(self) -> float:
        """CTC DET from the pooled AOGM-D (NaN without ground truth)."""
        if not self.n_truth:
            return float("nan")
        aogm = _W_NS * self.splits_needed + _W_FN * self.false_negatives + _W_FP * self.false_positives
        aogm0 = _W_FN * self.n_truth
        return 1.0 - min(aogm, aogm0) / aogm0

    @property
    def f1(self) -> float:
        """F1 of one-to-one matches at IoU > 0.5."""
        total = self.n_truth + self.n_predicted
        return 2.0 * self.matches_iou50 / total if total else float("nan")


def segmentation_counts(predicted: np.ndarray, truth: np.ndarray) -> SegmentationCounts:
    """Counts of one image: predicted instances against ground-truth instances.

    Parameters
    ----------
    predicted, truth : numpy.ndarray, shape (Y, X), integer
        Instance labels, 0 = background.

    Returns
    -------
    SegmentationCounts
    """
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape or predicted.ndim != 2:
        raise ValueError(f"predicted {predicted.shape} and truth {truth.shape} must be 2-D of one shape")
    for name, array in (("predicted", predicted), ("truth", truth)):
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"{name} labels must be integers, got {array.dtype}")
    pred_ids, pred = np.unique(predicted, return_inverse=True)
    true_ids, true = np.unique(truth, return_inverse=True)
    matrix = sparse.coo_matrix(
        (np.ones(pred.size, np.int64), (true.ravel(), pred.ravel())), shape=(true_ids.size, pred_ids.size)
    ).tocsr()
    true_area = np.asarray(matrix.sum(axis=1)).ravel()
    pred_area = np.asarray(matrix.sum(axis=0)).ravel()
    # Row/column 0 hold the background when it is present (labels are >= 0).
    t0, p0 = int(true_ids[0] == 0), int(pred_ids[0] == 0)
    inter = matrix[t0:, p0:].tocoo()
    return _from_intersections(
        inter.row, inter.col, inter.data, true_area[t0:], pred_area[p0:], inter.shape[0], inter.shape[1]
    )


def _from_intersections(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, true_area: np.ndarray, pred_area: np.ndarray,
    n_truth: int, n_pred: int,
) -> SegmentationCounts:
    values = np.asarray(values, np.float64)
    union = true_area[rows] + pred_area[cols] - values
    iou = values / np.maximum(union, 1)
    # CTC matching: the predicted object covers more than half of the truth object.
    match = values > 0.5 * true_area[rows]
    jaccard = float(iou[match].sum())
    matched_truth = np.zeros(n_truth, bool)
    matched_truth[rows[match]] = True
    truths_per_pred = np.bincount(cols[match], minlength=n_pred)
    return SegmentationCounts(
        n_truth=n_truth,
        n_predicted=n_pred,
        jaccard_sum=jaccard,
        false_negatives=int((~matched_truth).sum()),
        false_positives=int((truths_per_pred == 0).sum()),
        splits_needed=int(np.maximum(truths_per_pred - 1, 0).sum()),
        # IoU > 0.5 makes a match one-to-one by itself.
        matches_iou50=int((iou > 0.5).sum()),
    )
