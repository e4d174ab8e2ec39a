"""Entry point: ``celltrack COMMAND ...``; each command lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenMP threads that spin while waiting make torch 10x slower whenever another process shares the
# cores (measured: HeLa linking 61 s vs 4.7 s on 2 busy cores); it must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from collections.abc import Sequence

from celltrack.cli.common import run_command, version_string

#: Command name -> module under celltrack.cli. Each module has ``register(subparsers)`` and ``run(args)``.
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "synth": "synth",
    "info": "info",
    "evaluate": "evaluate",
    "cf-track": "cf_track",
    "segment": "segment",
    "batch": "batch",
    "train": "train",
    "track": "track",
    "report": "report",
    "view": "view",
    "export": "export",
    "show-filters": "show_filters",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celltrack",
        description="Segment and track fluorescent cell nuclei in time-lapse movies (CTC format).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  celltrack demo --out celltrack-demo\n\n"
        "Run 'celltrack COMMAND --help' for a command.",
    )
    parser.add_argument("--version", action="version", version=version_string())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, module_name in COMMANDS.items():
        module = importlib.import_module(f"celltrack.cli.{module_name}")
        sub = module.register(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(argv) if argv is not None else sys.argv[1:]  # provenance of training runs
    if not args.command:
        parser.print_help()
        return 2
    return run_command(args._run, args)


if __name__ == "__main__":
    sys.exit(main())
