"""The SegNet shipped inside the package, on a synthetic movie it never saw."""

import numpy as np
import pytest

from celltrack.io import write_ctc_dataset
from celltrack.metrics import evaluate
from celltrack.pipeline.segment import SegmentationConfig, build_segmenter
from celltrack.synthetic import generate_movie


@pytest.fixture(scope="module")
def movie():
    return generate_movie(frames=3, height=192, width=192, nuclei=20, seed=21)


def score_det(movie, masks, tmp_path):
    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, tmp_path / "gt")
    res = tmp_path / "RES"
    res.mkdir()
    rows, offset = [], 0
    import tifffile

    for t, labels in enumerate(masks):
        present = np.unique(labels[labels > 0])
        lut = np.zeros(int(labels.max()) + 1, np.uint16)
        lut[present] = np.arange(offset + 1, offset + 1 + len(present))
        rows += [f"{v} {t} {t} 0\n" for v in lut[present]]
        offset += len(present)
        tifffile.imwrite(res / f"mask{t:03d}.tif", lut[labels])
    (res / "res_track.txt").write_text("".join(rows))
    return evaluate(res, tmp_path / "gt" / "01_GT", metrics=["DET"]).metrics["DET"]


def test_shipped_segnet_detects_synthetic_nuclei(movie, tmp_path):
    method, segment = build_segmenter(SegmentationConfig(method="segnet"), sample=movie.images[1])
    assert method == "segnet"
    masks = [segment(frame) for frame in movie.images]
    assert score_det(movie, masks, tmp_path) >= 0.95
