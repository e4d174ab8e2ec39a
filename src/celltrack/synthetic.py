"""Synthetic fluorescent-nucleus time-lapse movies with exact ground truth in CTC semantics.

The generator simulates nuclei as textured ellipses that move (persistent + random motion), round up and
brighten before splitting into two daughters, die, and enter or leave the field through the borders. Every
frame is rendered nucleus by nucleus inside its bounding box; the resulting instance masks partition the
image (overlapping pixels go to the nearer centre), and the tracking table follows the Cell Tracking
Challenge rules: a label is present on every frame of its span and nowhere else, labels are never reused,
and daughters begin on the frame after their mother ends.

Two random streams are spawned from ``config.seed``: one for the scene (geometry, motion, events) and one
for the camera noise, so changing only noise settings leaves the ground truth unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

__all__ = [
    "MovieGenerator",
    "SyntheticConfig",
    "SyntheticMovie",
    "disc_labels",
    "dividing_nucleus",
    "drifting_nuclei",
    "generate_movie",
    "hard_movie",
    "static_nuclei",
    "two_crossing_nuclei",
]

_TEXTURE_WAVES = 8
_MAX_LABEL = int(np.iinfo(np.uint16).max)
_EDGE_RAMP_PX = 1.2  # width of the soft intensity fall-off inside the mask border
_MITOTIC_DAMPING = 0.2  # rounded mitotic cells barely crawl
_SEPARATION_ITERATIONS = 10
_DIVISION_ATTEMPTS = 12
_RESTORE_ATTEMPTS = 3


class SyntheticConfig(BaseModel):
    """Parameters of a synthetic movie. Lengths are in pixels, times in frames.

    The defaults give a 30-frame 256×256 movie resembling Fluo-N2DL-HeLa at 10×: nuclei of radius 8–12 px
    moving a few px/frame, a handful of divisions, a few touching nuclei, occasional entries and exits.
    """

    model_config = ConfigDict(extra="forbid")

    frames: int = Field(30, ge=1, description="Number of frames T.")
    height: int = Field(256, ge=16, description="Frame height Y (px).")
    width: int = Field(256, ge=16, description="Frame width X (px).")
    nuclei: int = Field(30, ge=0, description="Number of nuclei on the first frame (before border cropping).")
    radius_mean: float = Field(9.0, gt=1.0, description="Mean equivalent radius sqrt(a*b) of a nucleus (px).")
    radius_std: float = Field(1.5, ge=0.0, description="Standard deviation of the equivalent radius (px).")
    eccentricity: tuple[float, float] = Field(
        (0.2, 0.75), description="Range (low, high) of ellipse eccentricities, 0 = circle, must be < 1."
    )
    speed: float = Field(2.0, ge=0.0, description="RMS persistent speed (px/frame).")
    persistence: float = Field(
        0.8, ge=0.0, le=1.0, description="Frame-to-frame correlation of the persistent velocity (0..1)."
    )
    random_step: float = Field(
        1.0, ge=0.0, description="Std of the per-axis random (diffusive) step (px/frame)."
    )
    rotation_step: float = Field(
        0.05, ge=0.0, description="Std of the per-frame orientation change (rad/frame)."
    )
    drift: tuple[float, float] = Field(
        (0.0, 0.0), description="Stage drift (vy, vx) added to every nucleus each frame (px/frame)."
    )
    min_separation: float = Field(
        0.75,
        ge=0.0,
        le=2.0,
        description="Centres are pushed apart to at least this fraction of the sum of the two radii; "
        "below 1 nuclei may touch and overlap.",
    )
    border_margin: float = Field(
        0.0, ge=0.0, description="Initial centres keep at least this distance from the frame border (px)."
    )
    division_probability: float = Field(
        0.01, ge=0.0, le=1.0, description="Probability per cell per frame of entering mitosis."
    )
    min_cycle: int = Field(10, ge=0, description="Frames after birth before a cell may enter mitosis.")
    mitosis_frames: int = Field(
        3, ge=0, description="Frames of rounding and brightening before the split (0 = instant split)."
    )
    mitosis_brightening: float = Field(
        1.0, ge=0.0, description="Extra relative brightness at the end of mitosis (1 = twice as bright)."
    )
    mitosis_shrink: float = Field(
        0.8, gt=0.0, le=1.0, description="Radius factor of a fully rounded mitotic nucleus."
    )
    daughter_radius: float = Field(
        0.8, gt=0.0, le=1.0, description="Daughter radius / mother radius at birth."
    )
    daughter_offset: float = Field(
        9.0, gt=0.0, description="Distance of each daughter centre from the mother's last centre (px)."
    )
    daughter_jitter: float = Field(
        0.0,
        ge=0.0,
        description="Std of each daughter centre's independent displacement, as a fraction of "
        "daughter_offset (0 = daughters exactly opposite each other across the mother).",
    )
    growth_rate: float = Field(
        0.02, ge=0.0, description="Relative radius growth per frame of daughters, up to the mother's size."
    )
    death_probability: float = Field(
        0.002, ge=0.0, le=1.0, description="Probability per cell per frame of dying."
    )
    entry_rate: float = Field(
        0.1, ge=0.0, description="Mean number of nuclei entering through the borders per frame."
    )
    transient_rate: float = Field(
        0.0,
        ge=0.0,
        description="Mean number per frame of transient border objects: cells outside the field that poke "
        "in for 1-2 frames (centre within 0.4 radii of the edge), and with probability transient_return "
        "poke in again nearby after 1-2 frames away, as a new track (CTC labels a re-entering cell anew).",
    )
    transient_return: float = Field(
        0.5, ge=0.0, le=1.0, description="Probability that a transient border object shows a second time."
    )
    min_visible_area: int = Field(
        20, ge=1, description="A track ends when fewer pixels than this remain visible (px)."
    )
    marker_fraction: float = Field(
        1.0 / 3.0, gt=0.0, le=1.0, description="TRA marker disc radius as a fraction of the nucleus radius."
    )
    background: float = Field(100.0, ge=0.0, description="Background level (photons per pixel).")
    brightness_mean: float = Field(400.0, gt=0.0, description="Mean nucleus brightness above background.")
    brightness_std: float = Field(100.0, ge=0.0, description="Std of nucleus brightness across nuclei.")
    texture_strength: float = Field(
        0.25, ge=0.0, le=1.0, description="Relative amplitude of the chromatin texture (0 = flat)."
    )
    bleaching_rate: float = Field(
        0.005, ge=0.0, description="Photobleaching: signal decays as exp(-rate * frame)."
    )
    noise_std: float = Field(5.0, ge=0.0, description="Std of additive Gaussian read noise (grey levels).")
    poisson: bool = Field(True, description="Apply Poisson shot noise to background + signal.")
    blur_sigma: float = Field(1.0, ge=0.0, description="Gaussian optical blur sigma (px), 0 = none.")
    dtype: Literal["uint16", "uint8"] = Field("uint16", description="Data type of the raw images.")
    seed: int = Field(0, ge=0, description="Seed of np.random.default_rng; same config → identical movie.")

    @model_validator(mode="after")
    def _check_consistency(self) -> SyntheticConfig:
        low, high = self.eccentricity
        if not 0.0 <= low <= high < 1.0:
            raise ValueError(
                f"eccentricity must satisfy 0 <= low <= high < 1, got {self.eccentricity}; "
                "use e.g. (0.2, 0.75)"
            )
        shortest = min(self.height, self.width)
        if 4.0 * self.radius_mean > shortest:
            raise ValueError(
                f"radius_mean={self.radius_mean} px is too large for a {self.height}x{self.width} frame; "
                f"use radius_mean <= {shortest / 4:g} or a larger frame"
            )
        if 2.0 * self.border_margin >= shortest:
            raise ValueError(
                f"border_margin={self.border_margin} px leaves no room in a {self.height}x{self.width} "
                f"frame; use border_margin < {shortest / 2:g}"
            )
        return self


@dataclass(frozen=True)
class SyntheticMovie:
    """A synthetic movie and its exact ground truth.

    Attributes
    ----------
    images : np.ndarray
        (T, Y, X) raw frames, dtype ``config.dtype`` (uint16 by default).
    labels : np.ndarray
        (T, Y, X) uint16 instance masks (SEG ground truth); pixel value = track label, 0 = background.
    markers : np.ndarray
        (T, Y, X) uint16 TRA markers: a disc of radius ``marker_fraction`` × nucleus radius at each centre,
        clipped to the nucleus mask, same label.
    tracks : np.ndarray
        (N, 4) int64 rows ``(label, begin, end, parent)`` exactly as in CTC ``man_track.txt``
        (parent 0 = no parent), sorted by label.
    centroids : np.ndarray
        (M, 4) float64 rows ``(frame, label, y, x)``: true nucleus centres, sorted by frame then label.
    config : SyntheticConfig
        The configuration that produced the movie.
    """

    images: np.ndarray
    labels: np.ndarray
    markers: np.ndarray
    tracks: np.ndarray
    centroids: np.ndarray
    config: SyntheticConfig


class _Instance(NamedTuple):
    """One nucleus as drawn on one frame (centre and semi-axes in px, orientation in rad)."""

    label: int
    parent: int
    y: float
    x: float
    semi_major: float
    semi_minor: float
    theta: float
    brightness: float
    texture: np.ndarray  # (K, 3): wave vector (along major, along minor axis) in rad/px, phase
    texture_strength: float


@dataclass
class _Cell:
    """Mutable simulation state of one nucleus while its track is alive."""

    label: int
    parent: int
    begin: int
    y: float
    x: float
    vy: float
    vx: float
    radius: float  # interphase equivalent radius sqrt(a*b), px
    adult_radius: float  # size the cell grows back to after division, px
    eccentricity: float
    theta: float
    brightness: float
    texture: np.ndarray
    texture_strength: float
    age: int = 0
    mitosis: int = 0  # frames spent rounding (0 = interphase)
    recovery: int = 0  # frames left of post-division roundness/brightness
    mother: _Cell | None = None  # set on a daughter's first frame only, so a failed split can be undone
    transient: bool = False  # a border object of the flicker process, not part of the population


def _appearance(cell: _Cell, config: SyntheticConfig) -> tuple[float, float, float, float]:
    """Current (semi_major, semi_minor, brightness, texture_strength) including mitotic rounding."""
    frames = max(config.mitosis_frames, 1)
    mitotic_phase = min(cell.mitosis / frames, 1.0)
    recovery_phase = min(cell.recovery / frames, 1.0)
    roundness = max(mitotic_phase, recovery_phase)
    glow = config.mitosis_brightening * max(mitotic_phase, 0.6 * recovery_phase)
    radius = cell.radius * (1.0 - (1.0 - config.mitosis_shrink) * mitotic_phase)
    eccentricity = cell.eccentricity * (1.0 - roundness)
    # Area-preserving axes: a*b == radius**2.
    squash = (1.0 - eccentricity**2) ** 0.25
    return (
        radius / squash,
        radius * squash,
        cell.brightness * (1.0 + glow),
        cell.texture_strength * (1.0 - 0.7 * roundness),
    )


def _snapshot(cell: _Cell, config: SyntheticConfig) -> _Instance:
    semi_major, semi_minor, brightness, texture_strength = _appearance(cell, config)
    return _Instance(
        label=cell.label,
        parent=cell.parent,
        y=cell.y,
        x=cell.x,
        semi_major=semi_major,
        semi_minor=semi_minor,
        theta=cell.theta,
        brightness=brightness,
        texture=cell.texture,
        texture_strength=texture_strength,
    )


def _random_texture(rng: np.random.Generator, radius: float) -> np.ndarray:
    """(K, 3) random plane waves with wavelengths of 0.4–1.2 nucleus radii, fixed in the nucleus frame."""
    wavelength = rng.uniform(0.4, 1.2, _TEXTURE_WAVES) * max(radius, 2.0)
    direction = rng.uniform(0.0, 2.0 * np.pi, _TEXTURE_WAVES)
    wavenumber = 2.0 * np.pi / wavelength
    phase = rng.uniform(0.0, 2.0 * np.pi, _TEXTURE_WAVES)
    return np.column_stack([wavenumber * np.cos(direction), wavenumber * np.sin(direction), phase])


def _render_frame(
    instances: Sequence[_Instance], height: int, width: int, marker_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw nuclei into one frame, each inside its bounding box.

    Parameters
    ----------
    instances : sequence of _Instance
        Nuclei present on this frame.
    height, width : int
        Frame size (px).
    marker_fraction : float
        TRA marker radius as a fraction of the equivalent radius.

    Returns
    -------
    labels : np.ndarray
        (Y, X) uint16 partition: a pixel inside several ellipses goes to the nearest centre.
    markers : np.ndarray
        (Y, X) uint16 marker discs clipped to their own mask.
    signal : np.ndarray
        (Y, X) float32 noiseless nucleus signal above background (owner's intensity per pixel).
    """
    labels = np.zeros((height, width), dtype=np.uint16)
    markers = np.zeros((height, width), dtype=np.uint16)
    signal = np.zeros((height, width), dtype=np.float32)
    nearest = np.full((height, width), np.inf, dtype=np.float32)
    boxes: list[tuple[int, int, int, int] | None] = []
    ellipse_areas: list[int] = []
    for nucleus in instances:
        reach = nucleus.semi_major + 1.0
        y0 = max(math.floor(nucleus.y - reach), 0)
        y1 = min(math.ceil(nucleus.y + reach) + 1, height)
        x0 = max(math.floor(nucleus.x - reach), 0)
        x1 = min(math.ceil(nucleus.x + reach) + 1, width)
        if y0 >= y1 or x0 >= x1:
            boxes.append(None)
            ellipse_areas.append(0)
            continue
        boxes.append((y0, y1, x0, x1))
        dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(nucleus.y))[:, None]
        dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(nucleus.x))[None, :]
        cos_t, sin_t = math.cos(nucleus.theta), math.sin(nucleus.theta)
        along = cos_t * dx + sin_t * dy
        across = cos_t * dy - sin_t * dx
        rho2 = (along / nucleus.semi_major) ** 2 + (across / nucleus.semi_minor) ** 2
        centre_dist2 = dy * dy + dx * dx
        box_nearest = nearest[y0:y1, x0:x1]
        ellipse = rho2 <= 1.0
        ellipse_areas.append(int(ellipse.sum()))
        claim = ellipse & (centre_dist2 < box_nearest)
        if not claim.any():
            continue
        box_nearest[claim] = centre_dist2[claim]
        labels[y0:y1, x0:x1][claim] = nucleus.label

        rho = np.sqrt(rho2[claim])
        equivalent_radius = math.sqrt(nucleus.semi_major * nucleus.semi_minor)
        ramp = np.clip((1.0 - rho) * (equivalent_radius / _EDGE_RAMP_PX), 0.0, 1.0)
        profile = ramp * ramp * (3.0 - 2.0 * ramp) * (1.0 - 0.2 * rho * rho)
        waves = nucleus.texture
        phase = along[claim][:, None] * waves[:, 0] + across[claim][:, None] * waves[:, 1] + waves[:, 2]
        texture = np.cos(phase).sum(axis=1) / math.sqrt(len(waves) / 2.0)
        modulation = np.maximum(1.0 + nucleus.texture_strength * texture, 0.05)
        signal[y0:y1, x0:x1][claim] = nucleus.brightness * profile * modulation

    for nucleus, box, ellipse_area in zip(instances, boxes, ellipse_areas, strict=True):
        if box is None:
            continue
        y0, y1, x0, x1 = box
        own = labels[y0:y1, x0:x1] == nucleus.label
        if own.sum() < ellipse_area:
            _drop_detached_pieces(nucleus, box, own, labels, signal)
    for nucleus, box in zip(instances, boxes, strict=True):
        if box is None:
            continue
        y0, y1, x0, x1 = box
        marker_radius = max(1.0, marker_fraction * math.sqrt(nucleus.semi_major * nucleus.semi_minor))
        dy = np.arange(y0, y1) - nucleus.y
        dx = np.arange(x0, x1) - nucleus.x
        disc = (dy[:, None] ** 2 + dx[None, :] ** 2) <= marker_radius**2
        own = disc & (labels[y0:y1, x0:x1] == nucleus.label)
        markers[y0:y1, x0:x1][own] = nucleus.label
    return labels, markers, signal


def _drop_detached_pieces(
    nucleus: _Instance,
    box: tuple[int, int, int, int],
    own: np.ndarray,
    labels: np.ndarray,
    signal: np.ndarray,
) -> None:
    """Keep only the piece of a contested mask that holds its centre; the rest becomes background.

    Nearest-centre competition happens only where ellipses overlap, so a neighbour crossing an elongated
    nucleus can cut it in two; a nucleus is one blob, so the cut-off pieces are erased.
    """
    y0, y1, x0, x1 = box
    pieces, count = ndi.label(own, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return
    cy, cx = math.floor(nucleus.y + 0.5) - y0, math.floor(nucleus.x + 0.5) - x0
    inside_box = 0 <= cy < y1 - y0 and 0 <= cx < x1 - x0
    keep = pieces[cy, cx] if inside_box else 0
    if keep == 0:
        keep = int(np.argmax(np.bincount(pieces.ravel())[1:])) + 1
    detached = (pieces > 0) & (pieces != keep)
    labels[y0:y1, x0:x1][detached] = 0
    signal[y0:y1, x0:x1][detached] = 0.0


def _too_small(
    labels: np.ndarray, markers: np.ndarray, instances: Sequence[_Instance], min_area: int
) -> set[int]:
    """Labels that cannot be annotated: < ``min_area`` px visible, centre pixel not theirs, or no marker."""
    if not instances:
        return set()
    top = max(nucleus.label for nucleus in instances) + 1
    areas = np.bincount(labels.ravel(), minlength=top)
    marker_areas = np.bincount(markers.ravel(), minlength=top)
    height, width = labels.shape
    hidden = set()
    for nucleus in instances:
        cy, cx = math.floor(nucleus.y + 0.5), math.floor(nucleus.x + 0.5)
        centred = 0 <= cy < height and 0 <= cx < width and labels[cy, cx] == nucleus.label
        if not centred or areas[nucleus.label] < min_area or marker_areas[nucleus.label] == 0:
            hidden.add(nucleus.label)
    return hidden


class _Camera:
    """Turns a noiseless signal into a raw frame: bleaching, blur, background, shot and read noise."""

    def __init__(self, config: SyntheticConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        self.ceiling = float(np.iinfo(np.dtype(config.dtype)).max)

    def expose(self, signal: np.ndarray, frame: int) -> np.ndarray:
        config = self.config
        light = signal.astype(np.float64) * math.exp(-config.bleaching_rate * frame)
        if config.blur_sigma > 0:
            light = ndi.gaussian_filter(light, config.blur_sigma, mode="nearest")
        light += config.background
        if config.poisson:
            light = self.rng.poisson(light).astype(np.float64)
        if config.noise_std > 0:
            light += self.rng.normal(0.0, config.noise_std, light.shape)
        np.clip(np.rint(light), 0.0, self.ceiling, out=light)
        return light.astype(config.dtype)


def _border_site(
    config: SyntheticConfig, rng: np.random.Generator, side: int, max_depth: float
) -> tuple[float, float]:
    """A point within ``max_depth`` px of one side of the frame (0 top, 1 bottom, 2 left, 3 right).

    Draws the depth, then a position along y and along x (the one along the side is used).
    """
    depth = rng.uniform(0.0, max_depth)
    along_y = rng.uniform(0.0, config.height - 1)
    along_x = rng.uniform(0.0, config.width - 1)
    return [
        (depth, along_x),
        (config.height - 1 - depth, along_x),
        (along_y, depth),
        (along_y, config.width - 1 - depth),
    ][side]


class _Simulation:
    """Cell population dynamics; also the toolbox the scripted scenes use to create and divide cells."""

    def __init__(self, config: SyntheticConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        self.next_label = 1

    def _allocate_label(self) -> int:
        label = self.next_label
        if label > _MAX_LABEL:
            raise RuntimeError(
                f"the movie needs more than {_MAX_LABEL} track labels (uint16); "
                "reduce frames, nuclei, entry_rate or division_probability"
            )
        self.next_label += 1
        return label

    def new_cell(
        self,
        y: float,
        x: float,
        begin: int,
        parent: int = 0,
        radius: float | None = None,
        brightness: float | None = None,
        rng: np.random.Generator | None = None,
    ) -> _Cell:
        config = self.config
        rng = self.rng if rng is None else rng
        if radius is None:
            radius = config.radius_mean + config.radius_std * rng.standard_normal()
            radius = float(np.clip(radius, 0.5 * config.radius_mean, 1.5 * config.radius_mean))
        if brightness is None:
            brightness = config.brightness_mean + config.brightness_std * rng.standard_normal()
            brightness = max(brightness, 0.2 * config.brightness_mean)
        sigma = config.speed / math.sqrt(2.0)
        vy, vx = sigma * rng.standard_normal(2)
        return _Cell(
            label=self._allocate_label(),
            parent=parent,
            begin=begin,
            y=float(y),
            x=float(x),
            vy=float(vy),
            vx=float(vx),
            radius=radius,
            adult_radius=radius,
            eccentricity=float(rng.uniform(*config.eccentricity)),
            theta=float(rng.uniform(0.0, np.pi)),
            brightness=float(brightness),
            texture=_random_texture(rng, radius),
            texture_strength=float(min(config.texture_strength * rng.uniform(0.6, 1.4), 1.0)),
        )

    def divide(self, mother: _Cell, begin: int, angle: float | None = None) -> list[_Cell] | None:
        """Two daughters on opposite sides of the mother's centre, or None when they would not fit."""
        config, rng = self.config, self.rng
        offset = config.daughter_offset * rng.uniform(0.85, 1.15)
        for _ in range(_DIVISION_ATTEMPTS):
            direction = rng.uniform(0.0, np.pi) if angle is None else angle
            uy, ux = math.sin(direction), math.cos(direction)
            sites = [(mother.y + s * offset * uy, mother.x + s * offset * ux) for s in (1.0, -1.0)]
            if config.daughter_jitter > 0:
                shift = rng.normal(0.0, config.daughter_jitter * offset, (2, 2))
                sites = [(y + dy, x + dx) for (y, x), (dy, dx) in zip(sites, shift, strict=True)]
            margin = max(1.0, 0.5 * config.daughter_radius * mother.adult_radius)
            if all(self.is_inside(y, x, margin=margin) for y, x in sites):
                break
            if angle is not None:
                return None
        else:
            return None
        daughters = []
        for y, x in sites:
            daughter = self.new_cell(
                y,
                x,
                begin=begin,
                parent=mother.label,
                radius=mother.adult_radius * config.daughter_radius,
                brightness=mother.brightness * rng.uniform(0.9, 1.1),
            )
            daughter.adult_radius = mother.adult_radius
            daughter.mother = mother
            daughter.recovery = config.mitosis_frames
            daughters.append(daughter)
        return daughters

    def is_inside(self, y: float, x: float, margin: float = 0.0) -> bool:
        """Whether the centre pixel lies in the frame, at least ``margin`` px from its edge."""
        config = self.config
        return (
            margin - 0.5 <= y < config.height - 0.5 - margin
            and margin - 0.5 <= x < config.width - 0.5 - margin
        )

    def move(self, cell: _Cell) -> None:
        config, rng = self.config, self.rng
        noise = rng.standard_normal(5)
        keep = config.persistence
        sigma = config.speed / math.sqrt(2.0)
        cell.vy = keep * cell.vy + math.sqrt(1.0 - keep * keep) * sigma * noise[0]
        cell.vx = keep * cell.vx + math.sqrt(1.0 - keep * keep) * sigma * noise[1]
        damping = _MITOTIC_DAMPING if cell.mitosis else 1.0
        cell.y += damping * (cell.vy + config.random_step * noise[2]) + config.drift[0]
        cell.x += damping * (cell.vx + config.random_step * noise[3]) + config.drift[1]
        cell.theta += config.rotation_step * noise[4]
        cell.age += 1
        cell.recovery = max(cell.recovery - 1, 0)
        if not cell.mitosis:
            cell.radius = min(cell.radius * (1.0 + config.growth_rate), cell.adult_radius)

    def separate(self, cells: Sequence[_Cell]) -> None:
        """Push centres apart until each pair is at least ``min_separation`` × summed radii apart."""
        if len(cells) < 2 or self.config.min_separation <= 0:
            return
        positions = np.array([[cell.y, cell.x] for cell in cells])
        radii = np.array([math.sqrt(a * b) for a, b, _, _ in (_appearance(c, self.config) for c in cells)])
        required = self.config.min_separation * (radii[:, None] + radii[None, :])
        order = np.arange(len(cells))
        # Coincident centres get a deterministic direction so the push is well defined.
        tie_break = np.sign(order[:, None] - order[None, :]).astype(float)
        for _ in range(_SEPARATION_ITERATIONS):
            diff = positions[:, None, :] - positions[None, :, :]
            distance = np.hypot(diff[..., 0], diff[..., 1])
            np.fill_diagonal(distance, np.inf)
            deficit = required - distance
            if not (deficit > 1e-6).any():
                break
            deficit = np.clip(deficit, 0.0, None)
            safe = np.where(distance > 1e-9, distance, 1.0)
            unit = diff / safe[..., None]
            unit[..., 1] = np.where(distance > 1e-9, unit[..., 1], tie_break)
            positions += 0.5 * (deficit[..., None] * unit).sum(axis=1)
        for cell, (y, x) in zip(cells, positions, strict=True):
            cell.y, cell.x = float(y), float(x)

    def initial_cells(self) -> list[_Cell]:
        config, rng = self.config, self.rng
        margin = config.border_margin
        cells: list[_Cell] = []
        for _ in range(config.nuclei):
            for _attempt in range(50):
                y = rng.uniform(margin, config.height - 1 - margin)
                x = rng.uniform(margin, config.width - 1 - margin)
                if all(
                    math.hypot(y - c.y, x - c.x) >= config.min_separation * 2.0 * config.radius_mean
                    for c in cells
                ):
                    break
            cell = self.new_cell(y, x, begin=0)
            if config.min_cycle > 0:
                cell.age = int(rng.integers(0, 2 * config.min_cycle + 1))
            cells.append(cell)
        return cells

    def entering_cell(self, begin: int) -> _Cell:
        config, rng = self.config, self.rng
        side = int(rng.integers(4))
        y, x = _border_site(config, rng, side, 0.5 * config.radius_mean)
        cell = self.new_cell(y, x, begin=begin)
        # Entering cells head into the field so they are not lost again at once.
        inward = max(config.speed, 0.5)
        if side == 0:
            cell.vy = abs(cell.vy) + 0.5 * inward
        elif side == 1:
            cell.vy = -abs(cell.vy) - 0.5 * inward
        elif side == 2:
            cell.vx = abs(cell.vx) + 0.5 * inward
        else:
            cell.vx = -abs(cell.vx) - 0.5 * inward
        if config.min_cycle > 0:
            cell.age = int(rng.integers(0, 2 * config.min_cycle + 1))
        return cell

    def advance(self, cells: Sequence[_Cell], frame: int) -> list[_Cell]:
        """Apply deaths, mitosis, divisions, motion and entries from ``frame - 1`` to ``frame``."""
        config, rng = self.config, self.rng
        following: list[_Cell] = []
        for cell in cells:
            if not cell.mitosis and rng.random() < config.death_probability:
                continue
            starts_mitosis = (
                not cell.mitosis
                and cell.age >= config.min_cycle
                and rng.random() < config.division_probability
            )
            if cell.mitosis >= config.mitosis_frames > 0 or (starts_mitosis and config.mitosis_frames == 0):
                daughters = self.divide(cell, begin=frame)
                if daughters is not None:
                    following.extend(daughters)
                    continue
            elif starts_mitosis:
                cell.mitosis = 1
            elif cell.mitosis:
                cell.mitosis += 1
            self.move(cell)
            following.append(cell)
        for _ in range(rng.poisson(config.entry_rate)):
            following.append(self.entering_cell(begin=frame))
        return following

    def run(self, camera: _Camera, flickers: _Flickers | None = None) -> _Rendered:
        config = self.config
        rendered = _Rendered(config.frames, config.height, config.width, config.dtype)
        cells = self.initial_cells()
        for frame in range(config.frames):
            if frame:
                cells = self.advance(cells, frame)
            self.separate(cells)
            alive = []
            for cell in cells:
                if self.is_inside(cell.y, cell.x):
                    alive.append(cell)
                elif cell.begin == frame:
                    # A newborn pushed out by neighbours stays at the edge: its track has no past to end.
                    cell.y = float(np.clip(cell.y, 0.0, config.height - 1))
                    cell.x = float(np.clip(cell.x, 0.0, config.width - 1))
                    alive.append(cell)
            if flickers is not None:
                alive.extend(flickers.step(frame, alive))
            alive, instances, labels, markers, signal = self.settle(alive, frame)
            rendered.store(frame, instances, labels, markers, camera.expose(signal, frame))
            for cell in alive:
                cell.mother = None
            if flickers is not None:
                flickers.keep_only({cell.label for cell in alive})
            cells = [cell for cell in alive if not cell.transient]
        return rendered

    def settle(
        self, alive: list[_Cell], frame: int
    ) -> tuple[list[_Cell], list[_Instance], np.ndarray, np.ndarray, np.ndarray]:
        """Render a frame, ending the tracks of nuclei too hidden to be annotated, until all are visible.

        A hidden daughter on her first frame undoes the division: both daughters vanish and the mother
        stays one more frame (she retries the split later), so no mother is left with a single child.
        """
        config = self.config
        restores_left = _RESTORE_ATTEMPTS
        while True:
            instances = [_snapshot(cell, config) for cell in alive]
            labels, markers, signal = _render_frame(
                instances, config.height, config.width, config.marker_fraction
            )
            hidden = _too_small(labels, markers, instances, config.min_visible_area)
            if not hidden:
                return alive, instances, labels, markers, signal
            if any(not cell.transient for cell in alive if cell.label in hidden):
                # A transient border object never ends a real nucleus' track: it goes first.
                near = _near_hidden(alive, hidden, 3.0 * config.radius_mean)
                if near:
                    alive = [cell for cell in alive if cell.label not in near]
                    continue
            failed_mothers = {
                id(cell.mother): cell.mother
                for cell in alive
                if cell.label in hidden and cell.mother is not None
            }
            removed = hidden | {
                cell.label for cell in alive if cell.mother is not None and id(cell.mother) in failed_mothers
            }
            alive = [cell for cell in alive if cell.label not in removed]
            if failed_mothers and restores_left > 0:
                # Removing nuclei only enlarges the others; restoring mothers may hide someone, hence the cap.
                restores_left -= 1
                alive.extend(failed_mothers.values())


def _near_hidden(alive: Sequence[_Cell], hidden: set[int], distance: float) -> set[int]:
    """Labels of transient objects within ``distance`` px of a hidden nucleus."""
    hidden_cells = [cell for cell in alive if cell.label in hidden and not cell.transient]
    return {
        cell.label
        for cell in alive
        if cell.transient and any(math.hypot(cell.y - h.y, cell.x - h.x) < distance for h in hidden_cells)
    }


@dataclass
class _Flicker:
    """One transient border object: visible runs separated by frames away (each run a new track)."""

    y: float
    x: float
    runs: list[int]  # visible frames of each run, then frames away before the next (alternating)
    cell: _Cell | None = None


class _Flickers:
    """Transient border objects: cells outside the field that poke in for a frame or two.

    They draw from their own random stream and never push or move the population's nuclei.
    """

    def __init__(self, simulation: _Simulation, rng: np.random.Generator) -> None:
        self.simulation = simulation
        self.rng = rng
        self.active: list[_Flicker] = []

    def _start(self) -> _Flicker:
        config, rng = self.simulation.config, self.rng
        y, x = _border_site(config, rng, int(rng.integers(4)), 0.4 * config.radius_mean)
        runs = [int(rng.integers(1, 3))]
        if rng.random() < config.transient_return:
            runs += [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
        return _Flicker(y, x, runs)

    def step(self, frame: int, alive: Sequence[_Cell]) -> list[_Cell]:
        """The transient objects visible on ``frame`` (new ones start away from the population)."""
        config = self.simulation.config
        for _ in range(self.rng.poisson(config.transient_rate)):
            flicker = self._start()
            clear = 1.5 * config.radius_mean
            if all(math.hypot(flicker.y - c.y, flicker.x - c.x) >= clear for c in alive):
                self.active.append(flicker)
        visible = []
        for flicker in self.active:
            away = len(flicker.runs) % 2 == 0  # an even number of entries left: between two runs
            if not away:
                if flicker.cell is None:
                    jitter = self.rng.normal(0.0, 0.15 * config.radius_mean, 2)
                    y = float(np.clip(flicker.y + jitter[0], 0.0, config.height - 1))
                    x = float(np.clip(flicker.x + jitter[1], 0.0, config.width - 1))
                    flicker.cell = self.simulation.new_cell(y, x, begin=frame, rng=self.rng)
                    flicker.cell.transient = True
                visible.append(flicker.cell)
            flicker.runs[0] -= 1
            if flicker.runs[0] == 0:
                flicker.runs.pop(0)
                if not away:
                    flicker.cell = None
        self.active = [flicker for flicker in self.active if flicker.runs]
        return visible

    def keep_only(self, rendered: set[int]) -> None:
        """Objects hidden on this frame end their run (a track has no gaps)."""
        for flicker in self.active:
            if flicker.cell is not None and flicker.cell.label not in rendered:
                flicker.cell = None
                if len(flicker.runs) % 2 == 1:
                    flicker.runs.pop(0)
        self.active = [flicker for flicker in self.active if flicker.runs]


class _Rendered:
    """Frames and per-frame nucleus records accumulated while rendering."""

    def __init__(self, frames: int, height: int, width: int, dtype: str) -> None:
        self.instances: list[list[_Instance]] = [[] for _ in range(frames)]
        self.labels = np.zeros((frames, height, width), dtype=np.uint16)
        self.markers = np.zeros((frames, height, width), dtype=np.uint16)
        self.images = np.zeros((frames, height, width), dtype=dtype)

    def store(
        self,
        frame: int,
        instances: list[_Instance],
        labels: np.ndarray,
        markers: np.ndarray,
        image: np.ndarray,
    ) -> None:
        self.instances[frame] = instances
        self.labels[frame] = labels
        self.markers[frame] = markers
        self.images[frame] = image

    def to_movie(self, config: SyntheticConfig) -> SyntheticMovie:
        spans: dict[int, list[int]] = {}
        rows: list[tuple[float, float, float, float]] = []
        for frame, instances in enumerate(self.instances):
            for nucleus in instances:
                span = spans.get(nucleus.label)
                if span is None:
                    spans[nucleus.label] = [nucleus.label, frame, frame, nucleus.parent]
                elif span[2] != frame - 1:
                    raise RuntimeError(f"track {nucleus.label} has a gap before frame {frame}")
                else:
                    span[2] = frame
                rows.append((frame, nucleus.label, nucleus.y, nucleus.x))
        tracks = np.array(sorted(spans.values()), dtype=np.int64).reshape(-1, 4)
        centroids = np.array(sorted(rows), dtype=np.float64).reshape(-1, 4)
        logger.debug(
            "synthetic movie: %d tracks, %d with a parent, %d nucleus instances",
            len(tracks),
            int((tracks[:, 3] > 0).sum()),
            len(centroids),
        )
        return SyntheticMovie(
            images=self.images,
            labels=self.labels,
            markers=self.markers,
            tracks=tracks,
            centroids=centroids,
            config=config,
        )


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent scene and camera generators derived from one seed."""
    scene, camera = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(scene), np.random.default_rng(camera)


def _transient_stream(seed: int) -> np.random.Generator:
    """A third stream for transient border objects: the scene and the camera draw the same numbers with
    and without them (a spawned child depends only on the seed and its index)."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])


def _resolve_config(config: SyntheticConfig | None, overrides: dict[str, Any]) -> SyntheticConfig:
    if config is None:
        return SyntheticConfig(**overrides)
    if not isinstance(config, SyntheticConfig):
        raise TypeError(
            f"config must be a SyntheticConfig or None, got {type(config).__name__}; "
            "build one with SyntheticConfig(...) or pass fields as keyword arguments"
        )
    if not overrides:
        return config
    return SyntheticConfig.model_validate({**config.model_dump(), **overrides})


class MovieGenerator:
    """Stage that simulates and renders a synthetic nucleus movie.

    Parameters
    ----------
    config : SyntheticConfig, optional
        Movie parameters; defaults to ``SyntheticConfig()``.
    **overrides
        Field values replacing those of ``config`` (validated).
    """

    def __init__(self, config: SyntheticConfig | None = None, **overrides: Any) -> None:
        self.config = _resolve_config(config, overrides)

    def generate(self) -> SyntheticMovie:
        """Simulate the population and render every frame.

        Returns
        -------
        SyntheticMovie
            Raw (T, Y, X) images with labels, markers, tracks and centroids.
        """
        scene_rng, camera_rng = _streams(self.config.seed)
        simulation = _Simulation(self.config, scene_rng)
        flickers = None
        if self.config.transient_rate > 0:
            flickers = _Flickers(simulation, _transient_stream(self.config.seed))
        return simulation.run(_Camera(self.config, camera_rng), flickers).to_movie(self.config)


def generate_movie(config: SyntheticConfig | None = None, **overrides: Any) -> SyntheticMovie:
    """Generate a synthetic movie; functional wrapper of :class:`MovieGenerator`.

    Parameters
    ----------
    config : SyntheticConfig, optional
        Movie parameters; defaults to ``SyntheticConfig()``.
    **overrides
        Field values replacing those of ``config``, e.g. ``frames=10, height=128``.

    Returns
    -------
    SyntheticMovie
    """
    return MovieGenerator(config, **overrides).generate()


#: The hard movie kinds of the linking cross-validation (``hard_movie``); lengths in px, times in frames.
HARD_MOVIES: dict[str, dict[str, Any]] = {
    # More than 300 nuclei per frame (about 3.5x HeLa 01's density, like the densest HeLa movies), daughters
    # landing about one nucleus diameter from their mother, cells streaming in through the long border;
    # whole-nucleus markers as in HeLa's GT (the other kinds keep small central markers, as many CTC sets).
    # Daughters of 0.6 radii share about the mitotic mother's area, as real ones do, and land only roughly
    # opposite each other (GT markers of real daughters are not placed symmetrically either).
    "dense": {
        "frames": 40, "height": 640, "width": 1024, "nuclei": 340, "daughter_offset": 18.0,
        "daughter_jitter": 0.25, "daughter_radius": 0.6, "entry_rate": 1.0, "marker_fraction": 1.0,
    },
    # HeLa-like density with many transient objects poking in at the border for a frame or two.
    "transient": {
        "frames": 40, "height": 512, "width": 512, "nuclei": 40, "daughter_jitter": 0.25,
        "daughter_radius": 0.6, "transient_rate": 1.0,
    },
    # A sparse field of 20 nuclei, rare divisions, some transient border objects.
    "sparse": {
        "frames": 60, "height": 512, "width": 512, "nuclei": 20, "division_probability": 0.002,
        "daughter_jitter": 0.25, "daughter_radius": 0.6, "entry_rate": 0.05, "transient_rate": 0.3,
    },
}


def hard_movie(kind: str, seed: int = 0, **overrides: Any) -> SyntheticMovie:
    """A synthetic movie made hard on purpose for linking (see :data:`HARD_MOVIES`).

    Parameters
    ----------
    kind : {"dense", "transient", "sparse"}
        ``dense``: more than 300 nuclei per frame; ``transient``: objects that show for 1-2 frames at the
        border; ``sparse``: 20 nuclei with rare divisions and some transient border objects.
    seed : int
        Seed.
    **overrides
        SyntheticConfig fields replacing the kind's settings.

    Returns
    -------
    SyntheticMovie
    """
    if kind not in HARD_MOVIES:
        raise ValueError(f"unknown hard movie kind {kind!r}; use one of {sorted(HARD_MOVIES)}")
    return generate_movie(**{**HARD_MOVIES[kind], "seed": seed, **overrides})


def _render_scene(config: SyntheticConfig, script: Sequence[Sequence[_Instance]]) -> SyntheticMovie:
    """Render a scripted scene (one list of nuclei per frame) with the same renderer and camera."""
    if len(script) != config.frames:
        raise ValueError(f"scene has {len(script)} frames but config.frames is {config.frames}")
    _, camera_rng = _streams(config.seed)
    camera = _Camera(config, camera_rng)
    rendered = _Rendered(config.frames, config.height, config.width, config.dtype)
    for frame, instances in enumerate(script):
        labels, markers, signal = _render_frame(
            instances, config.height, config.width, config.marker_fraction
        )
        hidden = _too_small(labels, markers, instances, config.min_visible_area)
        if hidden:
            raise ValueError(
                f"nuclei {sorted(hidden)} are not visible enough on frame {frame} of a "
                f"{config.height}x{config.width} scene; enlarge height/width or reduce speed/frames"
            )
        rendered.store(frame, list(instances), labels, markers, camera.expose(signal, frame))
    return rendered.to_movie(config)


def two_crossing_nuclei(
    frames: int = 10, speed: float = 10.0, seed: int = 0, **overrides: Any
) -> SyntheticMovie:
    """Two clearly different nuclei whose straight paths cross, so nearest-neighbour linking swaps them.

    Label 1 is large, dim, elongated and strongly textured; label 2 is small, bright, round and smooth.
    They travel almost head-on (150° apart) and pass the crossing point at the same half-frame, so each
    nucleus's next position is ≈ 0.26·speed px from the *other* nucleus's previous position but ``speed``
    px from its own, while simultaneous centres stay ≈ 0.97·speed px apart (touching, never merged).

    Parameters
    ----------
    frames : int
        Number of frames (>= 2).
    speed : float
        Speed of both nuclei (px/frame, > 0).
    seed : int
        Seed for texture and noise.
    **overrides
        SyntheticConfig fields (noise, blur, height, width, ...). The frame is sized to fit by default.

    Returns
    -------
    SyntheticMovie
    """
    if frames < 2:
        raise ValueError(f"two_crossing_nuclei needs frames >= 2, got {frames}")
    if not speed > 0:
        raise ValueError(f"two_crossing_nuclei needs speed > 0 px/frame, got {speed}")
    tilt = math.radians(15.0)
    big, small = 8.0, 5.5
    reach = (frames / 2.0 + 0.5) * speed
    overrides.setdefault("width", max(32, math.ceil(2.0 * (reach * math.cos(tilt) + big + 4.0))))
    overrides.setdefault("height", max(32, math.ceil(2.0 * (reach * math.sin(tilt) + big + 4.0))))
    config = SyntheticConfig(frames=frames, seed=seed, **overrides)
    scene_rng, _ = _streams(seed)
    simulation = _Simulation(config, scene_rng)
    centre_y, centre_x = (config.height - 1) / 2.0, (config.width - 1) / 2.0
    crossing_time = (frames - 1) // 2 + 0.5
    dim = simulation.new_cell(
        centre_y, centre_x, begin=0, radius=big, brightness=0.6 * config.brightness_mean
    )
    dim.eccentricity, dim.theta, dim.texture_strength = 0.75, 0.4, 0.5
    bright = simulation.new_cell(
        centre_y, centre_x, begin=0, radius=small, brightness=1.6 * config.brightness_mean
    )
    bright.eccentricity, bright.texture_strength = 0.1, 0.03
    headings = {
        dim.label: (-math.sin(tilt), math.cos(tilt)),
        bright.label: (-math.sin(tilt), -math.cos(tilt)),
    }
    script = []
    for frame in range(frames):
        travelled = (frame - crossing_time) * speed
        for cell in (dim, bright):
            uy, ux = headings[cell.label]
            cell.y, cell.x = centre_y + travelled * uy, centre_x + travelled * ux
        script.append([_snapshot(dim, config), _snapshot(bright, config)])
    return _render_scene(config, script)


def dividing_nucleus(
    frames: int = 10, division_frame: int = 5, seed: int = 0, **overrides: Any
) -> SyntheticMovie:
    """One nucleus that rounds up, brightens and divides; daughters then drift apart.

    The mother has label 1 on frames ``0 .. division_frame - 1`` (mitotic rounding over the last
    ``mitosis_frames`` of them); daughters 2 and 3 (parent 1) begin on ``division_frame`` at
    ``daughter_offset`` px on opposite sides of the mother's last centre and move apart at 0.5 px/frame.

    Parameters
    ----------
    frames : int
        Number of frames.
    division_frame : int
        First frame of the daughters, 1 <= division_frame <= frames - 1.
    seed : int
        Seed for appearance and noise.
    **overrides
        SyntheticConfig fields (default frame 64×64).

    Returns
    -------
    SyntheticMovie
    """
    if not 1 <= division_frame <= frames - 1:
        raise ValueError(
            f"division_frame must lie in 1..frames-1 = 1..{frames - 1}, got {division_frame}; "
            "the mother needs at least one frame and the daughters too"
        )
    overrides.setdefault("height", 64)
    overrides.setdefault("width", 64)
    config = SyntheticConfig(frames=frames, seed=seed, **overrides)
    scene_rng, _ = _streams(seed)
    simulation = _Simulation(config, scene_rng)
    mother = simulation.new_cell((config.height - 1) / 2.0, (config.width - 1) / 2.0, begin=0)
    script: list[list[_Instance]] = []
    for frame in range(division_frame):
        mother.mitosis = max(0, frame - (division_frame - config.mitosis_frames) + 1)
        script.append([_snapshot(mother, config)])
    axis = float(scene_rng.uniform(0.0, np.pi))
    daughters = simulation.divide(mother, begin=division_frame, angle=axis)
    if daughters is None:
        raise ValueError(
            f"daughters {config.daughter_offset} px from the centre do not fit a "
            f"{config.height}x{config.width} frame; enlarge it or reduce daughter_offset"
        )
    apart = 0.5
    for frame in range(division_frame, frames):
        if frame > division_frame:
            for sign, daughter in zip((1.0, -1.0), daughters, strict=True):
                daughter.y += sign * apart * math.sin(axis)
                daughter.x += sign * apart * math.cos(axis)
                daughter.recovery = max(daughter.recovery - 1, 0)
        script.append([_snapshot(daughter, config) for daughter in daughters])
    return _render_scene(config, script)


def _rigid_scene(overrides: dict[str, Any]) -> dict[str, Any]:
    """Settings of a scene whose nuclei never touch, move on their own, divide, die or enter."""
    return {
        "speed": 0.0,
        "random_step": 0.0,
        "rotation_step": 0.0,
        "division_probability": 0.0,
        "death_probability": 0.0,
        "entry_rate": 0.0,
        "min_separation": 1.15,
        "border_margin": overrides.get("radius_mean", 9.0) + 2.0,
    }


def static_nuclei(
    n: int = 5, frames: int = 5, height: int = 96, width: int = 96, seed: int = 0, **overrides: Any
) -> SyntheticMovie:
    """Non-touching nuclei that neither move, rotate, divide, die nor bleach; frames differ only by noise.

    Parameters
    ----------
    n : int
        Number of nuclei.
    frames, height, width : int
        Movie size.
    seed : int
        Seed.
    **overrides
        Further SyntheticConfig fields.

    Returns
    -------
    SyntheticMovie
    """
    settings: dict[str, Any] = _rigid_scene(overrides) | {"bleaching_rate": 0.0}
    settings.update(overrides)
    return generate_movie(nuclei=n, frames=frames, height=height, width=width, seed=seed, **settings)


def drifting_nuclei(
    velocity: tuple[float, float] = (1.0, 2.0),
    n: int = 5,
    frames: int = 8,
    height: int = 96,
    width: int = 96,
    seed: int = 0,
    **overrides: Any,
) -> SyntheticMovie:
    """Non-touching nuclei translating rigidly by ``velocity`` = (vy, vx) px/frame (pure stage drift).

    Nuclei that leave the field end their tracks as usual; nothing divides, dies or enters.

    Parameters
    ----------
    velocity : tuple of float
        Constant displacement (vy, vx) per frame (px/frame).
    n : int
        Number of nuclei.
    frames, height, width : int
        Movie size.
    seed : int
        Seed.
    **overrides
        Further SyntheticConfig fields.

    Returns
    -------
    SyntheticMovie
    """
    settings: dict[str, Any] = _rigid_scene(overrides) | {"drift": (float(velocity[0]), float(velocity[1]))}
    settings.update(overrides)
    return generate_movie(nuclei=n, frames=frames, height=height, width=width, seed=seed, **settings)


def disc_labels(
    shape: tuple[int, int],
    centres: Sequence[tuple[float, float]],
    radius: float,
    dtype: type = np.int32,
) -> np.ndarray:
    """A label image of discs: label ``i + 1`` within ``radius`` px of ``centres[i]``.

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)``.
    centres : sequence of (y, x)
        Disc centres (px); where discs overlap, the earlier one keeps the pixels.
    radius : float
        Disc radius (px).
    dtype : type
        Integer dtype of the result.

    Returns
    -------
    numpy.ndarray, shape (Y, X)
    """
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype)
    for label, (cy, cx) in enumerate(centres, start=1):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2) & (labels == 0)] = label
    return labels
