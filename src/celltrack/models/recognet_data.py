"""RecogNet training data: nucleus crops with identity, time and cell state, built from arrays.

Every GT nucleus of every frame gives one crop centred on its TRA marker; ``man_track.txt`` gives its
identity through time and its cell state:

* ``mitosis``: the last ``mitosis_parent_frames`` frames of a track that has daughters and the first
  ``mitosis_daughter_frames`` frames of each daughter;
* ``interphase``: every other nucleus crop;
* ``other``: crops centred on a point at least ``other_min_distance`` px from every nucleus (background,
  the gap between nuclei, the rim of a nucleus). A detection there is not a nucleus the linker should
  follow (debris, a segmentation fragment).

Intensities are normalised per frame before cropping (median subtracted, divided by the
``high_percentile`` minus the median): this removes camera offsets (HeLa sits near 33,000 on a uint16
scale) and exposure differences. Background is thus about 0 and nuclei about 1, and crops reaching past the
image are padded with 0 (an empty field of view), never dropped.

Crops are stored ``2 * margin`` px larger than the network input so that training can shift them at
random. The train / validation / test split is by blocks of consecutive frames (the same for every track
of a movie), so test crops come from frames the network never saw.

File reading lives in :func:`build_crop_dataset_from_ctc`, which goes through :mod:`celltrack.io`; every
other function takes arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from celltrack.graph import measure_detections
from celltrack.models.segnet import resize_maps

logger = logging.getLogger(__name__)

__all__ = [
    "INTERPHASE",
    "MITOSIS",
    "OTHER",
    "SPLIT_NAMES",
    "STATE_NAMES",
    "TEST",
    "TRAIN",
    "VALIDATION",
    "CropDataset",
    "CropDatasetConfig",
    "PercentileLevels",
    "assign_identities",
    "build_crop_dataset",
    "build_crop_dataset_from_ctc",
    "concat_datasets",
    "crop_nuclei",
    "frame_splits",
    "marker_diameter",
    "normalise_frame",
    "rescale_frame",
]

INTERPHASE, MITOSIS, OTHER = 0, 1, 2
STATE_NAMES = ("interphase", "mitosis", "other")
TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "validation", "test")
_MAX_PERCENTILE_PIXELS = 1 << 20


class PercentileLevels(BaseModel):
    """Per-frame (or per-image) normalisation levels: :func:`normalise_frame`'s percentiles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    background_percentile: float = Field(50.0, ge=0, lt=100, description="Per-frame level mapped to 0.")
    high_percentile: float = Field(99.5, gt=0, le=100, description="Per-frame level mapped to 1.")

    @model_validator(mode="after")
    def _levels_ordered(self) -> PercentileLevels:
        if self.high_percentile <= self.background_percentile:
            raise ValueError(
                f"high_percentile ({self.high_percentile}) must exceed background_percentile "
                f"({self.background_percentile})"
            )
        return self


class CropDatasetConfig(PercentileLevels):
    """How crops are cut, labelled and split (lengths in pixels, times in frames)."""

    crop_size: int = Field(40, ge=8, description="Network input side (px).")
    margin: int = Field(4, ge=0, description="Extra px stored on each side for random shifts.")
    mitosis_parent_frames: int = Field(
        3, ge=0, description="Last frames of a dividing track labelled mitosis."
    )
    mitosis_daughter_frames: int = Field(2, ge=0, description="First frames of a daughter labelled mitosis.")
    other_per_frame: int = Field(4, ge=0, description="'other' crops sampled per frame.")
    other_min_distance: float = Field(
        16.0, gt=0, description="Min distance (px) of an 'other' crop to nuclei."
    )
    split_block_frames: int = Field(5, ge=1, description="Frames per block of the train/val/test split.")
    validation_fraction: float = Field(0.08, ge=0, lt=1, description="Share of frame blocks for validation.")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="Share of frame blocks for the test split.")
    seed: int = Field(0, description="Seeds the split and the 'other' positions.")
    model_diameter: float | None = Field(
        None,
        gt=0,
        description="Frames are rescaled so that the movie's median nucleus diameter becomes this (px) "
        "before cropping; None: native scale. Lengths above are then at the model's scale.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CropDatasetConfig:
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"validation_fraction + test_fraction must leave training frames, got "
                f"{self.validation_fraction} + {self.test_fraction}"
            )
        return self

    @property
    def stored_size(self) -> int:
        """Side of the stored crops: ``crop_size + 2 * margin``."""
        return self.crop_size + 2 * self.margin


@dataclass(frozen=True)
class CropDataset:
    """Nucleus (and background) crops with their labels; row ``i`` of every array is sample ``i``.

    Attributes
    ----------
    crops : numpy.ndarray, shape (M, S, S), float16
        Per-frame normalised crops, ``S = crop_size + 2 * margin``, centre pixel ``S // 2`` on the nucleus.
    movie : numpy.ndarray, shape (M,), int16
        Index into :attr:`movies`.
    label : numpy.ndarray, shape (M,), int32
        Track label in its movie (``man_track.txt``); 0 for ``other`` crops.
    frame : numpy.ndarray, shape (M,), int32
    y, x : numpy.ndarray, shape (M,), float32
        Crop centre in the frame (px).
    state : numpy.ndarray, shape (M,), int8
        :data:`INTERPHASE`, :data:`MITOSIS` or :data:`OTHER`.
    split : numpy.ndarray, shape (M,), int8
        :data:`TRAIN`, :data:`VALIDATION` or :data:`TEST`.
    identity : numpy.ndarray, shape (M,), int32
        Identity class (0..n-1) after :func:`assign_identities`, else -1.
    movies : tuple of str
        Movie names.
    config : CropDatasetConfig
    """

    crops: np.ndarray
    movie: np.ndarray
    label: np.ndarray
    frame: np.ndarray
    y: np.ndarray
    x: np.ndarray
    state: np.ndarray
    split: np.ndarray
    identity: np.ndarray
    movies: tuple[str, ...]
    config: CropDatasetConfig = field(default_factory=CropDatasetConfig)

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    @property
    def n_identities(self) -> int:
        """Number of identity classes (0 before :func:`assign_identities`)."""
        return int(self.identity.max()) + 1 if len(self) and self.identity.max() >= 0 else 0

    def subset(self, index: np.ndarray) -> CropDataset:
        """The samples at ``index`` (integer or boolean array)."""
        return replace(
            self,
            crops=self.crops[index],
            movie=self.movie[index],
            label=self.label[index],
            frame=self.frame[index],
            y=self.y[index],
            x=self.x[index],
            state=self.state[index],
            split=self.split[index],
            identity=self.identity[index],
        )

    def centre_crops(self) -> np.ndarray:
        """Network-size crops (M, crop_size, crop_size) float32, cut from the middle of the stored ones."""
        m = self.config.margin
        return self.crops[:, m : m + self.config.crop_size, m : m + self.config.crop_size].astype(np.float32)

    def summary(self) -> dict[str, object]:
        """Counts per split and state, for logs and model provenance."""
        return {
            "samples": len(self),
            "movies": list(self.movies),
            "per_split": {name: int((self.split == i).sum()) for i, name in enumerate(SPLIT_NAMES)},
            "per_state": {name: int((self.state == i).sum()) for i, name in enumerate(STATE_NAMES)},
            "identities": self.n_identities,
            "tracks": len({(int(m), int(v)) for m, v in zip(self.movie, self.label, strict=True) if v > 0}),
        }


def normalise_frame(
    frame: np.ndarray,
    background_percentile: float = 50.0,
    high_percentile: float = 99.5,
    max_pixels: int = _MAX_PERCENTILE_PIXELS,
) -> np.ndarray:
    """Robust per-frame normalisation: ``(frame - p_bg) / (p_high - p_bg)``.

    Parameters
    ----------
    frame : numpy.ndarray, shape (Y, X)
        Raw frame, any real dtype.
    background_percentile, high_percentile : float
        Percentiles (0-100) mapped to 0 and 1; the median is background because nuclei cover well under
        half a frame.
    max_pixels : int
        The percentiles come from a regular grid of at most this many pixels (the whole frame if smaller).

    Returns
    -------
    numpy.ndarray, shape (Y, X), float32
        Normalised frame; a flat frame gives zeros.
    """
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ValueError(f"normalise_frame expects a 2-D frame (Y, X), got shape {frame.shape}")
    if frame.size == 0:
        raise ValueError(f"normalise_frame got an empty frame of shape {frame.shape}")
    if not (np.issubdtype(frame.dtype, np.integer) or np.issubdtype(frame.dtype, np.floating)):
        raise TypeError(f"normalise_frame expects real pixels, got dtype {frame.dtype}")
    data = frame.astype(np.float32, copy=False)
    sample = data
    step = 1
    while sample.size > max_pixels:
        step += 1
        sample = data[::step, ::step]
    low, high = np.percentile(sample, [background_percentile, high_percentile])
    spread = float(high - low)
    if not spread > 0:
        spread = float(data.max() - low)
    if not spread > 0:
        return np.zeros(frame.shape, np.float32)
    return (data - np.float32(low)) / np.float32(spread)


def _as_centres(centres: np.ndarray | pd.DataFrame) -> np.ndarray:
    if isinstance(centres, pd.DataFrame):
        missing = {"y", "x"} - set(centres.columns)
        if missing:
            raise ValueError(f"detections need columns y, x; missing {sorted(missing)}")
        centres = centres[["y", "x"]].to_numpy(np.float64)
    array = np.asarray(centres, dtype=np.float64)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"centres must have shape (N, 2) as (y, x), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("centres contain NaN or inf; drop lost positions before cropping")
    return array


def crop_nuclei(
    frame: np.ndarray,
    centres: np.ndarray | pd.DataFrame,
    size: int = 40,
    *,
    normalised: bool = False,
    background_percentile: float = 50.0,
    high_percentile: float = 99.5,
) -> np.ndarray:
    """Square crops around nuclei, in one vectorised gather; crops at the image border are padded with 0.

    Parameters
    ----------
    frame : numpy.ndarray, shape (Y, X)
        Raw frame (normalised here with :func:`normalise_frame`), or an already normalised one.
    centres : numpy.ndarray of shape (N, 2) or pandas.DataFrame
        ``(y, x)`` centres in px, or a detections table with columns ``y, x``. Crop pixel
        ``(size // 2, size // 2)`` is ``floor(centre + 0.5)``, as for the correlation-filter windows.
    size : int
        Crop side (px); RecogNet takes 40.
    normalised : bool
        ``frame`` is already normalised (skip :func:`normalise_frame`).
    background_percentile, high_percentile : float
        Normalisation percentiles.

    Returns
    -------
    numpy.ndarray, shape (N, size, size), float32
        One crop per centre, in the order given; pixels outside the image are 0 (background level).
    """
    centres = _as_centres(centres)
    if size < 1:
        raise ValueError(f"crop size must be >= 1 px, got {size}")
    image = np.asarray(frame)
    if not normalised:
        image = normalise_frame(image, background_percentile, high_percentile)
    elif image.ndim != 2:
        raise ValueError(f"frame must be 2-D (Y, X), got shape {image.shape}")
    image = image.astype(np.float32, copy=False)
    height, width = image.shape
    origins = np.floor(centres + 0.5).astype(np.int64) - size // 2
    steps = np.arange(size)
    rows = origins[:, 0:1] + steps
    cols = origins[:, 1:2] + steps
    crops = image[np.clip(rows, 0, height - 1)[:, :, None], np.clip(cols, 0, width - 1)[:, None, :]]
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    return np.where(inside, crops, np.float32(0.0)).astype(np.float32, copy=False)


def frame_splits(n_frames: int, config: CropDatasetConfig) -> np.ndarray:
    """Split of every frame: blocks of ``split_block_frames`` consecutive frames go to train, val or test.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), int8
    """
    n_blocks = max(1, -(-n_frames // config.split_block_frames))
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, n_frames]))
    order = rng.permutation(n_blocks)
    n_test = round(config.test_fraction * n_blocks) if n_blocks >= 3 else 0
    n_val = round(config.validation_fraction * n_blocks) if n_blocks >= 3 else 0
    if config.validation_fraction > 0 and n_blocks >= 3:
        n_val = max(1, n_val)
    if config.test_fraction > 0 and n_blocks >= 3:
        n_test = max(1, n_test)
    block_split = np.full(n_blocks, TRAIN, np.int8)
    block_split[order[:n_test]] = TEST
    block_split[order[n_test : n_test + n_val]] = VALIDATION
    return block_split[np.arange(n_frames) // config.split_block_frames]


def _as_track_table(tracks: pd.DataFrame | np.ndarray) -> pd.DataFrame:
    if isinstance(tracks, pd.DataFrame):
        missing = {"label", "begin", "end", "parent"} - set(tracks.columns)
        if missing:
            raise ValueError(f"tracks need columns label, begin, end, parent; missing {sorted(missing)}")
        return tracks[["label", "begin", "end", "parent"]].astype(np.int64)
    array = np.asarray(tracks)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(
            f"tracks must be a table or an (N, 4) array (label, begin, end, parent), got {array.shape}"
        )
    return pd.DataFrame(array.astype(np.int64), columns=["label", "begin", "end", "parent"])


def mitosis_frames(tracks: pd.DataFrame | np.ndarray, config: CropDatasetConfig) -> set[tuple[int, int]]:
    """``(label, frame)`` pairs in mitosis: a parent's last frames before dividing, a daughter's first."""
    table = _as_track_table(tracks)
    known = set(table["label"].tolist())
    parents = set(table.loc[table["parent"].isin(known) & (table["parent"] > 0), "parent"].tolist())
    pairs: set[tuple[int, int]] = set()
    for row in table.itertuples(index=False):
        if row.label in parents:
            start = max(row.begin, row.end - config.mitosis_parent_frames + 1)
            pairs.update((int(row.label), t) for t in range(start, row.end + 1))
        if row.parent > 0 and row.parent in known:
            stop = min(row.end, row.begin + config.mitosis_daughter_frames - 1)
            pairs.update((int(row.label), t) for t in range(row.begin, stop + 1))
    return pairs


def _other_centres(
    centres: np.ndarray, shape: tuple[int, int], n: int, min_distance: float, rng: np.random.Generator
) -> np.ndarray:
    """Up to ``n`` random points at least ``min_distance`` px from every nucleus centre."""
    if n == 0:
        return np.zeros((0, 2))
    candidates = rng.uniform((0, 0), (shape[0] - 1, shape[1] - 1), size=(8 * n, 2))
    if len(centres):
        distance = np.sqrt(((candidates[:, None, :] - centres[None, :, :]) ** 2).sum(-1)).min(axis=1)
        candidates = candidates[distance >= min_distance]
    return candidates[:n]


def build_crop_dataset(
    images: Sequence[np.ndarray] | np.ndarray,
    markers: Sequence[np.ndarray] | np.ndarray,
    tracks: pd.DataFrame | np.ndarray,
    config: CropDatasetConfig | None = None,
    *,
    movie: str = "movie",
    nucleus_diameter: float | None = None,
) -> CropDataset:
    """Crops of every GT nucleus (and some background) of one movie.

    Parameters
    ----------
    images : sequence of numpy.ndarray, each (Y, X), or numpy.ndarray (T, Y, X)
        Raw frames (lazy sequences such as :class:`celltrack.io.ImageSequence` work).
    markers : sequence of numpy.ndarray, each (Y, X) integer, or numpy.ndarray (T, Y, X)
        TRA markers (or full masks): pixel value = track label; the crop centre is each marker's centroid.
    tracks : pandas.DataFrame or numpy.ndarray (N, 4)
        ``label, begin, end, parent`` as in ``man_track.txt``.
    config : CropDatasetConfig, optional
    movie : str
        Name stored in the dataset.
    nucleus_diameter : float, optional
        Median nucleus diameter of the movie (px), for ``config.model_diameter``; measured from the markers
        of the first frames when omitted (markers must then cover whole nuclei, as CTC TRA markers of
        HeLa and SIM+ do).

    Returns
    -------
    CropDataset
        Identities unassigned (-1): call :func:`assign_identities` on the (concatenated) datasets. With
        ``config.model_diameter`` set, crops and centres ``y, x`` are at the model's scale.
    """
    config = config if config is not None else CropDatasetConfig()
    n_frames = len(images)
    if len(markers) != n_frames:
        raise ValueError(f"{movie}: {n_frames} frames but {len(markers)} marker images; they must match")
    if n_frames == 0:
        raise ValueError(f"{movie}: the movie has no frames")
    table = _as_track_table(tracks)
    in_mitosis = mitosis_frames(table, config)
    splits = frame_splits(n_frames, config)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 7, n_frames]))
    factor = 1.0
    if config.model_diameter is not None:
        diameter = nucleus_diameter if nucleus_diameter is not None else marker_diameter(markers)
        if not (np.isfinite(diameter) and diameter > 0):
            raise ValueError(f"{movie}: nucleus diameter must be a positive number of px, got {diameter}")
        factor = config.model_diameter / diameter
        # As RecogNetFeatures: within 5 % of the model's diameter a movie stays at its native scale.
        factor = 1.0 if abs(np.log(factor)) <= np.log(1.05) else factor
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("crops", "label", "frame", "y", "x", "state")}
    for t in range(n_frames):
        frame = np.asarray(images[t])
        labels = np.asarray(markers[t])
        if frame.shape != labels.shape:
            raise ValueError(
                f"{movie} frame {t}: image {frame.shape} and markers {labels.shape} differ in shape"
            )
        normalised = normalise_frame(frame, config.background_percentile, config.high_percentile)
        nuclei = measure_detections(labels, t)
        centres = nuclei[["y", "x"]].to_numpy(np.float64)
        if factor != 1.0:
            normalised, centres = rescale_frame(normalised, centres, factor)
        others = _other_centres(
            centres, normalised.shape, config.other_per_frame, config.other_min_distance, rng
        )
        all_centres = np.concatenate([centres, others])
        if not len(all_centres):
            continue
        states = np.array(
            [MITOSIS if (int(v), t) in in_mitosis else INTERPHASE for v in nuclei["label"]], np.int8
        )
        parts["crops"].append(
            crop_nuclei(normalised, all_centres, config.stored_size, normalised=True).astype(np.float16)
        )
        parts["label"].append(
            np.concatenate([nuclei["label"].to_numpy(np.int32), np.zeros(len(others), np.int32)])
        )
        parts["frame"].append(np.full(len(all_centres), t, np.int32))
        parts["y"].append(all_centres[:, 0].astype(np.float32))
        parts["x"].append(all_centres[:, 1].astype(np.float32))
        parts["state"].append(np.concatenate([states, np.full(len(others), OTHER, np.int8)]))
    size = config.stored_size
    if not parts["crops"]:
        raise ValueError(f"{movie}: no nuclei in the markers; pass the TRA marker images (NN_GT/TRA)")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    n = len(arrays["frame"])
    dataset = CropDataset(
        crops=arrays["crops"].reshape(n, size, size),
        movie=np.zeros(n, np.int16),
        label=arrays["label"],
        frame=arrays["frame"],
        y=arrays["y"],
        x=arrays["x"],
        state=arrays["state"],
        split=splits[arrays["frame"]],
        identity=np.full(n, -1, np.int32),
        movies=(movie,),
        config=config,
    )
    logger.info("%s: %s", movie, dataset.summary())
    return dataset


def marker_diameter(markers: Sequence[np.ndarray] | np.ndarray, frames: int = 5) -> float:
    """Median equivalent diameter sqrt(4·area/π) of the labelled objects of the first ``frames`` (px)."""
    areas = np.concatenate(
        [
            np.bincount(np.asarray(markers[t]).ravel().astype(np.int64))[1:]
            for t in range(min(frames, len(markers)))
        ]
    )
    areas = areas[areas > 0]
    return float(np.median(np.sqrt(4.0 * areas / np.pi))) if areas.size else float("nan")


def rescale_frame(image: np.ndarray, centres: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize a (normalised) frame by ``factor`` (antialiased when shrinking) and map centres with it.

    Returns
    -------
    image : numpy.ndarray, shape (round(Y·factor), round(X·factor)), float32
    centres : numpy.ndarray, shape (N, 2)
        ``(c + 0.5) · s - 0.5`` per axis, ``s`` the exact size ratio (pixel centres as in the resizing).
    """
    size = (max(1, round(image.shape[0] * factor)), max(1, round(image.shape[1] * factor)))
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    scaled = resize_maps(tensor, size)[0, 0].numpy()
    ratio = np.array([size[0] / image.shape[0], size[1] / image.shape[1]])
    return scaled, (np.asarray(centres, np.float64) + 0.5) * ratio - 0.5


def concat_datasets(datasets: Sequence[CropDataset]) -> CropDataset:
    """One dataset from several movies (identities are reset to -1; assign them afterwards)."""
    if not datasets:
        raise ValueError("concat_datasets needs at least one dataset")
    first = datasets[0].config
    for d in datasets[1:]:
        if d.config.stored_size != first.stored_size or d.config.crop_size != first.crop_size:
            raise ValueError(
                f"datasets have different crop sizes ({d.config.stored_size} vs {first.stored_size}); "
                "build them with the same CropDatasetConfig"
            )
    movies: list[str] = []
    movie_index = []
    for d in datasets:
        movie_index.append(d.movie.astype(np.int16) + len(movies))
        movies.extend(d.movies)
    return CropDataset(
        crops=np.concatenate([d.crops for d in datasets]),
        movie=np.concatenate(movie_index).astype(np.int16),
        label=np.concatenate([d.label for d in datasets]),
        frame=np.concatenate([d.frame for d in datasets]),
        y=np.concatenate([d.y for d in datasets]),
        x=np.concatenate([d.x for d in datasets]),
        state=np.concatenate([d.state for d in datasets]),
        split=np.concatenate([d.split for d in datasets]),
        identity=np.full(sum(len(d) for d in datasets), -1, np.int32),
        movies=tuple(movies),
        config=first,
    )


def assign_identities(dataset: CropDataset, n_identities: int = 256) -> CropDataset:
    """Number the ``n_identities`` tracks with the most training crops as identity classes 0..n-1.

    Tracks are ranked by their number of training-split crops (ties: movie, then label), so every class
    has training samples. Identity classes only mean something inside the movies they come from.

    Returns
    -------
    CropDataset
        The same samples; ``identity`` is the class of each crop of a chosen track, -1 otherwise.
    """
    if n_identities < 1:
        raise ValueError(f"n_identities must be >= 1, got {n_identities}")
    nucleus = (dataset.label > 0) & (dataset.state != OTHER)
    key = dataset.movie.astype(np.int64) * (1 << 32) + dataset.label.astype(np.int64)
    train_keys = key[nucleus & (dataset.split == TRAIN)]
    unique, counts = np.unique(train_keys, return_counts=True)
    if len(unique) < n_identities:
        raise ValueError(
            f"only {len(unique)} tracks have training crops but {n_identities} identities were asked for; "
            "lower n_identities or add movies"
        )
    order = np.lexsort((unique, -counts))[:n_identities]
    chosen = unique[order]
    lookup = dict(zip(chosen.tolist(), range(n_identities), strict=True))
    identity = np.array([lookup.get(int(k), -1) for k in key], np.int32)
    identity[~nucleus] = -1
    return replace(dataset, identity=identity)


def build_crop_dataset_from_ctc(
    sequences: Sequence[str | Path],
    config: CropDatasetConfig | None = None,
    *,
    n_identities: int | None = 256,
) -> CropDataset:
    """Crops from CTC sequence folders (``.../01``) and their ``01_GT/TRA`` markers and ``man_track.txt``.

    Parameters
    ----------
    sequences : sequence of str or pathlib.Path
        Sequence folders; each needs a sibling ground-truth folder ``NN_GT`` with ``TRA/``.
    config : CropDatasetConfig, optional
    n_identities : int or None
        Identity classes to assign over all movies (see :func:`assign_identities`); None: none.

    Returns
    -------
    CropDataset
        Movies named ``<dataset>/<sequence>`` (e.g. ``Fluo-N2DL-HeLa/01``).
    """
    from celltrack.io import find_ground_truth, open_sequence, read_gt

    if not sequences:
        raise ValueError("build_crop_dataset_from_ctc needs at least one sequence folder")
    parts = []
    for item in sequences:
        path = Path(item)
        if not path.is_dir():
            raise ValueError(
                f"{path}: sequence folder not found; pass a CTC folder such as .../Fluo-N2DL-HeLa/01"
            )
        gt_dirs = find_ground_truth(path)
        if "GT" not in gt_dirs:
            raise ValueError(f"{path}: no {path.name}_GT folder beside it; RecogNet needs GT TRA markers")
        gt = read_gt(gt_dirs["GT"])
        if gt.tra is None or gt.tracks is None:
            raise ValueError(f"{gt_dirs['GT']}: no TRA markers / man_track.txt; RecogNet needs them")
        parts.append(
            build_crop_dataset(
                open_sequence(path), gt.tra, gt.tracks, config, movie=f"{path.parent.name}/{path.name}"
            )
        )
    dataset = concat_datasets(parts)
    if n_identities is not None:
        dataset = assign_identities(dataset, n_identities)
    return dataset
