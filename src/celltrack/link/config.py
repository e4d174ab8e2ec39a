"""Parameters of :class:`celltrack.link.Linker` and their derivation from the detections themselves.

Every length is in pixels, every time in frames, every cost in the linker's dimensionless cost units (a
negative log-likelihood: a displacement ``d`` costs about ``d**2 / (2 * sigma**2)`` for small ``d``).
Fields that accept ``"auto"`` are measured from the detections by :meth:`LinkerConfig.resolve`, which
returns a copy with numbers in their place, so the effective parameters can be stored with the results.

What is measured (see :func:`measure_scene`):

- the nucleus diameter ``D``: median equivalent diameter ``2 * sqrt(area / pi)``;
- the displacement scale: nearest-neighbour distances from each detection to the previous frame's
  detections; their 90th percentile is ``2.15 sigma`` for a 2-D Gaussian step of per-axis std ``sigma``;
- the size and intensity noise: spread of ``log(area)`` and ``log(mean_intensity)`` changes along those
  nearest-neighbour pairs;
- the motion persistence: regression slope of a step on the previous step along chains of mutual
  nearest neighbours (0 for random motion, 1 for a constant drift).

- the spacing: median over frames of the median distance to the nearest detection of the same frame.

Every length-like default is a multiple of a measured quantity, every cost a fraction of the gate (see
:mod:`celltrack.link.costs`) or a log-odds of the event classifiers; the choices that are not
measurements were made by cross-validation across HeLa 01, SIM+ 01 and synthetic movies
(docs/linking-defaults.md).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.spatial import cKDTree

from celltrack.cf import CFConfig

logger = logging.getLogger(__name__)

__all__ = [
    "AppearanceConfig",
    "BirthDeathConfig",
    "DivisionConfig",
    "GapConfig",
    "GlobalPassConfig",
    "IntensityConfig",
    "LinkerConfig",
    "MotionConfig",
    "SceneStatistics",
    "SizeConfig",
    "measure_scene",
    "positive_intensity",
]

Auto = Literal["auto"]

#: 90th percentile of the length of a 2-D Gaussian step, in units of its per-axis std: sqrt(2 ln 10).
RAYLEIGH_P90 = math.sqrt(2.0 * math.log(10.0))
#: Used when a movie has too few detections to measure anything (pixels).
_FALLBACK_DIAMETER = 20.0
_MIN_SAMPLES = 20


class MotionConfig(BaseModel):
    """Motion model: a damped constant-velocity prediction and a heavy-tailed displacement cost.

    The cost of a displacement ``d`` from the predicted position is the negative log-likelihood of a
    2-D Student-t: ``(dof + 2) / 2 * log(1 + d**2 / (dof * sigma**2))``; heavy tails keep one rare long
    jump from being refused when nothing else competes for the detection.
    """

    model_config = ConfigDict(extra="forbid")

    sigma: float | Auto = Field(
        "auto", description="Per-axis scale of the frame-to-frame displacement (px). auto: measured."
    )
    dof: float = Field(4.0, gt=0, description="Degrees of freedom of the Student-t displacement cost.")
    reach: float | Auto = Field(
        "auto",
        description="Largest displacement (px) that may link between consecutive frames; birth plus death "
        "cost as much as a link this long. auto: max(10 sigma, 1 nucleus diameter), so a mother "
        "reaches its daughters.",
    )
    velocity_weight: float | Auto = Field(
        "auto",
        description="Fraction of the smoothed velocity added to the last position to predict the next one "
        "(0 = random walk, 1 = constant velocity). auto: measured persistence of the motion.",
    )
    velocity_smoothing: float = Field(
        0.5, gt=0, le=1, description="Weight of the newest step in the velocity's moving average."
    )


class AppearanceConfig(BaseModel):
    """Correlation-filter appearance term (used only when frames are given)."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(
        0.5,
        ge=0,
        description="Appearance cost weight as a fraction of the birth + death cost: a candidate costs "
        "weight * (neutral_response - response) extra (a bonus when it responds better). 0 switches the "
        "appearance term off.",
    )
    neutral_response: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Filter response that neither helps nor hurts a link (typical of a true link).",
    )
    centring: Literal["candidate", "predicted"] = Field(
        "candidate",
        description="Where the search windows sit. candidate: one window per (track, candidate) pair, "
        "centred on the candidate, response read at the centre: pure appearance. predicted: one window per "
        "track at its predicted position, response read at each candidate's offset; the Hann taper then "
        "penalises every candidate far from the prediction (a second, cruder motion term).",
    )
    window: int | Auto = Field(
        "auto",
        description="Filter window side (px). auto: max(40, 2 diameters) (CFConfig.window_for with "
        "padding 2); larger windows only add neighbours to the template.",
    )
    downsample: int | Auto = Field(
        "auto",
        description="The filters work on frames binned by this factor (block mean), so their cost does not "
        "grow with the nucleus size. auto: max(1, floor(diameter / 20)): nuclei stay at least 20 px across.",
    )
    learning_rate: float = Field(
        0.2, ge=0, le=1, description="Filter update rate eta at each linked position."
    )
    memory: int = Field(
        4,
        ge=1,
        description="A track's filter is the moving average (rate learning_rate) over its last `memory` "
        "positions; filters are built only when a response can change a link.",
    )
    sigma: float | Auto = Field(
        "auto", description="Std of the Gaussian filter target (px). auto: max(2, diameter / 10)."
    )
    lambda_rel: float = Field(0.01, gt=0, description="Filter regularisation relative to spectral energy.")
    pool_radius: float | Auto = Field(
        "auto",
        description="The response at a candidate is the maximum within this radius (px) of it, so that a "
        "centroid a few pixels off the filter's peak is not penalised. auto: max(1, diameter / 8).",
    )

    @field_validator("window", "downsample")
    @classmethod
    def _positive_int(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be a positive number of pixels or 'auto', got {value}")
        return value


class SizeConfig(BaseModel):
    """Size-change term: ``weight * log(1 + log(area_new / area_old)**2 / (2 * sigma**2))``.

    Faded out within ``birth_death.border_margin`` of the edge, where nuclei are cut off by the image edge.
    """

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(0.5, ge=0, description="Weight of the size-change cost.")
    sigma: float | Auto = Field(
        "auto",
        description="Scale of log(area) changes between frames. auto: 68th percentile of the measured "
        "|log(area ratio)|, at least 0.2.",
    )


class IntensityConfig(BaseModel):
    """Intensity-change term, like :class:`SizeConfig` on the mean intensity above background.

    Used when the detections carry ``mean_intensity`` or frames are given (then it is measured in a disc
    around each centroid). The filters see standardised windows, so brightness differences between two
    nuclei of similar shape reach the cost only through this term.
    """

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(0.5, ge=0, description="Weight of the intensity-change cost.")
    sigma: float | Auto = Field(
        "auto",
        description="Scale of log(intensity) changes between frames. auto: 68th percentile of the "
        "measured |log(intensity ratio)|, at least 0.1.",
    )


class BirthDeathConfig(BaseModel):
    """Cost of starting and ending tracks: half a gate each, cheaper near the border of the field of view.

    The border discount applies in the global pass (gap closing, divisions): in the frame-to-frame pass a
    nucleus at the border that is still there must not be cut into a leaving and an entering one.
    """

    model_config = ConfigDict(extra="forbid")

    field_of_view: Literal["frames", "detections"] = Field(
        "frames",
        description="Edge of the field of view. frames: the image when its shape is known (frames or "
        "frame_shape given), else the bounding box of all detections grown by half a diameter; detections: "
        "always that box (e.g. when only part of the image is annotated).",
    )
    border_margin: float | Auto = Field(
        "auto",
        description="Detections closer than this (px) to the edge of the field of view may enter or leave "
        "cheaply. auto: one nucleus diameter.",
    )
    border_factor: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Birth/death cost multiplier at the very edge, rising linearly to 1 at border_margin.",
    )


class DivisionConfig(BaseModel):
    """Division model: a mother at frame t, two daughters at t + 1, judged by a learned classifier.

    Candidates are every pair of daughters within ``max_distance`` of a mother; the classifier
    (:mod:`celltrack.link.divisions`) gives each a log-odds from the mother's last frames and the daughters'
    first ones. Linking the second daughter costs what starting it as a new track would, minus ``weight``
    times those log-odds: a division is made when it is more likely than not.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Allow divisions (decided in the global pass).")
    max_distance: float | Auto = Field(
        "auto",
        description="Largest mother-to-daughter distance (px) of a candidate. auto: max(motion.reach, "
        "2.5 nucleus diameters, 1.25 spacings) (docs/linking-defaults.md).",
    )
    weight: float = Field(
        1.0, gt=0, description="Cost units per unit of division log-odds (1: costs are negative log-odds)."
    )
    bias: float = Field(
        1.0,
        description="Log-odds added to every division hypothesis: how much likelier a start beside a "
        "possible mother is a daughter than the classifier's training mix says (chosen by "
        "cross-validation across sources, docs/linking-defaults.md).",
    )
    mitosis_bonus: float = Field(
        3.0,
        ge=0,
        description="Log-odds added for a full mitosis score (a mitosis_score column, e.g. from RecogNet).",
    )


class GapConfig(BaseModel):
    """Gap closing and segment joining: a track may skip up to ``max_gap`` frames where it has no detection.

    A join is judged by a learned classifier (:mod:`celltrack.link.joins`): ending one segment and starting
    the other costs as much as joining them when the join is as likely as not.
    """

    model_config = ConfigDict(extra="forbid")

    max_gap: int = Field(2, ge=0, description="Most frames a track may be missing (frames; 0 = no gaps).")
    weight: float = Field(
        1.0, gt=0, description="Cost units per unit of join log-odds (1: costs are negative log-odds)."
    )


class GlobalPassConfig(BaseModel):
    """Temporally global second pass over track segments."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run the segment-joining pass.")
    min_branch_length: int = Field(
        2,
        ge=0,
        description="A daughter branch of at most this many frames that ends (not at the movie's end) "
        "is taken as a false division and cut off (frames; 0 = keep all).",
    )
    reroute: bool = Field(
        True,
        description="Let a track that ended (within the gap limit) take over a division's linked daughter "
        "while the mother keeps the other one, when that is cheaper than the division: nuclei merged by "
        "segmentation that come apart again are not a division.",
    )


class LinkerConfig(BaseModel):
    """All parameters of :class:`celltrack.link.Linker` (pixels, frames, cost units)."""

    model_config = ConfigDict(extra="forbid")

    diameter: float | Auto = Field("auto", description="Typical nucleus diameter (px). auto: measured.")
    spacing: float | Auto = Field(
        "auto",
        description="Typical distance between neighbouring nuclei of one frame (px). auto: median over "
        "frames of the median nearest-neighbour distance.",
    )
    motion: MotionConfig = Field(default_factory=MotionConfig)
    appearance: AppearanceConfig = Field(default_factory=AppearanceConfig)
    size: SizeConfig = Field(default_factory=SizeConfig)
    intensity: IntensityConfig = Field(default_factory=IntensityConfig)
    max_cue_penalty: float = Field(
        0.25,
        ge=0,
        description="Cap on the summed size, intensity and appearance penalty of a track's best candidate, "
        "in gates (a mitotic nucleus changes all three at once); all its candidates shift down together.",
    )
    birth_death: BirthDeathConfig = Field(default_factory=BirthDeathConfig)
    division: DivisionConfig = Field(default_factory=DivisionConfig)
    gaps: GapConfig = Field(default_factory=GapConfig)
    global_pass: GlobalPassConfig = Field(default_factory=GlobalPassConfig)

    @property
    def is_resolved(self) -> bool:
        """True when no field is ``"auto"``."""
        return "auto" not in _leaves(self.model_dump())

    def resolve(self, detections: pd.DataFrame) -> LinkerConfig:
        """A copy with every ``"auto"`` field measured from the detections.

        Parameters
        ----------
        detections : pandas.DataFrame
            Columns ``frame, y, x, area``; ``mean_intensity`` if present (others ignored).

        Returns
        -------
        LinkerConfig
            Fully numeric; :attr:`is_resolved` is True.
        """
        stats = measure_scene(detections)
        data = self.model_dump()
        diameter = stats.diameter if self.diameter == "auto" else float(self.diameter)
        data["diameter"] = diameter
        if data["spacing"] == "auto":
            data["spacing"] = stats.spacing if stats.spacing is not None else 2.0 * diameter
        motion = data["motion"]
        if motion["sigma"] == "auto":
            sigma = stats.step_p90 / RAYLEIGH_P90 if stats.step_p90 is not None else 0.25 * diameter
            motion["sigma"] = max(sigma, 0.5, 0.02 * diameter)
        if motion["reach"] == "auto":
            motion["reach"] = max(10.0 * motion["sigma"], diameter)
        if motion["velocity_weight"] == "auto":
            motion["velocity_weight"] = stats.persistence
        appearance = data["appearance"]
        if appearance["window"] == "auto":
            appearance["window"] = CFConfig(padding=2.0).window_for(diameter)
        if appearance["downsample"] == "auto":
            appearance["downsample"] = max(1, int(diameter // 20))
        if appearance["sigma"] == "auto":
            appearance["sigma"] = max(2.0, diameter / 10.0)
        if appearance["pool_radius"] == "auto":
            appearance["pool_radius"] = max(1.0, diameter / 8.0)
        if data["size"]["sigma"] == "auto":
            data["size"]["sigma"] = max(
                stats.log_area_sigma if stats.log_area_sigma is not None else 0.3, 0.2
            )
        if data["intensity"]["sigma"] == "auto":
            measured = stats.log_intensity_sigma
            data["intensity"]["sigma"] = max(measured if measured is not None else 0.3, 0.1)
        if data["birth_death"]["border_margin"] == "auto":
            data["birth_death"]["border_margin"] = diameter
        if data["division"]["max_distance"] == "auto":
            data["division"]["max_distance"] = max(motion["reach"], 2.5 * diameter, 1.25 * data["spacing"])
        resolved = LinkerConfig.model_validate(data)
        logger.debug("resolved linker config: %s", resolved.model_dump())
        return resolved


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    return [value]


@dataclass(frozen=True)
class SceneStatistics:
    """Physical quantities measured from a detections table (see :func:`measure_scene`).

    Attributes
    ----------
    diameter : float
        Median equivalent nucleus diameter (px).
    step_p90 : float or None
        90th percentile of nearest-neighbour distances to the previous frame (px); None if too few.
    log_area_sigma : float or None
        68th percentile of ``|log(area ratio)|`` along nearest-neighbour pairs (the std for Gaussian
        changes); None if too few.
    persistence : float
        Regression slope of a step on the previous step (0..1).
    n_pairs : int
        Number of nearest-neighbour pairs measured.
    log_intensity_sigma : float or None
        Like ``log_area_sigma`` for ``mean_intensity`` (None without that column).
    spacing : float or None
        Median over frames of the median distance from a detection to its nearest neighbour in the same
        frame (px); None without a frame of two detections.
    """

    diameter: float
    step_p90: float | None
    log_area_sigma: float | None
    persistence: float
    n_pairs: int
    log_intensity_sigma: float | None = None
    spacing: float | None = None


def measure_scene(detections: pd.DataFrame) -> SceneStatistics:
    """Measure nucleus size, displacement, size noise and motion persistence from detections.

    Parameters
    ----------
    detections : pandas.DataFrame
        Columns ``frame, y, x, area``; ``mean_intensity`` is used if present.

    Returns
    -------
    SceneStatistics
    """
    area = detections["area"].to_numpy(dtype=np.float64) if len(detections) else np.zeros(0)
    positive = area[area > 0]
    diameter = float(np.median(2.0 * np.sqrt(positive / np.pi))) if len(positive) else _FALLBACK_DIAMETER
    frames = detections["frame"].to_numpy(np.int64) if len(detections) else np.zeros(0, np.int64)
    yx = detections[["y", "x"]].to_numpy(np.float64) if len(detections) else np.zeros((0, 2))
    has_intensity = "mean_intensity" in detections.columns and len(detections) > 0
    intensity = (
        positive_intensity(detections["mean_intensity"].to_numpy(np.float64)) if has_intensity else area
    )
    order = np.argsort(frames, kind="stable")
    frames, yx, area, intensity = frames[order], yx[order], area[order], intensity[order]
    present, starts = np.unique(frames, return_index=True)
    ends = np.append(starts[1:], len(frames))
    # Nearest neighbours between consecutive frames, as sorted positions: each detection's in the previous
    # frame (and its distance) and in the next frame.
    nearest_before = np.full(len(frames), -1, np.int64)
    nearest_after = np.full(len(frames), -1, np.int64)
    distance_before = np.zeros(len(frames))
    # One tree per frame serves its own spacing and both of its frame pairs.
    trees = [cKDTree(yx[int(a) : int(b)]) for a, b in zip(starts, ends[: len(starts)], strict=True)]
    frame_spacing = [
        float(np.median(tree.query(tree.data, k=2)[0][:, 1])) for tree in trees if tree.n >= 2
    ]
    spacing = float(np.median(frame_spacing)) if frame_spacing else None
    for i in np.flatnonzero(present[1:] == present[:-1] + 1).tolist():
        prev, nxt = slice(int(starts[i]), int(ends[i])), slice(int(starts[i + 1]), int(ends[i + 1]))
        before, after = trees[i], trees[i + 1]
        distance_before[nxt], nearest = before.query(yx[nxt])
        nearest_before[nxt] = prev.start + nearest
        nearest_after[prev] = nxt.start + after.query(yx[prev])[1]
    # Pairs in the order of their later detection, as frame by frame.
    target = np.flatnonzero(nearest_before >= 0)
    source = nearest_before[target]
    step_all = distance_before[target]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratios = np.log(area[target] / area[source])
        intensity_ratios = np.log(intensity[target] / intensity[source])
    step_p90 = float(np.percentile(step_all, 90)) if len(step_all) >= _MIN_SAMPLES else None
    log_area_sigma = _spread([log_ratios])
    log_intensity_sigma = _spread([intensity_ratios]) if has_intensity else None
    persistence = 0.0
    # Mutual nearest neighbours, and chains of two of them: the first one's target starts the second.
    mutual = target[nearest_after[source] == target]
    if len(mutual):
        step = yx[mutual] - yx[nearest_before[mutual]]
        link_from = np.full(len(frames), -1, np.int64)
        link_from[nearest_before[mutual]] = np.arange(len(mutual))
        then = link_from[mutual]
        chained = np.flatnonzero(then >= 0)
        if len(chained) >= _MIN_SAMPLES:
            a, b = step[chained], step[then[chained]]
            denominator = float(np.sum(a * a))
            if denominator > 0:
                persistence = float(np.clip(np.sum(a * b) / denominator, 0.0, 1.0))
    return SceneStatistics(
        diameter, step_p90, log_area_sigma, persistence, len(step_all), log_intensity_sigma, spacing
    )


def _spread(parts: list[np.ndarray]) -> float | None:
    """68th percentile of |values| (the std of Gaussian values); None with too few finite values."""
    values = np.concatenate(parts) if parts else np.zeros(0)
    values = values[np.isfinite(values)]
    return float(np.percentile(np.abs(values), 68.27)) if len(values) >= _MIN_SAMPLES else None


def positive_intensity(intensity: np.ndarray) -> np.ndarray:
    """Intensities floored at 5% of the median positive value, so that log ratios stay finite.

    Mean intensities above background can be zero or negative for faint or cut-off nuclei.
    """
    intensity = np.asarray(intensity, np.float64)
    positive = intensity[intensity > 0]
    floor = 0.05 * float(np.median(positive)) if len(positive) else 1.0
    return np.maximum(intensity, floor)
