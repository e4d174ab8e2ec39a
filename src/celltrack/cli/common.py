"""What every command shares: verbosity, --overwrite, logging set-up, errors as exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

from celltrack import __version__

logger = logging.getLogger("celltrack")

T = TypeVar("T")

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def add_common_options(parser: argparse.ArgumentParser, overwrite: bool = True) -> None:
    """Add ``-v/-q`` (and ``--overwrite``) to a sub-command parser."""
    group = parser.add_argument_group("common options")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more output; -vv for debug messages and full tracebacks",
    )
    group.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    if overwrite:
        group.add_argument(
            "--overwrite",
            action="store_true",
            help="replace existing outputs (otherwise the command refuses to touch them)",
        )


def configure_logging(verbose: int, quiet: bool) -> None:
    """The only place where celltrack configures logging."""
    level = logging.WARNING if quiet else logging.INFO if verbose <= 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s")
    )
    root = logging.getLogger("celltrack")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def progress(
    iterable: Iterable[T], total: int | None = None, desc: str = "", quiet: bool = False
) -> Iterable[T]:
    """A progress bar on a terminal, a plain iterable elsewhere (CI, pipes, notebooks' logs)."""
    if quiet or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)


def example(text: str) -> str:
    """Format an example for ``--help`` epilogs."""
    return f"example:\n  {text}"


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; bad input becomes one line on stderr and a non-zero exit code."""
    verbose = getattr(args, "verbose", 0)
    configure_logging(verbose, getattr(args, "quiet", False))
    try:
        return int(func(args) or EXIT_OK)
    except KeyboardInterrupt:
        print("celltrack: interrupted; existing outputs were left untouched", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, FileNotFoundError, PermissionError, OSError) as err:
        if verbose >= 2:
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, OSError) and not isinstance(err, FileNotFoundError) and err.filename:
            message = f"{err.filename}: {err.strerror or message}"
        print(f"celltrack {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


def version_string() -> str:
    return f"celltrack {__version__}"


def progress_for(args: argparse.Namespace) -> Callable[[Iterable[T], int, str], Iterable[T]]:
    """A ``progress(iterable, total, description)`` reporter honouring ``-q``."""
    quiet = getattr(args, "quiet", False)

    def report(iterable: Iterable[T], total: int, desc: str) -> Iterable[T]:
        return progress(iterable, total=total, desc=desc, quiet=quiet)

    return report
