"""Every output names final paths only: no command writes its temporary ``.NAME.partial-*`` folder.

Outputs are written into a hidden temporary folder and renamed at the end (``celltrack.io.atomic``);
paths recorded while writing (run records, metrics, figure legends, reports) must already be the
final ones. One run of every command that writes files, then every byte of every output file and
every text drawn into a figure is scanned.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.text
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from celltrack.cli.main import COMMANDS, main

pytestmark = pytest.mark.slow

#: What a temporary output's name contains (``.NAME.partial-XXXX``), and a replaced one's (``.NAME.old-PID``).
TEMPORARY_MARKERS = (b".partial-", b".old-")
#: Commands that write no files.
READ_ONLY_COMMANDS = {"info", "view"}


@pytest.fixture(scope="module")
def drawn_texts():
    """Every text drawn by an Agg canvas (savefig, video frames) while the module runs."""
    texts: list[str] = []
    original = FigureCanvasAgg.draw

    def draw(self, *args, **kwargs):
        texts.extend(t.get_text() for t in self.figure.findobj(matplotlib.text.Text))
        return original(self, *args, **kwargs)

    FigureCanvasAgg.draw = draw
    yield texts
    FigureCanvasAgg.draw = original


@pytest.fixture(scope="module")
def every_command(tmp_path_factory, drawn_texts):
    """Run every command that writes files into one folder; return it and the commands run."""
    root = tmp_path_factory.mktemp("final-paths")
    small = ["--frames", "6", "--size", "96", "--nuclei", "6"]
    movie, gt = root / "movie" / "01", root / "movie" / "01_GT"
    runs = {
        "synth": ["synth", str(root / "movie"), *small, "--seed", "4"],
        "demo": ["demo", "--out", str(root / "demo"), *small],
        "track": ["track", str(movie), "--out", str(root / "track" / "01_RES")],
        "segment": ["segment", str(movie), "--out", str(root / "seg"), "--method", "classic"],
        "cf-track": [
            "cf-track", str(movie), "--out", str(root / "cf"), "--detections", str(gt / "SEG"),
            "--save-video", str(root / "cf.gif"),
        ],
        "evaluate": [
            "evaluate", str(root / "track" / "01_RES"), str(gt),
            "--json", str(root / "scores.json"), "--plot", str(root / "precision.png"),
        ],
        "report": [
            "report", str(root / "demo" / "01_RES"), "--gt", str(root / "demo" / "data" / "01_GT"),
            "--out", str(root / "report.html"),
        ],
        "export": [
            "export", str(root / "demo" / "01_RES"), "--format", "geff", "--out", str(root / "t.geff"),
        ],
        "batch": [
            "batch", str(movie), "--out", str(root / "batch"), "--workers", "1", "--threads-only",
            "--dashboard-address", ":0",
        ],
        "train": [
            "train", "segnet", "--data", str(movie), "--out", str(root / "segnet"), "--steps", "2",
            "--batch-size", "2",
        ],
        "show-filters": [
            "show-filters", str(root / "segnet"), str(root / "cf"), "--out", str(root / "f.png"),
        ],
    }  # fmt: skip
    assert set(runs) | READ_ONLY_COMMANDS == set(COMMANDS), "a new command writes files: add it here"
    extra = [
        ["export", str(root / "demo" / "01_RES"), "--format", fmt, "--out", str(root / name)]
        for fmt, name in (
            ("trackmate-xml", "tracks.xml"),
            ("trackmate", "spots.csv"),
            ("csv", "t.csv"),
            ("parquet", "t.parquet"),
        )
    ]
    for args in [*runs.values(), *extra]:
        assert main([*args, "-q"]) == 0, args
    return root


def output_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_no_output_names_a_temporary_folder(every_command, drawn_texts):
    files = output_files(every_command)
    assert len(files) > 50
    leftovers = [p for p in every_command.rglob("*") if any(m.decode() in p.name for m in TEMPORARY_MARKERS)]
    assert not leftovers
    naming = [p for p in files if any(marker in p.read_bytes() for marker in TEMPORARY_MARKERS)]
    assert not naming, [str(p.relative_to(every_command)) for p in naming]
    assert drawn_texts, "no figure was drawn"
    assert not [t for t in drawn_texts if any(m.decode() in t for m in TEMPORARY_MARKERS)]


def test_run_records_name_the_final_movie(every_command, valid_geff):
    record = json.loads((every_command / "demo" / "01_RES" / "celltrack.json").read_text())
    assert Path(record["inputs"]["images"]["path"]) == every_command / "demo" / "data" / "01"
    scores = json.loads((every_command / "demo" / "metrics.json").read_text())
    assert Path(scores["res_dir"]) == every_command / "demo" / "01_RES"
    geff = valid_geff(every_command / "t.geff")
    assert geff["metadata"].extra["celltrack"]["movie"] == str(every_command / "demo" / "data" / "01")


def test_report_of_the_demo_reads_the_recorded_movie(every_command, tmp_path, capsys):
    demo = every_command / "demo"
    args = ["report", str(demo / "01_RES"), "--gt", str(demo / "data" / "01_GT")]
    assert main([*args, "--out", str(tmp_path / "r.html"), "-v"]) == 0
    assert "not readable" not in capsys.readouterr().err
