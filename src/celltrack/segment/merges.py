"""Split objects that merge two nuclei of the previous frame (a temporal correction).

Touching nuclei are the commonest segmentation error, and they break tracks: one of the two nuclei has no
detection while they touch. The previous frame, already corrected, tells which objects hold two nuclei: an
object that contains most of two or more previous nuclei (or their old centres, for nuclei that moved by a
good part of their size and so lie mostly inside no object), and is about as large as them together, is cut
between them, if it narrows there (at the neck, by a watershed on its distance transform seeded by those
nuclei) or, along the power diagram of one disc per nucleus (sized like it and centred on its part of the
object: the contact of the current nuclei, not the previous frame's outline, which lags behind moving nuclei),
where it does not narrow but the nuclei were both whole (each at least ``whole_fraction`` of the previous
frame's median object: two nuclei pressed flat together show no neck) or already separate objects two frames
back (whatever their size, when the object is larger than one nucleus). A division (one previous nucleus, two
current objects) is never touched; a nucleus merely brushing its neighbour is left alone by the area test; a
convex object (one nucleus the previous frame over-split into fragments) by the neck test; and two nuclei that
were one object two frames back (a division the segmenter showed a frame early) are left joined, so the
division is not brought forward.

Objects are never joined: a former rejoin of touching pieces of one previous nucleus (over-split nuclei,
daughters not yet apart) helped the study's SegNet, but on top of the default model it cost SIM+ 01 0.06 of
CT and 0.10 of BC(0) for 0.007 of CT on HeLa 01, and was deleted (docs/benchmarks.md).
About 3 ms per 700 x 1100 HeLa frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage as ndi
from skimage.segmentation import watershed

logger = logging.getLogger(__name__)

__all__ = ["MergeSplitConfig", "MergeSplitter", "power_partition", "split_merged_nuclei"]


class MergeSplitConfig(BaseModel):
    """When an object counts as a merge of previous nuclei.

    Attributes
    ----------
    enabled : bool
        Split merges at all.
    min_overlap : float
        Fraction of a previous nucleus that must lie inside the object for it to count.
    min_area_ratio : float
        The object must be at least this fraction of the summed area of the nuclei it holds.
    seed_erosion : int
        Erosion (px) of the previous nuclei before they seed the cut.
    max_neck_ratio : float
        The cut is made only where the object narrows: the widest point of the cut (distance-transform
        saddle) must stay below this fraction of the smaller part's inscribed radius. A convex object (one
        nucleus that the previous frame over-split) has a ratio near 1 and stays whole, which also keeps a
        one-frame over-segmentation from propagating through the movie.
    whole_fraction : float or None
        Previous nuclei that were each at least this fraction of the previous frame's median object area
        are whole nuclei, not fragments of an over-split one: an object holding two of them is cut even
        where it does not narrow (nuclei pressed flat against each other). None: always require a neck.
    cut_apart_nuclei : bool
        Also cut without a neck when the previous nuclei, whatever their size, were already separate objects
        two frames back (each overlapping mostly its own object there; a small or newborn nucleus pressed
        against a neighbour), provided the object is larger than one nucleus (more than
        ``max_single_ratio`` times the previous frame's median object). Needs ``whole_fraction``.
    max_single_ratio : float
        See ``cut_apart_nuclei``.
    cut : {"power", "distance"}
        Where an object without a neck (cut because its nuclei are whole or were apart) is cut; an object
        that narrows is always cut at its neck by the seeded watershed on its distance transform. ``"power"``:
        the power (Laguerre) diagram of one disc per nucleus, its area the nucleus's previous area scaled to
        the object, the centres moved Lloyd-style from the centroids of the previous nuclei inside the object
        to the centroids of their cells (:func:`power_partition`): two touching discs are cut along their
        contact, wherever the previous masks were. ``"distance"``: the watershed as for a neck; without one
        the cut falls where the seeds (the previous nuclei) meet, so a nucleus that moved, or a mask larger
        than its nucleus (blur), carries its seed into the neighbour's half and the cut follows the previous
        frame's outline, not the current nuclei.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_overlap: float = Field(0.5, gt=0, le=1)
    min_area_ratio: float = Field(0.7, gt=0)
    seed_erosion: int = Field(1, ge=0, description="pixels")
    max_neck_ratio: float = Field(0.95, gt=0)
    whole_fraction: float | None = Field(0.6, gt=0)
    cut_apart_nuclei: bool = True
    max_single_ratio: float = Field(1.5, gt=0)
    cut: Literal["power", "distance"] = "power"


class MergeSplitter:
    """Split current objects holding several previous nuclei (see the module docstring).

    Parameters
    ----------
    config : MergeSplitConfig, optional
    """

    def __init__(self, config: MergeSplitConfig | None = None) -> None:
        self.config = config if config is not None else MergeSplitConfig()

    def merged_objects(self, previous: np.ndarray, current: np.ndarray) -> dict[int, list[int]]:
        """Current labels that hold two or more previous nuclei, with those nuclei's labels.

        Parameters
        ----------
        previous, current : numpy.ndarray of int, shape (Y, X)
            Label images of consecutive frames (0 = background).

        Returns
        -------
        dict
            ``{current label: [previous labels]}``.
        """
        previous, current = _check_pair(previous, current)
        cur, prev, counts, previous_area, current_area = _overlaps(previous, current)
        if len(cur) == 0:
            return {}
        held = counts >= self.config.min_overlap * previous_area[prev]
        cur, prev = cur[held], prev[held]
        # A nucleus no current object holds (it moved by a good part of its size) counts as held by the
        # object its old centroid falls in; the area test below still asks for room for all of them.
        unheld = np.setdiff1d(np.flatnonzero(previous_area), np.r_[0, prev])
        if len(unheld):
            centroids = ndi.center_of_mass(previous > 0, previous, unheld)
            rows, cols = np.round(np.asarray(centroids, np.float64).reshape(-1, 2)).astype(np.int64).T
            under = current[rows, cols]
            moved = under > 0
            order = np.argsort(np.r_[cur, under[moved]], kind="stable")
            cur = np.r_[cur, under[moved]][order]
            prev = np.r_[prev, unheld[moved]][order]
        if len(cur) < 2:
            return {}
        merged: dict[int, list[int]] = {}
        for label in np.unique(cur[np.r_[False, cur[1:] == cur[:-1]]]).tolist():
            nuclei = prev[cur == label]
            if current_area[label] >= self.config.min_area_ratio * previous_area[nuclei].sum():
                merged[int(label)] = sorted(int(p) for p in nuclei)
        return merged

    def split(
        self, previous: np.ndarray, current: np.ndarray, before: np.ndarray | None = None
    ) -> np.ndarray:
        """``current`` with every merged object cut into one object per previous nucleus.

        Parameters
        ----------
        previous, current : numpy.ndarray of int, shape (Y, X)
            Label images of consecutive frames; ``previous`` should already be corrected.
        before : numpy.ndarray of int, shape (Y, X), optional
            The frame before ``previous``. Nuclei that were one object there (a division, or a nucleus split
            too early while it divides) and join again now are left joined: cutting them would bring the
            division forward, while a daughter missing for a frame is bridged by the linker's gap closing.
            Nuclei that were separate objects there are cut even without a neck (``cut_apart_nuclei``).

        Returns
        -------
        numpy.ndarray
            Label image of ``current``'s dtype (widened if new labels need it); the first part of a split
            object keeps its label, the others take new labels above ``current.max()``. ``current`` itself
            when nothing is merged.
        """
        if not self.config.enabled:
            return current
        merged = self.merged_objects(previous, current)
        owners: dict[int, list[int | None]] = {}
        if before is not None:
            owners = {label: _owners(before, previous, nuclei) for label, nuclei in merged.items()}
            merged = {label: nuclei for label, nuclei in merged.items() if not _one_owner(owners[label])}
        if not merged:
            return current
        next_label = int(current.max()) + 1
        dtype = np.result_type(current.dtype, np.min_scalar_type(next_label + sum(map(len, merged.values()))))
        out = current.astype(dtype, copy=True)
        boxes = ndi.find_objects(current)
        previous_area = np.bincount(previous.ravel())
        present = previous_area[1:][previous_area[1:] > 0]
        whole_area = single_area = np.inf
        if self.config.whole_fraction is not None and len(present):
            median_area = float(np.median(present))
            whole_area = self.config.whole_fraction * median_area
            if self.config.cut_apart_nuclei:
                single_area = self.config.max_single_ratio * median_area
        split = 0
        for label, nuclei in merged.items():
            box = boxes[label - 1]
            mask = current[box] == label
            seeds = np.zeros(mask.shape, np.int32)
            inside = []
            for index, nucleus in enumerate(nuclei, start=1):
                seed = (previous[box] == nucleus) & mask
                inside.append(seed)
                eroded = seed
                if self.config.seed_erosion:
                    eroded = ndi.binary_erosion(seed, iterations=self.config.seed_erosion)
                seeds[eroded if eroded.any() else seed] = index
            distance = ndi.distance_transform_edt(mask)
            parts = watershed(-distance, seeds, mask=mask)
            # Nuclei already apart two frames back are no fragments of one, whatever their size (a small or
            # newborn nucleus pressed against a neighbour); the object must still be larger than one nucleus.
            apart = bool(np.count_nonzero(mask) > single_area) and _apart(owners.get(label, []))
            whole = bool(previous_area[nuclei].min() >= whole_area) or apart
            if _neck_ratio(distance, parts, len(nuclei)) >= self.config.max_neck_ratio:
                if not whole:
                    continue
                # No neck places the cut: the nuclei are cut at the contact of their discs.
                if self.config.cut == "power" and all(seed.any() for seed in inside):
                    parts = power_partition(mask, inside, previous_area[nuclei])
            split += 1
            region = out[box]
            for index in range(2, len(nuclei) + 1):
                region[parts == index] = next_label
                next_label += 1
        logger.debug("split %d of %d merged objects", split, len(merged))
        return out if split else current

    def split_movie(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Correct consecutive label images in order: each is split against the two corrected before it.

        Parameters
        ----------
        frames : iterable of numpy.ndarray
            (Y, X) label images of consecutive frames (e.g. a generator segmenting them one by one).

        Yields
        ------
        numpy.ndarray
            Each frame after :meth:`split`.
        """
        before = previous = None
        for labels in frames:
            if previous is not None:
                labels = self.split(previous, labels, before)
            before, previous = previous, labels
            yield labels


def split_merged_nuclei(
    previous: np.ndarray,
    current: np.ndarray,
    config: MergeSplitConfig | None = None,
    before: np.ndarray | None = None,
) -> np.ndarray:
    """Functional form of :meth:`MergeSplitter.split`."""
    return MergeSplitter(config).split(previous, current, before)


def power_partition(
    mask: np.ndarray, seeds: list[np.ndarray], areas: np.ndarray, max_iterations: int = 20
) -> np.ndarray:
    """Cut ``mask`` into one part per seed: power diagram of discs of the given areas, centres refined.

    Each pixel goes to the nucleus ``i`` minimising ``|p - c_i|**2 - A_i / pi`` (``A_i`` = ``areas`` scaled to
    sum to the mask's area); the centres ``c_i`` start at the seeds' centroids and move to their parts'
    centroids until the parts stop changing (Lloyd). The cut between two touching discs is their contact
    line, whatever the seeds' shape or how far they lag behind the nuclei.

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (Y, X)
        The object to cut.
    seeds : list of numpy.ndarray of bool, each of shape (Y, X)
        K non-empty seed regions (e.g. the previous nuclei inside the object), in output order.
    areas : numpy.ndarray, shape (K,)
        Relative sizes of the K parts (e.g. the previous nuclei's areas).
    max_iterations : int
        Lloyd iterations at most.

    Returns
    -------
    numpy.ndarray of int32, shape (Y, X)
        0 outside ``mask``, ``i + 1`` on the part of seed ``i``.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (Y, X), got shape {mask.shape}")
    if len(seeds) != len(np.atleast_1d(areas)) or len(seeds) == 0:
        raise ValueError(
            f"need one area per seed (at least one), got {len(seeds)} seeds and {np.size(areas)} areas"
        )
    if any(np.shape(seed) != mask.shape or not np.any(seed) for seed in seeds):
        raise ValueError(f"every seed must be a non-empty boolean image of the mask's shape {mask.shape}")
    rows, cols = np.nonzero(mask)
    points = np.stack([rows, cols], axis=1).astype(np.float64)
    parts = np.zeros(mask.shape, np.int32)
    if len(points) == 0:
        return parts
    centres = np.array([np.argwhere(seed).mean(axis=0) for seed in seeds], np.float64).reshape(-1, 2)
    sizes = np.asarray(areas, np.float64)
    weights = sizes * (len(points) / sizes.sum()) / np.pi if sizes.sum() > 0 else np.zeros(len(centres))
    assigned = None
    for _ in range(max_iterations):
        power = ((points[:, None, :] - centres[None]) ** 2).sum(axis=2) - weights[None]
        new = power.argmin(axis=1)
        if assigned is not None and np.array_equal(new, assigned):
            break
        assigned = new
        for index in range(len(centres)):
            member = assigned == index
            if member.any():
                centres[index] = points[member].mean(axis=0)
    parts[rows, cols] = assigned + 1
    return parts


def _overlaps(
    previous: np.ndarray, current: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Overlapping (current label, previous label) pairs, sorted by current label, and the object areas.

    Returns
    -------
    cur, prev, counts : numpy.ndarray of int, shape (P,)
        Labels of each overlapping pair and their overlap (px).
    previous_area, current_area : numpy.ndarray of int
        Area of every label value (index 0: background).
    """
    previous_area = np.bincount(previous.ravel())
    current_area = np.bincount(current.ravel())
    both = (previous > 0) & (current > 0)
    pairs = current[both].astype(np.int64) * len(previous_area) + previous[both]
    keys, counts = np.unique(pairs, return_counts=True)
    cur, prev = np.divmod(keys, len(previous_area))
    return cur, prev, counts, previous_area, current_area


def _owners(before: np.ndarray, previous: np.ndarray, nuclei: list[int]) -> list[int | None]:
    """The object of ``before`` that each given nucleus of ``previous`` mostly overlaps (None: none).

    Parameters
    ----------
    before, previous : numpy.ndarray of int, shape (Y, X)
        Label images of two consecutive frames.
    nuclei : list of int
        Labels of ``previous``.

    Returns
    -------
    list of int or None
        One entry per nucleus: the label of ``before`` it overlaps most, or None when less than half of it
        lies on objects of ``before``.
    """
    _check_pair(before, previous)
    owners: list[int | None] = []
    for nucleus in nuclei:
        inside = previous == nucleus
        under = before[inside]
        under = under[under > 0]
        held = len(under) >= 0.5 * np.count_nonzero(inside)
        owners.append(int(np.bincount(under).argmax()) if held and len(under) else None)
    return owners


def _one_owner(owners: list[int | None]) -> bool:
    """Whether every nucleus has an owner and all share it (see :func:`_owners`)."""
    return None not in owners and len(set(owners)) == 1


def _apart(owners: list[int | None]) -> bool:
    """Whether two or more nuclei each have their own owner: they were already separate objects before."""
    return len(owners) >= 2 and None not in owners and len(set(owners)) == len(owners)


def _neck_ratio(distance: np.ndarray, parts: np.ndarray, n_parts: int) -> float:
    """Widest point of the cut between parts over the smallest part's inscribed radius (inf: no cut)."""
    cut = np.zeros(parts.shape, bool)
    vertical = (parts[:-1] != parts[1:]) & (parts[:-1] > 0) & (parts[1:] > 0)
    horizontal = (parts[:, :-1] != parts[:, 1:]) & (parts[:, :-1] > 0) & (parts[:, 1:] > 0)
    cut[:-1] |= vertical
    cut[:, :-1] |= horizontal
    radii = ndi.maximum(distance, parts, index=np.arange(1, n_parts + 1))
    smallest = float(np.min(radii)) if len(np.atleast_1d(radii)) else 0.0
    if not cut.any() or smallest <= 0:
        return float("inf")
    return float(distance[cut].max()) / smallest


def _check_pair(previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    for name, labels in (("previous", previous), ("current", current)):
        if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "ui":
            kind = getattr(labels, "dtype", type(labels).__name__)
            raise TypeError(f"{name} must be an integer label image, got {kind}")
        if labels.ndim != 2:
            raise ValueError(f"{name} must be a 2-D (Y, X) label image, got shape {labels.shape}")
        if labels.dtype.kind == "i" and labels.min(initial=0) < 0:
            raise ValueError(f"{name} holds negative labels; labels must be 0 (background) or positive")
    if previous.shape != current.shape:
        raise ValueError(f"label images differ in shape: previous {previous.shape}, current {current.shape}")
    return previous, current
