"""Atomic outputs: write into a temporary folder beside the target, move into place at the end.

An interrupted run (Ctrl-C, kill -9, full disk) leaves any previous output untouched; at worst
a hidden ``.NAME.partial-*`` folder remains beside it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


class OutputExistsError(ValueError):
    """The output exists and ``overwrite`` was not given."""


def check_output(target: str | Path, overwrite: bool) -> Path:
    """Refuse early when ``target`` exists and may not be replaced.

    Raises
    ------
    OutputExistsError
        With a one-line message that names the path and the ``--overwrite`` fix.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target}: output already exists; pass --overwrite to replace it")
    return target


@contextlib.contextmanager
def atomic_output_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces ``target`` when the block succeeds.

    Parameters
    ----------
    target : str or pathlib.Path
        The final output folder.
    overwrite : bool
        Replace an existing ``target``; otherwise an existing one raises.

    Yields
    ------
    pathlib.Path
        Temporary folder on the same file system as ``target``.
    """
    target = check_output(target, overwrite).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            backup = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(backup)
            tmp.rename(target)
            _remove(backup)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_output_file(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary file path that replaces ``target`` when the block succeeds."""
    target = check_output(target, overwrite).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.partial-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
