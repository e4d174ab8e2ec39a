"""Every command of the README runs as written.

The README's fenced shell blocks are read in order, in a fresh folder holding a small synthetic
``movie.tif`` (the tutorial's "your own movie"). A ``celltrack`` command whose inputs exist (that
movie, or what the README's earlier commands made) is run and must succeed; one that needs data the
reader brings (their model, the CTC data sets) or runs for long (training) must parse with the
options it shows, and its ``--help`` must work. ``make`` targets must exist in the Makefile and
``pip install`` extras in pyproject.toml. The README stays under 250 lines.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import tifffile

from celltrack.cli.main import build_parser, main
from celltrack.synthetic import generate_movie

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Argument names that are inputs a command reads (outputs such as --out are not).
INPUT_ARGUMENTS = (
    "seq_dir", "res_dir", "gt_dir", "inputs", "images", "data", "detections", "config", "gt", "model",
)  # fmt: skip
#: Commands that run for minutes: only parsed and their --help shown.
LONG_RUNNING = {"train", "demo"}


def shell_commands(text: str) -> list[str]:
    """Commands of the fenced ``bash``/``sh`` blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell)[^\n]*\n(.*?)^```", text, flags=re.M | re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            command = line.split(" #")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def inputs_of(args) -> list[Path]:
    paths: list[Path] = []
    for name in INPUT_ARGUMENTS:
        value = getattr(args, name, None)
        if value:
            paths.extend(Path(v) for v in (value if isinstance(value, list) else [value]))
    return paths


def test_the_readme_is_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) < 250


@pytest.mark.slow
def test_every_readme_command_runs_or_parses(tmp_path, monkeypatch, capsys):
    commands = shell_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 10
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    monkeypatch.chdir(tmp_path)
    movie = generate_movie(frames=6, height=96, width=96, nuclei=5, seed=8).images
    tifffile.imwrite("movie.tif", movie, photometric="minisblack")
    ran, parsed = [], []
    for command in commands:
        words = shlex.split(command)
        if words[0] == "make":
            target = words[1]
            assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), command
            continue
        if words[0] == "pip" or words[0].endswith("/pip"):
            for extra in re.findall(r"\[(\w+)\]", command):
                assert extra in extras, command
            continue
        assert words[0] == "celltrack", f"unknown command in the README: {command}"
        args = build_parser().parse_args(words[1:])  # every option as written exists
        needs_data = any(not path.exists() for path in inputs_of(args))
        if args.command in LONG_RUNNING or needs_data or args.command == "view":
            with pytest.raises(SystemExit) as shown:
                main([*words[1:3], "--help"] if args.command == "train" else [words[1], "--help"])
            assert shown.value.code == 0
            parsed.append(command)
        else:
            assert main(words[1:]) == 0, f"{command}\n{capsys.readouterr().err}"
            ran.append(command)
    capsys.readouterr()
    tracked = {"celltrack track movie.tif --out movie_RES", "celltrack track try/01 --out try/01_RES"}
    assert tracked <= set(ran)
    assert any(c.startswith("celltrack report movie_RES") for c in ran)
    assert sum("trackmate-xml" in c for c in ran) == 2 and parsed


def test_the_readme_configuration_loads(tmp_path):
    from celltrack.pipeline.track import load_config

    blocks = re.findall(r"^```toml\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert blocks, "the README shows a configuration file"
    for block in blocks:
        path = tmp_path / "config.toml"
        path.write_text(block, encoding="utf-8")
        load_config(path)  # unknown keys and wrong values raise
