"""evaluate(): CTC scores through py-ctcmetrics, input checks, provenance, plotting."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from celltrack.graph import TrackGraph
from celltrack.io import detections_from_sequence, read_gt, write_ctc_dataset, write_ctc_result
from celltrack.metrics import (
    CTCMetrics,
    EvaluationResult,
    TrackingData,
    WuPrecision,
    ctc_metrics,
    evaluate,
    plot_precision_curve,
)
from celltrack.metrics.base import Metric
from celltrack.metrics.ctc import confusion_matrix

if TYPE_CHECKING:
    from conftest import Movie, WriteResult

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
HELA_GT = SHARED_DATA / "Fluo-N2DL-HeLa" / "01_GT"

PERFECT = ("TRA", "DET", "LNK", "CT", "TF", "BC(0)", "SEG", "P@5", "P@10", "P@20")


@pytest.fixture
def perfect_res(tiny_movie: Movie, write_result: WriteResult) -> Path:
    graph, labels = tiny_movie.prediction()
    return write_result(graph, labels)


def test_gt_scored_against_itself_is_perfect(perfect_res: Path, tiny_gt_dir: Path, tiny_movie: Movie) -> None:
    result = evaluate(perfect_res, tiny_gt_dir)
    for name in PERFECT:
        assert result.metrics[name] == pytest.approx(1.0), name
    assert result.metrics["gt_divisions"] == 1
    # One division and no complete cell cycle: CCA is undefined, reported as NaN rather than guessed.
    assert math.isnan(result.metrics["CCA"])
    assert result.n_cells == 5
    assert result.n_compared == tiny_movie.n_gt_nodes


def test_markers_as_result_give_tra_one(tiny_gt_dir: Path, tmp_path: Path) -> None:
    gt = read_gt(tiny_gt_dir)
    res = write_ctc_result(gt.graph(), tmp_path / "01_RES", gt.tra.frame_shape, len(gt.tra),
                           label_source=lambda t: gt.tra[t])
    result = evaluate(res, tiny_gt_dir, metrics=["TRA", "DET", "precision"])
    assert result.metrics["TRA"] == 1.0
    assert result.metrics["DET"] == 1.0
    assert result.metrics["P@20"] == 1.0
    assert result.precision[0] == 1.0  # marker centroids compared with themselves


def test_synthetic_movie_against_itself(tmp_path: Path) -> None:
    synthetic = pytest.importorskip("celltrack.synthetic")
    movie = synthetic.generate_movie(frames=8, height=96, width=96, nuclei=6, seed=3)
    root = write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, tmp_path / "data")
    gt = read_gt(root / "01_GT")
    graph = TrackGraph.from_ctc(detections_from_sequence(movie.labels), gt.tracks)
    res = write_ctc_result(graph, tmp_path / "01_RES", movie.labels.shape[1:], len(movie.labels),
                           label_source=lambda t: movie.labels[t])
    result = evaluate(res, root / "01_GT")
    assert result.metrics["TRA"] == pytest.approx(1.0)
    assert result.metrics["DET"] == pytest.approx(1.0)
    assert result.metrics["SEG"] == pytest.approx(1.0)
    assert result.metrics["P@20"] == pytest.approx(1.0)


@pytest.mark.realdata
def test_hela_gt_against_itself(tmp_path: Path) -> None:
    if not HELA_GT.is_dir():
        pytest.skip(f"real data not available at {HELA_GT}")
    gt = read_gt(HELA_GT)
    res = write_ctc_result(gt.graph(), tmp_path / "01_RES", gt.tra.frame_shape, len(gt.tra),
                           label_source=lambda t: gt.tra[t])
    result = evaluate(res, HELA_GT, metrics=["TRA", "DET", "LNK", "CT", "TF", "BC", "CCA", "precision"])
    for name in ("TRA", "DET", "LNK", "CT", "TF", "BC(0)", "CCA", "P@5", "P@20"):
        assert result.metrics[name] == pytest.approx(1.0), name
    assert result.n_cells > 200


def test_from_frame_reaches_the_precision_curve(perfect_res: Path, tiny_gt_dir: Path) -> None:
    result = evaluate(perfect_res, tiny_gt_dir, metrics=["precision"], from_frame=4)
    assert result.from_frame == 4
    assert result.n_cells == 4  # A, E and both daughters are present in frame 4
    assert result.n_compared == 4 * 4
    assert set(result.metrics) == {"P@5", "P@10", "P@20"}


def test_fast_matching_gives_the_same_scores_as_sklearn(
    tiny_gt_dir: Path, tiny_movie: Movie, write_result: WriteResult
) -> None:
    graph, labels = tiny_movie.prediction()
    broken = graph.nodes.index[(graph.nodes["label"] == 1) & (graph.nodes["frame"] == 4)][0]
    graph = TrackGraph(graph.nodes, graph.edges[graph.edges["target"] != broken])
    res = write_result(graph, labels, "broken_RES")
    fast = CTCMetrics(fast_matching=True).score(res, tiny_gt_dir)
    slow = CTCMetrics(fast_matching=False).score(res, tiny_gt_dir)
    assert fast.keys() == slow.keys()
    for key in fast:
        assert fast[key] == pytest.approx(slow[key], nan_ok=True), key
    assert fast["TRA"] < 1.0


def test_confusion_matrix_matches_sklearn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        ref = rng.integers(0, 12, 2000).astype(np.uint16)
        comp = (rng.integers(0, 5, 2000) * 3 + 13).astype(np.uint16)
        expected = sklearn_metrics.confusion_matrix(ref, comp)
        np.testing.assert_array_equal(confusion_matrix(ref, comp), expected)
    huge = rng.integers(0, 2**40, 300)
    np.testing.assert_array_equal(confusion_matrix(huge, huge[::-1]),
                                  sklearn_metrics.confusion_matrix(huge, huge[::-1]))


# ---------------------------------------------------------------------- invalid input
def test_mask_count_differing_from_gt_raises(
    tiny_movie: Movie, tiny_gt_dir: Path, write_result: WriteResult
) -> None:
    _, labels = tiny_movie.prediction()
    short = TrackGraph.from_ctc(detections_from_sequence(labels[:-1]), tiny_movie.tracks.assign(
        end=np.minimum(tiny_movie.tracks["end"], tiny_movie.N_FRAMES - 2)))
    res = write_result(short, labels[:-1], "short_RES")
    with pytest.raises(ValueError, match=r"short_RES: 7 result masks but 8 GT TRA masks"):
        evaluate(res, tiny_gt_dir)


def test_stray_tiff_raises(perfect_res: Path, tiny_gt_dir: Path) -> None:
    shutil.copy(perfect_res / "mask000.tif", perfect_res / "mask000_copy.tif")
    with pytest.raises(ValueError, match="stray TIFF"):
        evaluate(perfect_res, tiny_gt_dir)


def test_inconsistent_track_table_raises(perfect_res: Path, tiny_gt_dir: Path) -> None:
    table = perfect_res / "res_track.txt"
    table.write_text("\n".join(table.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(ValueError, match="res_track.txt"):
        evaluate(perfect_res, tiny_gt_dir)


def test_missing_folders_raise(tmp_path: Path, tiny_gt_dir: Path, perfect_res: Path) -> None:
    with pytest.raises(ValueError, match="result folder not found"):
        evaluate(tmp_path / "nope", tiny_gt_dir)
    with pytest.raises(ValueError, match="ground-truth folder not found"):
        evaluate(perfect_res, tmp_path / "nope")


def test_unknown_metric_and_misplaced_options_raise(
    perfect_res: Path, tiny_gt_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate(perfect_res, tiny_gt_dir, metrics=["TRA", "ACCURACY"])
    with pytest.raises(ValueError, match="from_frame"):
        evaluate(perfect_res, tiny_gt_dir, metrics=["TRA"], from_frame=2)
    no_seg = tmp_path / "gt_no_seg"
    shutil.copytree(tiny_gt_dir / "TRA", no_seg / "TRA")
    with pytest.raises(ValueError, match="no SEG"):
        ctc_metrics(perfect_res, no_seg, metrics=["SEG"])
    assert "SEG" not in ctc_metrics(perfect_res, no_seg)


def test_py_ctcmetrics_failures_become_one_line_value_errors(
    perfect_res: Path, tiny_gt_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctc_metrics.scripts.evaluate as ctc_evaluate

    def broken_load_data(*args: object, **kwargs: object) -> None:
        print("noise on stdout")
        raise AssertionError("something deep inside\nwith a second line")

    monkeypatch.setattr(ctc_evaluate, "load_data", broken_load_data)
    expected = r"01_RES: py-ctcmetrics failed .*AssertionError: something deep inside\)$"
    with pytest.raises(ValueError, match=expected):
        ctc_metrics(perfect_res, tiny_gt_dir)


def test_py_ctcmetrics_output_is_captured(perfect_res: Path, tiny_gt_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    ctc_metrics(perfect_res, tiny_gt_dir, metrics=["TRA"])
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------------- interface, provenance, plot
def test_metrics_follow_the_metric_protocol(perfect_res: Path, tiny_gt_dir: Path, tiny_movie: Movie) -> None:
    graph, labels = tiny_movie.prediction()
    gt = read_gt(tiny_gt_dir)
    data = TrackingData(gt.graph(), gt.tra, graph, labels, perfect_res, tiny_gt_dir)
    for metric, key in ((CTCMetrics(metrics=("TRA",)), "TRA"), (WuPrecision(), "P@5")):
        assert isinstance(metric, Metric)
        assert metric.compute(data)[key] == pytest.approx(1.0), metric.name
    with pytest.raises(ValueError, match="res_dir"):
        CTCMetrics().compute(TrackingData(gt.graph(), gt.tra, graph, labels))


def test_result_is_json_serialisable_with_provenance(perfect_res: Path, tiny_gt_dir: Path) -> None:
    result = evaluate(perfect_res, tiny_gt_dir)
    record = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert record["metrics"]["CCA"] is None  # NaN in memory, null on disk
    assert record["versions"]["celltrack"]
    assert record["versions"]["py-ctcmetrics"] not in ("", "unknown")
    assert record["res_dir"] == str(perfect_res)
    assert len(record["precision_curve"]["thresholds"]) == 51
    again = EvaluationResult.from_dict(record)
    np.testing.assert_array_equal(again.precision, result.precision)
    assert again.metrics["TRA"] == result.metrics["TRA"]
    assert math.isnan(again.metrics["CCA"])


def test_plot_writes_png_atomically(perfect_res: Path, tiny_gt_dir: Path, tmp_path: Path) -> None:
    result = evaluate(perfect_res, tiny_gt_dir, metrics=["precision"])
    target = tmp_path / "curve.png"
    fig = plot_precision_curve([result, result.curve], target, labels=["run", "curve"])
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes[0].lines) >= 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".curve.png")]
    with pytest.raises(ValueError, match="already exists"):
        plot_precision_curve(result, target)
    plot_precision_curve(result, target, overwrite=True)
    with pytest.raises(ValueError, match="one label per curve"):
        plot_precision_curve(result, labels=["a", "b"])
