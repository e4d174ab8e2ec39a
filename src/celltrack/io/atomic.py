"""Atomic outputs: write into a temporary folder beside the target, move into place at the end.

An interrupted run (Ctrl-C, kill -9, full disk) leaves any previous output untouched; at worst
a hidden ``.NAME.partial-*`` folder remains beside it.

While a block runs, its temporary folder is registered with the final target, so that whatever
records a path into an output (run records, metrics, figure legends) records where the file will
be, not where it is being written: :func:`final_path`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

#: Temporary folder or file -> the target it replaces, for every atomic output being written.
_pending: dict[Path, Path] = {}
_pending_lock = threading.Lock()


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


def final_path(path: str | Path) -> Path:
    """Where ``path`` will be once the atomic outputs it is being written into are moved into place.

    Parameters
    ----------
    path : str or pathlib.Path
        Any path; one inside a temporary ``.NAME.partial-*`` folder of a running
        :func:`atomic_output_dir` / :func:`atomic_output_file` block (nested blocks included).

    Returns
    -------
    pathlib.Path
        The absolute final path for a path inside a temporary output, else ``path`` unchanged.
    """
    path = Path(path)
    absolute = path.absolute()
    with _pending_lock:
        # innermost first: a nested output's temporary folder lies inside its parent's
        pending = sorted(_pending.items(), key=lambda item: len(item[0].parts), reverse=True)
    for tmp, target in pending:
        if absolute.is_relative_to(tmp):
            return final_path(target / absolute.relative_to(tmp))
    return path


@contextlib.contextmanager
def _registered(tmp: Path, target: Path) -> Iterator[None]:
    with _pending_lock:
        _pending[tmp] = target
    try:
        yield
    finally:
        with _pending_lock:
            _pending.pop(tmp, None)


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
        with _registered(tmp, target):
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
        with _registered(tmp, target):
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
