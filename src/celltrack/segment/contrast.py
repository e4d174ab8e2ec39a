"""Drop objects that do not stand out from their surroundings: noise blobs at a low signal-to-noise ratio.

A segmenter trained on bright nuclei finds "nuclei" in the noise of a dim movie (at 40 photons above a
background of 100, the shipped SegNet returns four objects per true nucleus). A true nucleus differs from
such a blob in that its mean intensity is significantly above the background around it. For each object,
with ``m`` its mean intensity, ``b`` and ``s`` the median and the robust standard deviation (1.4826 × MAD)
of a ring of unlabelled pixels around it (about a nucleus wide) and ``A`` its area in pixels, the
significance is

    z = (m - b) / (s / sqrt(A)),

the number of standard errors by which the object's mean exceeds the background, for white noise. Noise
blobs score about 0-3, nuclei dozens (of 1,455 SegNet objects on a marker in Fluo-N2DL-HeLa 01, whose
faintest nuclei are 10-30 counts above the background, one scored below 5). Objects without background
around them (enclosed by other objects or the frame) are kept.
"""

from __future__ import annotations

import logging

import numpy as np
from skimage.segmentation import expand_labels

logger = logging.getLogger(__name__)

__all__ = ["drop_insignificant_objects", "object_significance"]

#: Robust standard deviation of Gaussian noise from its median absolute deviation.
_MAD_TO_STD = 1.4826


def object_significance(labels: np.ndarray, image: np.ndarray, ring_width: int = 3) -> np.ndarray:
    """Significance ``z`` of every label's mean intensity above the background ring around it.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (Y, X)
        Instance labels (0 = background).
    image : numpy.ndarray, shape (Y, X)
        The raw frame the labels were found in.
    ring_width : int
        Width (px) of the ring of unlabelled pixels around each object taken as its background.

    Returns
    -------
    numpy.ndarray, shape (labels.max() + 1,)
        ``z`` per label value (index 0 and absent labels: NaN); ``inf`` for objects without a ring or
        brighter than a perfectly flat ring.
    """
    labels = np.asarray(labels)
    image = np.asarray(image)
    if labels.shape != image.shape or labels.ndim != 2:
        raise ValueError(f"labels {labels.shape} and image {image.shape} must be the same 2-D shape")
    if ring_width < 1:
        raise ValueError(f"ring_width must be at least 1 px, got {ring_width}")
    n = int(labels.max()) + 1 if labels.size else 1
    z = np.full(n, np.nan)
    if n == 1:
        return z
    values = image.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("image holds NaN or infinite values; replace them before segmenting")
    flat_labels = labels.ravel().astype(np.int64)
    area = np.bincount(flat_labels, minlength=n).astype(np.float64)
    mean = np.bincount(flat_labels, weights=values.ravel(), minlength=n) / np.maximum(area, 1.0)
    expanded = expand_labels(labels, distance=ring_width)
    ring = (labels == 0) & (expanded > 0)
    ring_labels = expanded[ring].astype(np.int64)
    ring_values = values[ring]
    background = _label_medians(ring_values, ring_labels, n - 1)
    deviation = np.abs(ring_values - background[ring_labels])
    spread = _MAD_TO_STD * _label_medians(deviation, ring_labels, n - 1)
    contrast = mean - background
    with np.errstate(divide="ignore", invalid="ignore"):
        z = contrast * np.sqrt(area) / spread
    # A flat ring (clipped or synthetic background): any excess is significant, none is not.
    z = np.where(spread > 0, z, np.where(contrast > 0, np.inf, 0.0))
    z = np.where(np.isnan(background), np.inf, z)
    z[area == 0] = np.nan
    z[0] = np.nan
    return z


def drop_insignificant_objects(
    labels: np.ndarray, image: np.ndarray, min_significance: float, ring_width: int | None = None
) -> np.ndarray:
    """Labels with the objects whose :func:`object_significance` is below ``min_significance`` removed.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (Y, X)
    image : numpy.ndarray, shape (Y, X)
    min_significance : float
        Smallest significance kept (standard errors); 0 keeps every object.
    ring_width : int, optional
        See :func:`object_significance`. Default: the objects' median equivalent diameter (at least 3 px):
        a ring a nucleus wide is mostly true background even around a fragment of a faint nucleus, whose
        unsegmented rest would otherwise raise a narrow ring to the fragment's level.

    Returns
    -------
    numpy.ndarray, shape (Y, X)
        Same dtype; remaining labels renumbered 1..K in their original order.
    """
    if min_significance < 0:
        raise ValueError(f"min_significance must be >= 0, got {min_significance}")
    labels = np.asarray(labels)
    if min_significance == 0 or labels.size == 0 or labels.max() == 0:
        return labels
    if ring_width is None:
        areas = np.bincount(labels.ravel().astype(np.int64))[1:]
        ring_width = max(3, round(2.0 * np.sqrt(np.median(areas[areas > 0]) / np.pi)))
    z = object_significance(labels, image, int(ring_width))
    present = ~np.isnan(z)
    keep = present & (z >= min_significance)
    dropped = int(present.sum() - keep.sum())
    if dropped:
        logger.debug("dropped %d of %d objects not standing out from the background", dropped, present.sum())
    lookup = np.zeros(len(z), labels.dtype)
    lookup[keep] = np.arange(1, int(keep.sum()) + 1, dtype=labels.dtype)
    return lookup[labels]


def _label_medians(values: np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """Median of ``values`` over each label 1..n_labels (index 0 unused); NaN for empty labels."""
    medians = np.full(n_labels + 1, np.nan)
    inside = labels > 0
    if not inside.any():
        return medians
    keys = labels[inside]
    data = values[inside]
    order = np.lexsort((data, keys))
    keys, data = keys[order], data[order]
    counts = np.bincount(keys, minlength=n_labels + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    present = np.flatnonzero(counts)
    low = starts[present] + (counts[present] - 1) // 2
    high = starts[present] + counts[present] // 2
    medians[present] = 0.5 * (data[low].astype(np.float64) + data[high])
    return medians
