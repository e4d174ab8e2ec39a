"""Which positions a batch run processes, and the output folder name of each.

Planning only reads the file system (globs, folder listings); it never opens a movie, so a
corrupt position is found by the worker that processes it, not here.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from celltrack.io.sequence import TIFF_SUFFIXES, dataset_sequences, expand_datasets, is_raw_sequence_folder

logger = logging.getLogger(__name__)

PositionKind = Literal["ctc", "tiff", "zarr", "other"]

#: Names of files the batch run writes beside the position folders.
RESERVED_NAMES = frozenset({"summary.csv"})

_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._+-]")
_STRIPPED_SUFFIXES = (*TIFF_SUFFIXES, ".zarr")


@dataclass(frozen=True)
class Position:
    """One field of view of an experiment: a movie and the name of its output folder.

    Attributes
    ----------
    name : str
        Output folder name under the batch output folder; unique within a plan, file-system safe.
    path : pathlib.Path
        Absolute path of the movie (CTC folder of ``tTTT.tif``, (T, Y, X) TIFF or zarr array).
    kind : {"ctc", "tiff", "zarr", "other"}
        What the path looks like; ``other`` fails when processed, with the reader's message.
    """

    name: str
    path: Path
    kind: PositionKind


def movie_kind(path: Path) -> PositionKind:
    """Classify a path by its looks (suffix, marker files) without reading any pixel."""
    if path.suffix.lower() == ".zarr" or (path / ".zarray").is_file() or (path / "zarr.json").is_file():
        return "zarr"
    if path.is_dir():
        return "ctc"
    if path.suffix.lower() in TIFF_SUFFIXES:
        return "tiff"
    return "other"


def _looks_like_movie(path: Path) -> bool:
    """A movie, or a CTC data set of movies."""
    kind = movie_kind(path)
    if kind in ("zarr", "tiff"):
        return True
    return kind == "ctc" and (is_raw_sequence_folder(path) or bool(dataset_sequences(path)))


def expand_inputs(inputs: Iterable[str | Path], exclude: Iterable[str | Path] = ()) -> list[Path]:
    """Expand globs (``*``, ``?``, ``[...]``, ``**``), ``~`` and CTC data sets; keep other paths as given.

    A CTC data set folder (``pos1`` holding ``01``, ``02`` … beside ``01_GT``) stands for its
    sequences (:func:`celltrack.io.expand_datasets`, with a one-line note). Glob matches that
    are not movies (ground-truth folders, text files ...) or lie under a folder
    of ``exclude`` (the batch's own output) are skipped; explicit paths are kept whatever they are,
    so that a wrong one is reported, not ignored. Duplicates (the same file reached twice) are
    dropped, first occurrence wins.

    Raises
    ------
    ValueError
        An explicit path does not exist, or a glob matches no movie.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    excluded = [Path(os.path.expanduser(str(folder))).resolve() for folder in exclude]
    for item in inputs:
        text = os.path.expanduser(str(item))
        if glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            matches = [m for m in matches if not any(m.resolve().is_relative_to(x) for x in excluded)]
            movies = [m for m in matches if _looks_like_movie(m)]
            if not movies:
                raise ValueError(
                    f"{item}: matches no movie ({len(matches)} paths matched, none a CTC folder of "
                    "t000.tif…, a (T, Y, X) TIFF or a zarr array); check the pattern"
                )
            skipped = [m.name for m in matches if m not in movies]
            if skipped:
                logger.info(
                    "%s: skipped %d matches that are not movies (e.g. %s)", item, len(skipped), skipped[0]
                )
        else:
            path = Path(text)
            if not path.exists():
                raise ValueError(f"{item}: no such file or folder; check the path")
            movies = [path]
        for movie in expand_datasets(movies):
            key = movie.resolve()
            if key not in seen:
                seen.add(key)
                found.append(movie.absolute())
    return found


def _base_name(path: Path) -> str:
    name = path.name
    for suffix in _STRIPPED_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    if name.lower().endswith(".ome") and len(name) > 4:
        name = name[:-4]
    return name


def _safe(part: str) -> str:
    part = _UNSAFE_CHARACTERS.sub("_", part)
    return "_" + part[1:] if part.startswith(".") else part or "_"


def position_names(paths: Sequence[Path]) -> list[str]:
    """Short, unique, file-system-safe names derived from the paths.

    A name is the movie's base name (``pos03.tif`` → ``pos03``), prefixed by as many parent
    folders as it takes to tell it apart from the others (``a/x.tif``, ``b/x.tif`` → ``a_x``,
    ``b_x``). CTC sequence folders are called ``01``, ``02`` … in every data set, so they always
    carry their parent (``Fluo-N2DL-HeLa/01`` → ``Fluo-N2DL-HeLa_01``). Names are compared
    case-insensitively, so they stay distinct on case-insensitive file systems.
    """
    paths = [Path(p).absolute() for p in paths]
    bases = [_base_name(p) for p in paths]
    parents = [[part for part in reversed(p.parent.parts) if part != p.anchor] for p in paths]
    depths = [1 + (bases[i].isdigit() and bool(parents[i])) for i in range(len(paths))]

    def name_of(i: int) -> str:
        parts = [*reversed(parents[i][: depths[i] - 1]), bases[i]]
        return "_".join(_safe(part) for part in parts)

    names = [name_of(i) for i in range(len(paths))]
    while True:
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(name.lower(), []).append(i)
        clashes = [members for key, members in groups.items() if len(members) > 1 or key in RESERVED_NAMES]
        if not clashes:
            return names
        grew = False
        for members in clashes:
            for i in members:
                if depths[i] <= len(parents[i]):
                    depths[i] += 1
                    names[i] = name_of(i)
                    grew = True
        if not grew:
            # Paths exhausted (e.g. ``x.tif`` and ``x.zarr`` side by side): number them.
            taken = {name.lower() for name in names} | RESERVED_NAMES
            for members in clashes:
                for count, i in enumerate(members[1:] if len(members) > 1 else members, start=2):
                    candidate = f"{names[i]}-{count}"
                    while candidate.lower() in taken:
                        count += 1
                        candidate = f"{names[i]}-{count}"
                    taken.add(candidate.lower())
                    names[i] = candidate


def plan_positions(inputs: Iterable[str | Path], exclude: Iterable[str | Path] = ()) -> list[Position]:
    """The positions of a batch run, in input order (each glob's matches sorted).

    Parameters
    ----------
    inputs : iterable of str or pathlib.Path
        CTC sequence folders, (T, Y, X) TIFFs or zarr arrays; globs are expanded here (a shell
        may not have done it, e.g. on Windows or when quoted).
    exclude : iterable of str or pathlib.Path, optional
        Folders whose contents globs never match (pass the batch output folder, so that
        ``data/**/*.tif`` does not pick up result masks on a rerun).

    Returns
    -------
    list of Position

    Raises
    ------
    ValueError
        No inputs, a missing path, or a glob that matches no movie.
    """
    paths = expand_inputs(inputs, exclude)
    if not paths:
        raise ValueError("no inputs given; pass CTC folders, (T, Y, X) TIFFs or zarr arrays (globs allowed)")
    names = position_names(paths)
    return [Position(name, path, movie_kind(path)) for name, path in zip(names, paths, strict=True)]
