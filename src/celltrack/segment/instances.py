"""From 3-class probability maps (interior, boundary, background) to nucleus instances.

Seeded watershed:

* strong seeds are the confident nucleus interiors, P(interior) > ``interior_threshold`` (optionally
  P(interior) − ``boundary_weight`` × P(boundary), so that a faint boundary band between touching
  nuclei still parts their seeds);
* optionally a seed that falls apart into two or more large parts at a higher level of that signal
  (``split_levels``) is replaced by those parts: touching nuclei whose interiors join through a
  shallow dip;
* optional weak seeds are blobs of P(interior) > ``weak_interior_threshold`` that hold no strong
  seed — faint nuclei a network is unsure about (HeLa has nuclei 10-30 counts above background
  where typical ones are 300-2000);
* the flooding surface is 1 − P(interior), high on the boundary band that separates touching nuclei;
* each object keeps the pixels whose P(interior) + P(boundary) exceeds
  ``min(foreground_threshold, foreground_relative × its own peak)``, so a faint nucleus keeps its
  extent instead of vanishing under a threshold made for bright ones;
* objects are cut at pronounced necks of their shape (``neck_ratio``), for touching nuclei without
  any boundary signal between them.

Lengths and areas are given at the model's scale (nuclei ≈ 24 px across for the shipped model); pass
``pixel_scale`` (frame pixels per model pixel) when the maps are at another resolution.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

logger = logging.getLogger(__name__)

# Pixels with P(interior) + P(boundary) below this never join an object, whatever its peak.
_FLOOD_FLOOR = 0.15


class InstancesConfig(BaseModel):
    """Parameters of :func:`probabilities_to_instances` (lengths in px, areas in px², at model scale)."""

    model_config = ConfigDict(extra="forbid")

    # Defaults chosen on the validation frames of the shipped model's training run (frames it did not
    # train on; the benchmark's held-out frames were not used): its class-weighted loss makes
    # P(background) small near nuclei, so a strict foreground threshold gives the right size.
    interior_threshold: float = Field(0.6, gt=0, lt=1, description="Strong seeds: P(interior) above this.")
    weak_interior_threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Weak seeds (faint nuclei): blobs of P(interior) above this without a strong seed; "
        "None = off. Worth 0.3 with a model unsure about faint nuclei (the first shipped model: HeLa "
        "FN 44 -> 27); the current one finds them with strong seeds, and weak seeds add false positives.",
    )
    foreground_threshold: float = Field(
        0.85, gt=0, lt=1, description="Objects: P(interior) + P(boundary) above this (bright nuclei)."
    )
    foreground_relative: float = Field(
        0.85,
        gt=0,
        le=1,
        description="... or above this fraction of the object's own peak P(interior) + P(boundary), "
        "when that is lower (faint nuclei).",
    )
    smoothing_sigma: float = Field(1.0, ge=0, description="Gaussian smoothing of P(interior) (px).")
    # boundary_weight and split_levels are off: with the shipped model they gained <= 0.01 on its validation
    # frames and lost on the benchmark's held-out frames (docs/benchmarks.md).
    boundary_weight: float = Field(
        0.0,
        ge=0,
        description="Seeds and flooding use P(interior) - boundary_weight x P(boundary): a faint boundary "
        "band between touching nuclei then separates their seeds.",
    )
    split_h: float = Field(
        0.0,
        ge=0,
        description="h-maxima depth on the distance transform of the strong seeds (px); 0 = off. Over-splits "
        "irregular nuclei (HeLa); neck_ratio is the safer split.",
    )
    # Touching nuclei with no dark gap between them (dense HeLa frames, synthetic movies) get no boundary
    # signal; their outline still has a neck. Validation frames: HeLa merges 43 -> 36, SEG +0.03.
    neck_ratio: float = Field(
        0.8,
        ge=0,
        lt=1,
        description="Cut an object where its width (distance-transform saddle) is below this fraction of "
        "the inscribed radius of the smaller part; 0 = off.",
    )
    min_neck_radius: float = Field(
        4.0, ge=0, description="Parts with a smaller inscribed radius (px) are never cut off at a neck."
    )
    split_levels: tuple[float, ...] = Field(
        (),
        description="Higher levels of the seed signal at which a seed is examined again: a seed that falls "
        "apart into two or more parts of at least min_split_area there is replaced by those parts (touching "
        "nuclei whose seeds join through a shallow dip); () = off.",
    )
    min_split_area: int = Field(
        40, ge=1, description="Smallest part (px²) that a seed may be split into at a higher level."
    )
    min_seed_area: int = Field(4, ge=1, description="Strong seed components smaller than this are dropped.")
    min_weak_seed_area: int = Field(30, ge=1, description="Weak seeds smaller than this are dropped (px²).")
    min_area: int = Field(20, ge=0, description="Objects smaller than this are removed (px²).")
    fill_holes: bool = Field(True, description="Fill holes inside each object.")


def probabilities_to_instances(
    probabilities: np.ndarray, config: InstancesConfig | None = None, pixel_scale: float = 1.0
) -> np.ndarray:
    """Label nuclei from class probability maps by a seeded watershed.

    Parameters
    ----------
    probabilities : numpy.ndarray, shape (3, Y, X)
        P(interior), P(boundary), P(background) per pixel (e.g. ``SegNet.predict_frame``).
    config : InstancesConfig, optional
    pixel_scale : float
        Pixels of ``probabilities`` per pixel of the model's scale (e.g. 2 when nuclei are twice as
        large as in training); lengths in ``config`` are multiplied by it, areas by its square.

    Returns
    -------
    numpy.ndarray, shape (Y, X), int32
        Labels 1..K, consecutive; 0 = background.
    """
    cfg = config or InstancesConfig()
    probs = np.asarray(probabilities)
    if probs.ndim != 3 or probs.shape[0] != 3:
        raise ValueError(
            f"probabilities must have shape (3, Y, X) (interior, boundary, background), got {probs.shape}"
        )
    if not np.issubdtype(probs.dtype, np.floating):
        raise TypeError(f"probabilities must be floating point, got dtype {probs.dtype}")
    if not np.isfinite(probs).all():
        raise ValueError("probabilities contain NaN or inf values")
    if not (np.isfinite(pixel_scale) and pixel_scale > 0):
        raise ValueError(f"pixel_scale must be a positive number, got {pixel_scale}")
    area_scale = pixel_scale**2
    interior = probs[0].astype(np.float32, copy=False)
    if cfg.boundary_weight > 0:
        interior = interior - np.float32(cfg.boundary_weight) * probs[1].astype(np.float32, copy=False)
    if cfg.smoothing_sigma > 0:
        interior = ndi.gaussian_filter(interior, cfg.smoothing_sigma * pixel_scale)
    foreground = (probs[0] + probs[1]).astype(np.float32, copy=False)
    confident = interior > cfg.interior_threshold
    strong = _seeds(confident, cfg, round(cfg.min_seed_area * area_scale), pixel_scale)
    if cfg.split_levels:
        min_part = round(cfg.min_split_area * area_scale)
        strong = split_seeds_at_levels(strong, interior, cfg.split_levels, min_part)
    seeds = strong
    if cfg.weak_interior_threshold is not None and cfg.weak_interior_threshold < cfg.interior_threshold:
        weak = _weak_seeds(interior, strong, cfg.weak_interior_threshold,
                           round(cfg.min_weak_seed_area * area_scale))
        seeds = np.where(weak > 0, weak + strong.max(), strong)
        confident |= weak > 0
    if seeds.max() == 0:
        return np.zeros(interior.shape, np.int32)
    seed_distance = ndi.distance_transform_edt(seeds > 0)
    # Inside flat, confident interiors 1 - P is ~0 everywhere; a small distance term makes the flood
    # there run from seed centres outwards instead of following noise.
    surface = (1.0 - interior) - 0.05 * seed_distance / (1.0 + seed_distance)
    labels = watershed(surface, seeds, mask=(foreground > _FLOOD_FLOOR) | (seeds > 0))
    peak = _label_maxima(foreground, labels)
    cut = np.minimum(np.float32(cfg.foreground_threshold), np.float32(cfg.foreground_relative) * peak)
    keep = (foreground > cut[labels]) | confident
    labels = np.where(keep, labels, 0)
    if cfg.fill_holes:
        labels = _fill_holes(labels)
    if cfg.neck_ratio > 0:
        labels = split_at_necks(labels, cfg.neck_ratio, cfg.min_neck_radius * pixel_scale)
    min_area = round(cfg.min_area * area_scale)
    if min_area > 0:
        areas = np.bincount(labels.ravel())
        small = areas < min_area
        small[0] = False
        labels[small[labels]] = 0
    return _consecutive(labels)


def split_seeds_at_levels(
    seeds: np.ndarray, signal: np.ndarray, levels: tuple[float, ...] | list[float], min_part_area: int
) -> np.ndarray:
    """Split seeds that fall apart into several large parts at higher levels of their signal.

    Levels are visited from low to high. At each level, the connected components of
    ``signal > level`` inside every seed are its parts; a seed with two or more parts of at least
    ``min_part_area`` px is replaced by those parts (its other pixels are left to the watershed),
    and the parts are examined again at the next level. A seed with one large part stays whole.

    Parameters
    ----------
    seeds : numpy.ndarray, shape (Y, X), integer
        Seed labels, 0 = none.
    signal : numpy.ndarray, shape (Y, X), float
        The map the seeds were thresholded from (e.g. smoothed P(interior)).
    levels : sequence of float
        Thresholds above the one that made ``seeds``.
    min_part_area : int
        Smallest part (px) that counts.

    Returns
    -------
    numpy.ndarray, shape (Y, X), int32
        Consecutive seed labels.
    """
    seeds = np.asarray(seeds)
    signal = np.asarray(signal)
    if seeds.shape != signal.shape:
        raise ValueError(f"seeds {seeds.shape} and signal {signal.shape} must have the same shape")
    current = _consecutive(seeds)
    for level in sorted(levels):
        n_seeds = int(current.max())
        if n_seeds == 0:
            break
        parts, n_parts = ndi.label((signal > level) & (current > 0))
        if n_parts < 2:
            continue
        sizes = np.bincount(parts.ravel(), minlength=n_parts + 1)
        large = sizes >= max(1, min_part_area)
        large[0] = False
        # A part at a higher level lies inside one seed.
        owner = np.zeros(n_parts + 1, np.int64)
        owner[parts.ravel()] = current.ravel()
        n_large = np.bincount(owner[large], minlength=n_seeds + 1)
        split = n_large >= 2
        split[0] = False
        if not split.any():
            continue
        replaced = np.where(large[parts], parts.astype(np.int64) + n_seeds, 0)
        current = _consecutive(np.where(split[current], replaced, current))
    return current


def split_at_necks(labels: np.ndarray, neck_ratio: float, min_radius: float) -> np.ndarray:
    """Cut objects at pronounced necks of their shape.

    Each object is divided into the basins of its distance transform; two adjacent basins are joined
    again unless the distance at the saddle between them is below ``neck_ratio`` times the inscribed
    radius of the smaller basin (and that radius is at least ``min_radius``). Joining runs from the
    widest saddle down, so a chain of bumps along a straight edge stays one object.

    Parameters
    ----------
    labels : numpy.ndarray, shape (Y, X), integer
        Instances, 0 = background.
    neck_ratio : float
        In (0, 1); larger values cut more.
    min_radius : float
        Smallest inscribed radius (px) of a part that may be cut off.

    Returns
    -------
    numpy.ndarray, shape (Y, X), int32
        Consecutive labels.
    """
    labels = np.asarray(labels)
    if labels.max() == 0:
        return labels.astype(np.int32)
    # Touching objects must not lend each other width: their shared edge counts as outside.
    edge = np.zeros(labels.shape, bool)
    vertical = labels[:-1] != labels[1:]
    horizontal = labels[:, :-1] != labels[:, 1:]
    edge[:-1] |= vertical
    edge[1:] |= vertical
    edge[:, :-1] |= horizontal
    edge[:, 1:] |= horizontal
    distance = ndi.distance_transform_edt((labels > 0) & ~edge)
    # Every regional maximum starts a basin (cheaper than h-maxima); the ripples of a digitised outline
    # make shallow basins that the saddle rule below joins again.
    peaks = (distance >= ndi.maximum_filter(distance, size=3)) & (distance > 0)
    markers, n_markers = ndi.label(peaks, structure=np.ones((3, 3), bool))
    parts = watershed(-distance, markers, mask=labels > 0) if n_markers else np.zeros_like(labels)
    # Objects too thin for a maximum stay whole.
    parts = np.where((parts == 0) & (labels > 0), labels.astype(np.int64) + n_markers, parts)
    n_parts = int(parts.max()) + 1
    owner = np.zeros(n_parts, np.int64)
    owner[parts.ravel()] = labels.ravel()
    radius = _label_maxima(distance, parts).astype(np.float64)
    keys, saddles = [], []
    for a, b, da, db in (
        (parts[:-1], parts[1:], distance[:-1], distance[1:]),
        (parts[:, :-1], parts[:, 1:], distance[:, :-1], distance[:, 1:]),
    ):
        pair = (a != b) & (a > 0) & (b > 0) & (owner[a] == owner[b])
        low, high = np.minimum(a[pair], b[pair]), np.maximum(a[pair], b[pair])
        keys.append(low.astype(np.int64) * n_parts + high)
        saddles.append(np.minimum(da[pair], db[pair]))
    key = np.concatenate(keys)
    if key.size == 0:
        return _consecutive(labels)
    unique_keys, inverse = np.unique(key, return_inverse=True)
    saddle = np.full(unique_keys.size, -np.inf)
    np.maximum.at(saddle, inverse, np.concatenate(saddles))
    parent = np.arange(n_parts)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k in np.argsort(-saddle, kind="stable"):
        a, b = divmod(int(unique_keys[k]), n_parts)
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        smaller = min(radius[ra], radius[rb])
        if smaller < min_radius or saddle[k] >= neck_ratio * smaller:
            parent[rb] = ra
            radius[ra] = max(radius[ra], radius[rb])
    roots = np.array([root(i) for i in range(n_parts)])
    return _consecutive(np.where(labels > 0, roots[parts], 0))


def _weak_seeds(interior: np.ndarray, strong: np.ndarray, threshold: float, min_area: int) -> np.ndarray:
    """Blobs of ``interior > threshold`` that contain no strong seed, each one seed."""
    blobs, n_blobs = ndi.label(interior > threshold)
    if n_blobs == 0:
        return blobs.astype(np.int32)
    has_strong = np.zeros(n_blobs + 1, bool)
    has_strong[blobs[strong > 0]] = True
    sizes = np.bincount(blobs.ravel(), minlength=n_blobs + 1)
    keep = ~has_strong & (sizes >= max(1, min_area))
    keep[0] = False
    return _consecutive(np.where(keep[blobs], blobs, 0))


def _seeds(seed_mask: np.ndarray, cfg: InstancesConfig, min_seed_area: int, pixel_scale: float) -> np.ndarray:
    components, n_components = ndi.label(seed_mask)
    if n_components == 0:
        return components.astype(np.int32)
    sizes = np.bincount(components.ravel())
    keep = sizes >= max(1, min_seed_area)
    keep[0] = False
    components = np.where(keep[components], components, 0)
    # A dim spot inside a nucleus (nucleolus) would make a ring seed whose distance ridge splits it.
    components = _fill_holes(components)
    if cfg.split_h <= 0:
        return _consecutive(components)
    distance = ndi.distance_transform_edt(components > 0)
    peaks = h_maxima(distance, cfg.split_h * pixel_scale).astype(bool) & (components > 0)
    markers, n_markers = ndi.label(peaks)
    # A component too thin to hold an h-maximum still is one nucleus: the whole component is its seed.
    has_marker = np.zeros(int(components.max()) + 1, bool)
    has_marker[components[peaks]] = True
    has_marker[0] = True
    orphan = ~has_marker[components]
    markers = np.where(orphan, components + n_markers, markers)
    if n_markers:
        # Grow the peak markers over their own component only, so seeds stay inside confident interiors.
        grown = watershed(-distance, markers, mask=components > 0)
        markers = np.where(components > 0, grown, 0)
    return _consecutive(markers)


def _fill_holes(labels: np.ndarray) -> np.ndarray:
    """Fill background holes enclosed by a single object (gaps enclosed by several stay background)."""
    holes = ndi.binary_fill_holes(labels > 0) & (labels == 0)
    if not holes.any():
        return labels
    hole_regions, n_holes = ndi.label(holes)
    near = ndi.grey_dilation(hole_regions, size=3)
    ring = (near > 0) & (labels > 0)
    pairs = np.unique(np.stack([near[ring], labels[ring]], axis=1), axis=0)
    n_neighbours = np.bincount(pairs[:, 0], minlength=n_holes + 1)
    owner = np.zeros(n_holes + 1, labels.dtype)
    single = n_neighbours[pairs[:, 0]] == 1
    owner[pairs[single, 0]] = pairs[single, 1]
    filled = labels.copy()
    filled[holes] = owner[hole_regions[holes]]
    return filled


def _label_maxima(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Maximum of ``values`` over each label 0..max (background included), float32."""
    out = np.full(int(labels.max()) + 1, -np.inf, np.float32)
    inside = labels > 0
    np.maximum.at(out, labels[inside], values[inside].astype(np.float32, copy=False))
    return out


def _consecutive(labels: np.ndarray) -> np.ndarray:
    if labels.size == 0:
        return labels.astype(np.int32)
    present = np.bincount(labels.ravel()) > 0
    present[0] = False
    lut = np.zeros(present.size, np.int32)
    lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
    return lut[labels]


class DistanceInstancesConfig(BaseModel):
    """Parameters of :func:`distance_to_instances` (lengths in px, areas in px², at model scale)."""

    model_config = ConfigDict(extra="forbid")

    foreground_threshold: float = Field(
        0.5, gt=0, lt=1, description="Nucleus pixels: P(interior) + P(boundary) above this."
    )
    # Chosen across sources (docs/benchmarks.md): against 0.5, 0.4 raised SEG and DET on S-BSST265, DSB, HeLa
    # and SIM+ held-out images and end-to-end CT / BC(0) on HeLa 01 (+0.014 / +0.010) and SIM+ 01 (+0.07 /
    # +0.07); it lost 0.03-0.06 F1 on a synthetic movie of touching textured nuclei.
    seed_threshold: float = Field(
        0.4, gt=0, lt=1,
        description="Seeds: connected regions of inner distance above this (the distance falls towards 0 "
        "where touching nuclei meet, so their seeds part).",
    )
    smoothing_sigma: float = Field(1.0, ge=0, description="Gaussian smoothing of the inner distance (px).")
    min_seed_area: float = Field(4.0, ge=0, description="Seeds smaller than this are dropped (px²).")
    seedless_blobs: bool = Field(
        True, description="A foreground blob holding no seed becomes a nucleus of its own."
    )
    min_area: float = Field(
        25.0, ge=0, description="Objects smaller than this are removed (px²; the model's nucleus is ≈ 314)."
    )
    fill_holes: bool = Field(True, description="Fill holes inside each object.")


def distance_to_instances(
    maps: np.ndarray, config: DistanceInstancesConfig | None = None, pixel_scale: float = 1.0
) -> np.ndarray:
    """Label nuclei from class probabilities and the inner distance by a watershed seeded at its maxima.

    Seeds are the connected regions where the (smoothed) inner distance exceeds ``seed_threshold`` inside
    the foreground; every foreground pixel is then flooded from them over the negated distance, so touching
    nuclei part where their distances meet at the bottom of the valley between them. No boundary or neck
    heuristics are involved.

    Parameters
    ----------
    maps : numpy.ndarray, shape (C, Y, X), C >= 4
        P(interior), P(boundary), P(background), inner distance (e.g. ``PanopticSegNet.predict_frame``);
        further maps are ignored.
    config : DistanceInstancesConfig, optional
    pixel_scale : float
        Pixels of ``maps`` per model pixel; lengths are multiplied by it, areas by its square.

    Returns
    -------
    numpy.ndarray, shape (Y, X), int32
        Labels 1..K, consecutive; 0 = background.
    """
    cfg = config or DistanceInstancesConfig()
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.shape[0] < 4:
        raise ValueError(
            "maps must have shape (C >= 4, Y, X) (interior, boundary, background, distance), got "
            f"{maps.shape}"
        )
    if not np.issubdtype(maps.dtype, np.floating):
        raise TypeError(f"maps must be floating point, got dtype {maps.dtype}")
    if not np.isfinite(maps[:4]).all():
        raise ValueError("maps contain NaN or inf values")
    if not (np.isfinite(pixel_scale) and pixel_scale > 0):
        raise ValueError(f"pixel_scale must be a positive number, got {pixel_scale}")
    area_scale = pixel_scale**2
    foreground = (maps[0] + maps[1]) > cfg.foreground_threshold
    distance = maps[3].astype(np.float32, copy=False)
    if cfg.smoothing_sigma > 0:
        distance = ndi.gaussian_filter(distance, cfg.smoothing_sigma * pixel_scale)
    seeds, n_seeds = ndi.label((distance > cfg.seed_threshold) & foreground)
    min_seed = cfg.min_seed_area * area_scale
    if n_seeds and min_seed > 1:
        sizes = np.bincount(seeds.ravel())
        small = sizes < min_seed
        small[0] = False
        seeds[small[seeds]] = 0
    if cfg.seedless_blobs:
        # A foreground blob without a seed (a small nucleus whose distance peak stays low, a daughter just
        # after division) is one nucleus of its own.
        blobs, n_blobs = ndi.label(foreground)
        seeded = np.zeros(n_blobs + 1, bool)
        seeded[blobs[seeds > 0]] = True
        seeded[0] = True
        orphan = ~seeded[blobs]
        seeds = np.where(orphan, blobs + int(seeds.max()), seeds)
    if seeds.max() == 0:
        return np.zeros(foreground.shape, np.int32)
    labels = watershed(-distance, seeds, mask=foreground | (seeds > 0))
    if cfg.fill_holes:
        labels = _fill_holes(labels)
    min_area = cfg.min_area * area_scale
    if min_area > 1:
        areas = np.bincount(labels.ravel())
        small = areas < min_area
        small[0] = False
        labels[small[labels]] = 0
    return _consecutive(labels)
