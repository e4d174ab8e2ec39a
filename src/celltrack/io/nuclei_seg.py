"""Still images of nuclei with instance labels (``nuclei-seg`` layout), e.g. for RecogNet pre-training.

Layout of one source folder ``SET``: ``SET/manifest.csv`` (one row per image, columns ``name`` and
``median_diameter_px`` at least), ``SET/images/NAME.tif`` (grey) and ``SET/labels/NAME.tif`` (instance
labels, 0 = background). A root folder holding several such sources (``nuclei-seg/DSB2018-fluo``,
``nuclei-seg/S-BSST265``) is read source by source.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from celltrack.io.annotations import read_labelled_image

__all__ = ["LabelledImage", "iter_labelled_images", "nuclei_seg_sources"]

MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class LabelledImage:
    """One still image with its nuclei.

    Attributes
    ----------
    source : str
        Name of the source folder (e.g. ``DSB2018-fluo``).
    name : str
        Image name in its manifest.
    image : numpy.ndarray, shape (Y, X)
        Grey image as stored (colour images are averaged over their channels).
    labels : numpy.ndarray, shape (Y, X), int32
        Instance labels, 0 = background.
    median_diameter : float
        Median nucleus diameter (px) from the manifest.
    """

    source: str
    name: str
    image: np.ndarray
    labels: np.ndarray
    median_diameter: float


def nuclei_seg_sources(root: str | Path) -> list[Path]:
    """Source folders under ``root``: ``root`` itself when it holds a manifest, else its children that do.

    Raises
    ------
    ValueError
        ``root`` is missing or holds no ``manifest.csv`` at either level.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: nuclei-seg folder not found; pass e.g. ../shared/data/nuclei-seg")
    if (root / MANIFEST).is_file():
        return [root]
    sources = sorted(p for p in root.iterdir() if (p / MANIFEST).is_file())
    if not sources:
        raise ValueError(
            f"{root}: no {MANIFEST} here or in its sub-folders; expected SET/{MANIFEST}, SET/images, "
            "SET/labels"
        )
    return sources


def _read_manifest(source: Path) -> pd.DataFrame:
    path = source / MANIFEST
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the manifest ({err})") from err
    missing = {"name", "median_diameter_px"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: manifest lacks columns {sorted(missing)}")
    return table


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ValueError(f"{path}: {what} listed in the manifest is missing")
    return path


def iter_labelled_images(roots: str | Path | Sequence[str | Path]) -> Iterator[LabelledImage]:
    """Every image of every source under ``roots``, in manifest order (lazy: one image in memory at a time).

    Parameters
    ----------
    roots : path or sequence of paths
        nuclei-seg root folders or single source folders (see :func:`nuclei_seg_sources`).

    Yields
    ------
    LabelledImage

    Raises
    ------
    ValueError
        A missing or unreadable manifest, image or label file, or an image whose labels differ in shape.
    """
    for root in [roots] if isinstance(roots, str | Path) else roots:
        for source in nuclei_seg_sources(root):
            for row in _read_manifest(source).itertuples(index=False):
                image, labels = read_labelled_image(
                    _existing(source / "images" / f"{row.name}.tif", "image"),
                    _existing(source / "labels" / f"{row.name}.tif", "label image"),
                )
                diameter = float(row.median_diameter_px)
                if not np.isfinite(diameter) or diameter <= 0:
                    raise ValueError(f"{source / MANIFEST}: {row.name} has no positive median_diameter_px")
                yield LabelledImage(source.name, str(row.name), image, labels, diameter)
