"""The HTML report: embedded PNG figures, metrics and track tables, provenance, overwrite refusal."""

from __future__ import annotations

import base64
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from celltrack.cli import main as cli_main
from celltrack.graph import TrackGraph
from celltrack.io import OutputExistsError, open_sequence, read_track_table
from celltrack.io.provenance import RECORD_NAME, dumps_record, run_record, sequence_fingerprint
from celltrack.metrics import evaluate
from celltrack.report import (
    FIGURE_ALTS,
    ReportConfig,
    build_report,
    first_frame,
    lineage_families,
    track_summary,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Images (src, alt), tables by id (rows of cell texts, body rows only) and every src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.tags: list[str] = []
        self._table: str | None = None
        self._in_body = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.links += [attrs[k] for k in ("src", "href") if attrs.get(k)]
        if tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self._table = attrs.get("id", f"table{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def png_of(image: dict[str, str]) -> bytes:
    prefix = "data:image/png;base64,"
    assert image["src"].startswith(prefix)
    return base64.b64decode(image["src"][len(prefix) :], validate=True)


@pytest.fixture(scope="module")
def movie_dirs(tmp_path_factory, gt_as_result):
    """(raw movie, GT, result folder with a run record naming the raw movie) of a small dividing movie."""
    root, res = gt_as_result(tmp_path_factory.mktemp("report") / "movie")
    record = run_record(
        "track",
        {"linker": {"max_distance": 20.0}},
        {"images": sequence_fingerprint(open_sequence(root / "01"))},
        {"segmentation": 1.5, "linking": 0.5},
        extra={"summary": {"tracks": 16}},
    )
    (res / RECORD_NAME).write_bytes(dumps_record(record))
    return root / "01", root / "01_GT", res


@pytest.fixture
def cli(monkeypatch):
    """``celltrack`` with the report command registered (the lead registers it in main.COMMANDS)."""
    monkeypatch.setitem(cli_main.COMMANDS, "report", "report")
    return cli_main.main


def small_graph() -> TrackGraph:
    """A (frames 0-2) divides into B and C, C into D and E; F (frames 0-1) is followed by G after a gap."""
    nodes = pd.DataFrame(
        {
            "frame": [0, 1, 2, 3, 4, 3, 4, 5, 5, 0, 1, 3],
            "label": [1] * 12,
            "y": [0.0, 3.0, 7.0, 7.0, 7.0, 9.0, 9.0, 8.0, 10.0, 50.0, 50.0, 52.0],
            "x": [0.0, 4.0, 10.0, 11.0, 12.0, 10.0, 10.0, 10.0, 10.0, 50.0, 50.0, 50.0],
            "area": [20] * 12,
        }
    )
    edges = pd.DataFrame(
        {"source": [0, 1, 2, 3, 2, 5, 6, 6, 9, 10], "target": [1, 2, 3, 4, 5, 6, 7, 8, 10, 11]}
    )
    return TrackGraph(nodes, edges)


# ---------------------------------------------------------------------- statistics
def test_track_summary_lengths_speeds_parents_and_children():
    summary = track_summary(small_graph()).set_index("track_id")
    assert len(summary) == 7
    first = summary.loc[summary["begin"].eq(0) & summary["children"].eq(2)].iloc[0]
    assert first["length"] == 3 and first["end"] == 2
    assert first["mean_speed"] == pytest.approx((5.0 + np.hypot(4.0, 6.0)) / 2)
    assert summary["children"].sum() == (summary["parent"] > 0).sum() == 5
    assert (summary.loc[summary["parent"] > 0, "begin"].to_numpy() > 0).all()
    lone = summary[summary["length"] == 1]
    assert lone["mean_speed"].isna().all()
    after_gap = summary[
        summary["parent"] == summary.index[(summary["begin"] == 0) & (summary["children"] == 1)][0]
    ]
    assert after_gap["begin"].tolist() == [3]  # the link that skips frame 2 starts a track


def test_lineage_families_are_ordered_by_size():
    summary = track_summary(small_graph())
    families = lineage_families(summary)
    assert [len(f) for f in families] == [5, 2]
    assert sorted(t for f in families for t in f) == sorted(summary["track_id"])
    roots = set(summary.loc[summary["parent"] == 0, "track_id"])
    assert {f[0] for f in families} == roots


def test_first_frame_from_option_record_or_nothing(movie_dirs, tmp_path):
    images, _, _ = movie_dirs
    expected = open_sequence(images)[0]
    record = {"inputs": {"images": {"path": str(images)}}}
    np.testing.assert_array_equal(first_frame(images, None, (96, 96)), expected)
    np.testing.assert_array_equal(first_frame(None, record, (96, 96)), expected)
    assert first_frame(None, {"inputs": {"images": {"path": str(tmp_path / "moved")}}}, (96, 96)) is None
    assert first_frame(None, record, (64, 64)) is None
    assert first_frame(None, None, None) is None
    with pytest.raises(ValueError, match="do not match"):
        first_frame(images, None, (64, 64))


# ---------------------------------------------------------------------- the page
def test_report_with_ground_truth(cli, movie_dirs, tmp_path, capsys):
    _, gt, res = movie_dirs
    out = tmp_path / "report.html"
    assert cli(["report", str(res), "--gt", str(gt), "--out", str(out), "--families", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    page = parse(out)

    assert sorted(image["alt"] for image in page.images) == sorted(FIGURE_ALTS.values())
    for image in page.images:
        assert png_of(image).startswith(PNG_SIGNATURE)
    assert all(link.startswith("data:") for link in page.links)  # nothing outside the page
    assert not {"script", "link", "iframe"} & set(page.tags)

    scores = evaluate(res, gt).metrics
    shown = dict(page.tables["metrics"])
    assert {"TRA", "DET", "LNK", "P@5", "P@10", "P@20"} <= set(shown)
    for name, text in shown.items():
        value = scores[name]
        assert text == ("n/a" if value is None or np.isnan(value) else f"{value:.4f}")

    truth = read_track_table(res / "res_track.txt")
    rows = page.tables["tracks"]
    assert len(rows) == len(truth)
    assert sorted(int(r[4]) for r in rows) == sorted((truth["end"] - truth["begin"] + 1).tolist())
    assert sum(int(r[6]) for r in rows) == int((truth["parent"] > 0).sum())

    provenance = dict(page.tables["provenance"])
    assert provenance["command"] == "track" and "2.0 s" in provenance["run time"]


def test_report_without_ground_truth_and_overwrite(cli, movie_dirs, tmp_path, capsys):
    _, _, res = movie_dirs
    bare = tmp_path / "RES"
    shutil.copytree(res, bare)
    (bare / RECORD_NAME).unlink()
    out = tmp_path / "bare.html"
    write_report(bare, out, config=ReportConfig(max_table_rows=3))
    page = parse(out)
    assert sorted(image["alt"] for image in page.images) == sorted(
        alt for key, alt in FIGURE_ALTS.items() if key != "precision"
    )
    assert "metrics" not in page.tables and "provenance" not in page.tables
    assert len(page.tables["tracks"]) == 3
    assert "raw frame was not available" in out.read_text(encoding="utf-8")

    before = out.read_bytes()
    with pytest.raises(OutputExistsError):
        write_report(bare, out)
    assert cli(["report", str(bare), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--overwrite" in error[0]
    assert out.read_bytes() == before
    assert (
        cli(["report", str(bare), "--out", str(out), "--overwrite", "--images", str(res.parent / "01")]) == 0
    )
    assert "raw frame was not available" not in out.read_text(encoding="utf-8")


def test_report_of_an_empty_result_still_renders():
    graph = TrackGraph(pd.DataFrame({c: [] for c in ("frame", "label", "y", "x", "area")}))
    page = Page()
    page.feed(build_report(graph, source="empty", frame_shape=(32, 32), n_frames=3))
    assert len(page.images) == 3 and page.tables["tracks"] == []
