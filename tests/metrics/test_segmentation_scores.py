"""SEG / DET / F1 of still images equal py-ctcmetrics' definitions."""

import numpy as np
import pandas as pd
import pytest
import tifffile

from celltrack.io import format_track_table
from celltrack.metrics import evaluate
from celltrack.metrics.segmentation import SegmentationCounts, segmentation_counts
from celltrack.synthetic import generate_movie


def ctc_scores(pred, truth, root):
    """py-ctcmetrics on a two-frame movie holding the image twice (it needs at least one link)."""
    (root / "GT" / "TRA").mkdir(parents=True)
    (root / "GT" / "SEG").mkdir()
    (root / "RES").mkdir()
    for t in (0, 1):
        tifffile.imwrite(root / "GT" / "TRA" / f"man_track00{t}.tif", truth.astype(np.uint16))
        tifffile.imwrite(root / "GT" / "SEG" / f"man_seg00{t}.tif", truth.astype(np.uint16))
        tifffile.imwrite(root / "RES" / f"mask00{t}.tif", pred.astype(np.uint16))
    tables = ((truth, root / "GT" / "TRA" / "man_track.txt"), (pred, root / "RES" / "res_track.txt"))
    for labels, path in tables:
        rows = [(int(v), 0, 1, 0) for v in np.unique(labels[labels > 0])]
        path.write_text(format_track_table(pd.DataFrame(rows, columns=["label", "begin", "end", "parent"])))
    return evaluate(root / "RES", root / "GT", metrics=["DET", "SEG"]).metrics


def test_counts_equal_py_ctcmetrics(tmp_path):
    truth = generate_movie(frames=1, height=128, width=128, nuclei=15, seed=3).labels[0].astype(np.int32)
    ids = np.unique(truth[truth > 0])
    pred = np.roll(truth, 2, axis=1)
    pred[pred == ids[1]] = ids[0]  # a merge: one split needed
    pred[pred == ids[2]] = 0  # a miss
    pred[5:12, 5:12] = 999  # a false positive
    counts = segmentation_counts(pred, truth)
    expected = ctc_scores(pred, truth, tmp_path)
    assert counts.det == pytest.approx(expected["DET"])
    assert counts.seg == pytest.approx(expected["SEG"])
    assert (counts.false_negatives, counts.false_positives, counts.splits_needed) == (1, 1, 1)


def test_pooled_counts_and_f1():
    truth = np.zeros((10, 10), np.int32)
    truth[1:4, 1:4] = 1
    truth[6:9, 6:9] = 2
    perfect = segmentation_counts(truth, truth)
    assert (perfect.seg, perfect.det, perfect.f1) == (1.0, 1.0, 1.0)
    empty = segmentation_counts(np.zeros_like(truth), truth)
    assert (empty.seg, empty.det, empty.f1) == (0.0, 0.0, 0.0)
    pooled = perfect + empty
    assert pooled.n_truth == 4 and pooled.seg == 0.5 and pooled.f1 == pytest.approx(2 * 2 / 6)
    assert np.isnan(SegmentationCounts().seg)
    with pytest.raises(ValueError, match="one shape"):
        segmentation_counts(truth[:5], truth)
