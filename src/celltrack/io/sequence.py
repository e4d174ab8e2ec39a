"""Lazy image sequences: CTC folders, multi-page TIFFs and zarr arrays.

Frames are read one at a time on access, so a 1,000-frame movie is never loaded whole.
Every problem with the input is reported as a one-line ``ValueError`` that names the
file and says what to do about it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import tifffile

logger = logging.getLogger(__name__)

#: File-name patterns of CTC frame folders: raw frames, results, TRA markers and SEG masks.
FRAME_PATTERN = re.compile(r"^(?P<prefix>t|mask|man_track|man_seg)(?P<index>\d{3,4})\.tiff?$")
TIFF_SUFFIXES = (".tif", ".tiff")
#: Sequence folders of a CTC data set: ``01``, ``02`` … (beside their ``NN_GT`` / ``NN_ST``).
SEQUENCE_FOLDER = re.compile(r"^\d{2,}$")


class ImageSequence:
    """A lazily read movie of 2-D frames.

    Parameters
    ----------
    source : str
        Human-readable origin (a path) used in messages.
    reader : callable
        ``reader(t) -> ndarray (Y, X)``.
    shape : tuple of int
        ``(T, Y, X)``.
    dtype : numpy.dtype
        Frame dtype.
    paths : list of pathlib.Path, optional
        One file per frame for folder sequences (None for a single file or zarr).
    """

    def __init__(
        self,
        source: str,
        reader: Callable[[int], np.ndarray],
        shape: tuple[int, int, int],
        dtype: np.dtype,
        paths: list[Path] | None = None,
    ) -> None:
        self.source = source
        self._reader = reader
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.paths = paths

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(Y, X)`` of every frame."""
        return self.shape[1], self.shape[2]

    def __getitem__(self, t: int) -> np.ndarray:
        n = len(self)
        if not -n <= t < n:
            raise IndexError(f"frame {t} out of range for {n} frames of {self.source}")
        t = t % n
        where = str(self.paths[t]) if self.paths else f"{self.source} frame {t}"
        try:
            frame = np.asarray(self._reader(t))
        except (OSError, ValueError, tifffile.TiffFileError, KeyError, RuntimeError) as err:
            raise ValueError(f"{where}: cannot read the frame ({err}); replace the corrupt file") from err
        frame = np.squeeze(frame) if frame.ndim > 2 else frame
        if frame.shape != self.frame_shape:
            raise ValueError(
                f"{where}: frame shape {frame.shape} differs from {self.frame_shape}; all frames must match"
            )
        if frame.dtype.kind == "f":
            finite = np.isfinite(frame)
            if not finite.any():
                raise ValueError(f"{where}: the frame is all NaN/inf; remove or repair it")
            if not finite.all():
                fill = float(np.median(frame[finite]))
                logger.warning("%s: %d non-finite pixels replaced by the median", where, int((~finite).sum()))
                frame = np.where(finite, frame, fill).astype(frame.dtype)
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(len(self)):
            yield self[t]

    def cached(self, max_bytes: int) -> ImageSequence:
        """The same sequence, keeping decoded frames in memory up to ``max_bytes`` in all.

        For work that reads the movie several times (segmentation, then the linker's intensities, then its
        filters): a compressed frame is decoded once. Frames are kept in the order first read until the
        budget is spent, and the rest are read from disk each time, so a movie larger than the budget
        still streams (a least-recently-used cache would keep nothing across passes in frame order).
        Kept frames are read-only.

        Parameters
        ----------
        max_bytes : int
            Memory budget for the kept frames (0 keeps none).

        Returns
        -------
        ImageSequence
        """
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        kept: dict[int, np.ndarray] = {}
        budget = [int(max_bytes)]

        def read(t: int) -> np.ndarray:
            frame = kept.get(t)
            if frame is None:
                frame = self[t]
                if frame.nbytes <= budget[0]:
                    frame = frame.copy() if not frame.flags.owndata else frame
                    frame.setflags(write=False)
                    kept[t] = frame
                    budget[0] -= frame.nbytes
            return frame

        return ImageSequence(self.source, read, self.shape, self.dtype, self.paths)

    def __repr__(self) -> str:
        return f"ImageSequence({self.source!r}, shape={self.shape}, dtype={self.dtype})"


def _check_2d(shape: tuple[int, ...], where: str) -> tuple[int, int]:
    squeezed = tuple(s for s in shape if s != 1) if len(shape) > 2 else shape
    if len(squeezed) != 2:
        kind = "RGB" if shape[-1] in (3, 4) else "3-D"
        raise ValueError(
            f"{where}: frames have shape {shape} ({kind}); celltrack tracks 2-D single-channel frames — "
            "export one channel/plane per frame"
        )
    return int(squeezed[0]), int(squeezed[1])


def list_frame_files(folder: Path, prefix: str | None = None) -> tuple[str, dict[int, Path]]:
    """Find the CTC frame files of a folder.

    Parameters
    ----------
    folder : pathlib.Path
        Folder holding ``t000.tif``, ``mask000.tif``, ``man_track000.tif`` or ``man_seg000.tif`` files
        (3 or 4 digits).
    prefix : str, optional
        Restrict to one prefix; by default the most frequent prefix is used.

    Returns
    -------
    prefix : str
    files : dict of int to pathlib.Path
        Frame index to file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise ValueError(f"{folder}: no such folder; check the path")
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of frames")
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        match = FRAME_PATTERN.match(path.name)
        if match:
            found.setdefault(match["prefix"], {})[int(match["index"])] = path
    if prefix is not None:
        found = {prefix: found[prefix]} if prefix in found else {}
    if not found:
        tiffs = [p.name for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES]
        hint = f" (found {len(tiffs)} other TIFFs, e.g. {tiffs[0]})" if tiffs else ""
        wanted = f"{prefix}000.tif" if prefix else "t000.tif, mask000.tif or man_track000.tif"
        raise ValueError(f"{folder}: no CTC frame files{hint}; name frames like {wanted}")
    best = max(found, key=lambda p: len(found[p]))
    return best, found[best]


def is_raw_sequence_folder(path: str | Path) -> bool:
    """A folder holding raw CTC frames ``tTTT.tif`` (not ground truth, results or anything else)."""
    try:
        return any(
            (match := FRAME_PATTERN.match(child.name)) is not None and match["prefix"] == "t"
            for child in Path(path).iterdir()
        )
    except OSError:
        return False


def dataset_sequences(path: str | Path) -> list[Path]:
    """The sequence folders of a CTC data set folder, or ``[]`` for anything else.

    A data set (``Fluo-N2DL-HeLa``, or what ``celltrack synth pos1`` writes) holds sequence
    folders ``01``, ``02`` … of raw frames beside their ``NN_GT`` / ``NN_ST``, and no frames itself.

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    list of pathlib.Path
        ``path / "01"``, ``path / "02"`` … in name order.
    """
    path = Path(path)
    if not path.is_dir() or is_raw_sequence_folder(path):
        return []
    return sorted(
        child
        for child in path.iterdir()
        if child.is_dir() and SEQUENCE_FOLDER.match(child.name) and is_raw_sequence_folder(child)
    )


def expand_datasets(paths: Iterable[str | Path]) -> list[Path]:
    """Replace every CTC data set folder among ``paths`` by its sequence folders (a one-line note each).

    Parameters
    ----------
    paths : iterable of str or pathlib.Path

    Returns
    -------
    list of pathlib.Path
        In input order, each data set replaced in place by its sequences; other paths unchanged.
    """
    expanded: list[Path] = []
    for path in map(Path, paths):
        sequences = dataset_sequences(path)
        if sequences:
            names = ", ".join(f"{path.name}_{s.name}" for s in sequences)
            logger.info("%s: a CTC data set; expanded into its sequences %s", path, names)
        expanded.extend(sequences or [path])
    return expanded


def open_sequence(path: str | Path, prefix: str | None = None) -> ImageSequence:
    """Open a movie lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        A CTC folder of frames (``t000.tif`` …, ``mask000.tif`` …, ``man_track000.tif`` …),
        a multi-page TIFF of shape (T, Y, X) (a 2-D TIFF is a one-frame movie), or a zarr
        array of shape (T, Y, X). A CTC data set folder with a single sequence ``01`` opens as
        that sequence (with a note); one with several is an error naming them.
    prefix : str, optional
        For folders: which frame files to read (``t``, ``mask``, ``man_track``, ``man_seg``).

    Returns
    -------
    ImageSequence

    Raises
    ------
    ValueError
        Missing path, no frames, gaps in frame numbering, mixed shapes or dtypes, RGB or
        3-D frames, unreadable files.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder; check the path")
    is_zarr = (path / ".zarray").exists() or (path / "zarr.json").exists()
    if path.suffix == ".zarr" or (path.is_dir() and is_zarr):
        return _open_zarr(path)
    if path.is_dir():
        sequences = dataset_sequences(path) if prefix in (None, "t") else []
        if len(sequences) > 1:
            names = ", ".join(s.name for s in sequences)
            raise ValueError(
                f"{path}: a CTC data set of {len(sequences)} sequences ({names}); pass one of them "
                f"(e.g. {sequences[0]}) or process them all with: celltrack batch {path} --out DIR"
            )
        if sequences:
            logger.info("%s: a CTC data set; using its sequence %s", path, sequences[0])
            path = sequences[0]
        return _open_folder(path, prefix)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _open_multipage(path)
    raise ValueError(f"{path}: not a TIFF, zarr array or CTC folder; convert the movie to TIFF frames")


def _open_folder(folder: Path, prefix: str | None) -> ImageSequence:
    prefix, files = list_frame_files(folder, prefix)
    indices = sorted(files)
    expected = range(indices[0], indices[0] + len(indices))
    if indices[0] != 0 or indices != list(expected):
        missing = sorted(set(range(indices[-1] + 1)) - set(indices))[:5]
        raise ValueError(
            f"{folder}: frame numbering has gaps (missing {prefix} frames {missing}); "
            "frames must be numbered 0..T-1 without gaps"
        )
    paths = [files[i] for i in indices]
    shapes: dict[tuple[tuple[int, ...], str], Path] = {}
    for p in paths:
        try:
            with tifffile.TiffFile(p) as tif:
                series = tif.series[0]
                key = (tuple(series.shape), str(series.dtype))
        except (tifffile.TiffFileError, OSError, ValueError, IndexError) as err:
            raise ValueError(f"{p}: not a readable TIFF ({err}); replace the corrupt file") from err
        shapes.setdefault(key, p)
    if len(shapes) > 1:
        (k0, p0), (k1, p1) = list(shapes.items())[:2]
        raise ValueError(
            f"{p1}: shape/dtype {k1} differs from {p0.name} {k0}; all frames of a movie must match"
        )
    (shape, dtype), _ = next(iter(shapes.items()))
    frame_shape = _check_2d(shape, str(paths[0]))

    def read(t: int) -> np.ndarray:
        return tifffile.imread(paths[t])

    return ImageSequence(str(folder), read, (len(paths), *frame_shape), np.dtype(dtype), paths)


def _open_multipage(path: Path) -> ImageSequence:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
            n_pages = len(tif.pages)
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as err:
        raise ValueError(f"{path}: not a readable TIFF ({err}); replace the corrupt file") from err
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or (shape[-1] in (3, 4) and n_pages == shape[0] == 1):
        raise ValueError(
            f"{path}: a movie TIFF must have shape (T, Y, X), got {shape}; export one channel/plane per frame"
        )
    if n_pages == shape[0]:

        def read(t: int) -> np.ndarray:
            return tifffile.imread(path, key=t)
    else:

        def read(t: int) -> np.ndarray:
            return tifffile.imread(path)[t]

    return ImageSequence(str(path), read, shape, dtype)


def _open_zarr(path: Path) -> ImageSequence:
    import zarr

    try:
        array = zarr.open_array(str(path), mode="r")
    except Exception as err:  # zarr raises many error types for a broken store
        raise ValueError(f"{path}: not a readable zarr array ({err}); pass the array, not its group") from err
    if array.ndim != 3:
        raise ValueError(f"{path}: a zarr movie must have shape (T, Y, X), got {array.shape}")

    def read(t: int) -> np.ndarray:
        return np.asarray(array[t])

    return ImageSequence(str(path), read, tuple(array.shape), array.dtype)
