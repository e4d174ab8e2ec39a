"""Annotated still images for segmentation training: ``images/`` + ``labels/`` folders and CTC SEG truth.

Two layouts are read into one record, :class:`AnnotatedImage`:

* an *image folder*: ``DIR/images/NAME.tif`` (grey) and ``DIR/labels/NAME.tif`` (integer instances, 0 =
  background), optionally ``DIR/manifest.csv`` with a ``name`` column and a ``source_split`` column (e.g. the
  authors' train/test split), as in the nuclei-seg collection;
* a CTC sequence folder ``NN`` with ``NN_GT/SEG`` and/or ``NN_ST/SEG`` beside it (gold truth pasted over
  silver truth where both exist), or a CTC dataset folder holding such sequences.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from celltrack.io.ctc import find_ground_truth, read_gt
from celltrack.io.sequence import ImageSequence, dataset_sequences, open_sequence

logger = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".tif", ".tiff")


@dataclass
class AnnotatedImage:
    """One annotated image.

    Attributes
    ----------
    image : numpy.ndarray, shape (Y, X)
        Raw pixels, any numeric dtype.
    mask : numpy.ndarray, shape (Y, X), integer
        Complete instance labels (0 = background): unlabelled nuclei would be taught as background.
    source : str
        Name of the source (data set) it belongs to: sampling weights and reports go by it.
    name : str
        Identifier (file or frame), for provenance.
    diameter : float
        Median nucleus diameter (px); NaN = measure it from ``mask``.
    split : str
        The source's own split label ("" when it has none).
    """

    image: np.ndarray
    mask: np.ndarray
    source: str
    name: str = ""
    diameter: float = float("nan")
    split: str = ""


def is_image_folder(path: str | Path) -> bool:
    """True when ``path`` holds ``images/`` and ``labels/`` subfolders."""
    path = Path(path)
    return (path / "images").is_dir() and (path / "labels").is_dir()


def read_image_folder(
    path: str | Path, *, exclude_splits: Iterable[str] = (), source: str | None = None
) -> list[AnnotatedImage]:
    """Read an ``images/`` + ``labels/`` folder.

    Parameters
    ----------
    path : str or pathlib.Path
        Folder holding ``images/NAME.tif`` and ``labels/NAME.tif`` (and optionally ``manifest.csv``).
    exclude_splits : iterable of str
        Leave out images whose manifest ``source_split`` is one of these (e.g. ``"test"``).
    source : str, optional
        Source name; defaults to the folder's name.

    Returns
    -------
    list of AnnotatedImage

    Raises
    ------
    ValueError
        No images, an image without its label file, unreadable files, shapes that differ, labels that are
        not integers.
    """
    path = Path(path)
    if not is_image_folder(path):
        raise ValueError(f"{path}: not an image folder; it needs images/ and labels/ subfolders")
    source = source or path.name
    images = sorted(p for p in (path / "images").iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"{path / 'images'}: no .tif images; put one grey image per file there")
    manifest = _read_manifest(path / "manifest.csv")
    excluded = set(exclude_splits)
    out = []
    for image_path in images:
        name = image_path.stem
        row = manifest.get(name, {})
        split = row.get("source_split", "")
        if split and split in excluded:
            continue
        label_path = _label_file(path / "labels", name)
        if label_path is None:
            raise ValueError(
                f"{image_path}: no label image labels/{name}.tif beside it; add its labels or remove the "
                "image"
            )
        image, mask = read_labelled_image(image_path, label_path)
        diameter = _float(row.get("median_diameter_px"))
        out.append(AnnotatedImage(image, mask, source, f"{source}/{name}", diameter, split))
    if not out:
        raise ValueError(f"{path}: every image is in an excluded split ({', '.join(sorted(excluded))})")
    return out


def read_labelled_image(image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A grey image and its instance labels, checked: ``(image (Y, X), labels (Y, X) int32)``.

    RGB(A) renderings of grey images are averaged over their colour channels.

    Raises
    ------
    ValueError
        An unreadable file, shapes that differ or are not 2-D, labels that are not integers (one line naming
        the file).
    """
    image = _read_tiff(image_path)
    mask = _read_tiff(label_path)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3].mean(axis=-1)
    if image.ndim != 2 or mask.shape != image.shape:
        raise ValueError(
            f"{label_path}: labels {mask.shape} do not match image {image.shape}; both must be 2-D and "
            "the same size"
        )
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"{label_path}: labels must be integers (0 = background), got {mask.dtype}")
    return image, mask.astype(np.int32, copy=False)


def read_ctc_annotations(
    seq_dir: str | Path, *, hold_out_frames: int = 0, frames: Sequence[int] | None = None,
    source: str | None = None,
) -> list[AnnotatedImage]:
    """Frames of a CTC sequence with SEG truth (``NN_GT/SEG``, ``NN_ST/SEG``; gold pasted over silver).

    Parameters
    ----------
    seq_dir : str or pathlib.Path
        The sequence folder ``NN``.
    hold_out_frames : int
        Leave out frames below this number (kept for honest evaluation).
    frames : sequence of int, optional
        Only these frames.
    source : str, optional
        Source name; defaults to ``DATASET/NN``.
    """
    seq_dir = Path(seq_dir)
    images, masks = ctc_seg_frames(seq_dir)
    source = source or f"{seq_dir.parent.name}/{seq_dir.name}"
    wanted = set(frames) if frames is not None else None
    out = [
        AnnotatedImage(np.asarray(images[t]), masks[t](), source, f"{source}/t{t:03d}")
        for t in sorted(masks)
        if t >= hold_out_frames and (wanted is None or t in wanted)
    ]
    if not out:
        raise ValueError(f"{seq_dir}: every SEG frame is held out; lower --hold-out-frames")
    return out


def ctc_seg_frames(seq_dir: str | Path) -> tuple[ImageSequence, dict[int, Callable[[], np.ndarray]]]:
    """A CTC sequence's frames and, for every frame with SEG truth, a function that reads its mask.

    Masks are the silver truth (``NN_ST/SEG``) with the gold truth (``NN_GT/SEG``, often partial) pasted over
    it (:func:`merge_gold_into_silver`), as int32 labels; read only when called.

    Raises
    ------
    ValueError
        No SEG mask beside the sequence.
    """
    seq_dir = Path(seq_dir)
    images = open_sequence(seq_dir)
    truth = find_ground_truth(seq_dir)
    gold = read_gt(truth["GT"]).seg if "GT" in truth else {}
    silver = read_gt(truth["ST"]).seg if "ST" in truth else {}
    if not gold and not silver:
        raise ValueError(
            f"{seq_dir}: no SEG masks in {seq_dir.name}_GT/SEG or {seq_dir.name}_ST/SEG to train on"
        )

    def reader(t: int) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            gold_mask = _read_tiff(gold[t]) if t in gold else None
            mask = merge_gold_into_silver(_read_tiff(silver[t]), gold_mask) if t in silver else gold_mask
            return mask.astype(np.int32, copy=False)

        return read

    return images, {t: reader(t) for t in sorted(set(gold) | set(silver))}


def merge_gold_into_silver(silver: np.ndarray, gold: np.ndarray | None) -> np.ndarray:
    """Silver-truth instances with the (often partial) gold truth pasted over them.

    A silver object mostly covered by gold objects is replaced by them; the rest is kept, so that every
    nucleus stays labelled (unlabelled nuclei would be taught as background).

    Parameters
    ----------
    silver, gold : numpy.ndarray, shape (Y, X)
        Instance masks (``gold`` may be None).

    Returns
    -------
    numpy.ndarray, shape (Y, X), int32
        Consecutive labels.
    """
    merged = silver.astype(np.int32)
    if gold is not None:
        if gold.shape != silver.shape:
            raise ValueError(f"gold mask {gold.shape} and silver mask {silver.shape} differ in shape")
        gold = gold.astype(np.int32)
        covered = np.bincount(merged[gold > 0], minlength=merged.max() + 1)
        sizes = np.bincount(merged.ravel(), minlength=merged.max() + 1)
        mostly_gold = covered > 0.5 * np.maximum(sizes, 1)
        mostly_gold[0] = False
        merged[mostly_gold[merged]] = 0
        merged[gold > 0] = gold[gold > 0] + merged.max()
    _, consecutive = np.unique(merged, return_inverse=True)
    return consecutive.reshape(merged.shape).astype(np.int32)


def read_annotations(
    paths: Sequence[str | Path], *, hold_out_frames: int = 0, exclude_splits: Iterable[str] = ()
) -> list[AnnotatedImage]:
    """Annotated images from any mix of image folders, CTC sequence folders and CTC dataset folders.

    Raises
    ------
    ValueError
        A path that does not exist or is none of the layouts (one line naming it and the layouts).
    """
    out: list[AnnotatedImage] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ValueError(
                f"{path}: does not exist; pass an images/+labels/ folder or a CTC sequence folder"
            )
        if is_image_folder(path):
            out += read_image_folder(path, exclude_splits=exclude_splits)
            continue
        sequences = [path] if find_ground_truth(path) else [
            seq for seq in dataset_sequences(path) if find_ground_truth(seq)
        ]
        if not sequences:
            raise ValueError(
                f"{path}: neither an images/+labels/ folder nor a CTC sequence (NN with NN_GT/SEG or "
                "NN_ST/SEG beside it) nor a dataset folder of such sequences"
            )
        for seq in sequences:
            out += read_ctc_annotations(seq, hold_out_frames=hold_out_frames)
    return out


def _label_file(folder: Path, stem: str) -> Path | None:
    for suffix in _IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _read_tiff(path: Path) -> np.ndarray:
    try:
        return np.asarray(tifffile.imread(path))
    except Exception as exc:  # tifffile raises many types for broken files
        raise ValueError(f"{path}: unreadable TIFF ({type(exc).__name__}); re-export the file") from exc


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: unreadable manifest ({type(exc).__name__}); fix or remove it") from exc
    return {row["name"]: row for row in rows if row.get("name")}


def _float(text: str | None) -> float:
    try:
        value = float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan
    return value if value > 0 else math.nan
