"""Division probability: a learned classifier over a mother's last frames and her daughters' first ones.

A division hypothesis is a mother node at frame t and two daughter nodes at t + 1, in one of two forms the
frame-to-frame pass leaves behind: the mother's track *ended* and both daughters start new tracks, or the
mother's track continues into one daughter and the other daughter starts a new track (a *split*).
:func:`division_features` describes each hypothesis by scale-free quantities (distances over the movie's
motion scale and the mother's size, unsigned log ratios of areas and intensities against the mother's
recent history, the daughters' symmetry, how long the tracks around it live), and a small classifier
(:class:`celltrack.models.events.EventClassifier`, shipped weights trained on HeLa 01, SIM+ 01 and synthetic
movies; see ``benchmarks/event_models.py``) turns them into a probability.

In the global pass the probability enters as a cost: a second daughter linked to its mother costs what
starting it as a new track would cost, minus ``division.weight`` times the log-odds of the division, so the
division wins exactly when it is more likely than not, and a competing gap closing or re-routing is weighed
on the same scale. An optional ``mitosis_score`` column adds ``division.mitosis_bonus`` log-odds at full
score.
"""

from __future__ import annotations

import logging

import numpy as np

from celltrack.link.costs import Scene
from celltrack.link.state import LinkState, branch_length, history_length, history_median
from celltrack.models.events import EventClassifier, load_division_model

logger = logging.getLogger(__name__)

__all__ = [
    "DIVISION_FEATURES",
    "division_cost",
    "division_features",
    "division_logit",
]

#: Features of a division hypothesis (mother m at t, daughters a, b at t + 1), in column order. Lengths are
#: over the motion scale or the mother's size, and changes are unsigned: mitosis brightens and shrinks
#: HeLa nuclei but dims and swells SIM+ ones, so only the size of a change carries across cell lines.
DIVISION_FEATURES = (
    "split",  # 1: daughter a already continues the mother's track; 0: the mother's track ended
    "asymmetry",  # distance mother -> daughters' midpoint over half their separation (0: symmetric), <= 3
    "reach_ratio",  # smaller over larger mother-daughter distance
    "offset_size",  # distance mother -> daughters' midpoint over the mother's recent diameter, <= 3
    "log_near_reach_sigma",  # log(smaller mother-daughter distance / motion sigma)
    "daughter_area_ratio",  # |log(area_a / area_b)|
    "daughters_over_mother_area",  # log((area_a + area_b) / area_m)
    "mother_area_change",  # |log(area_m / mother's recent median area)|
    "daughter_area_change",  # |log(mean daughter area / mother's recent median area)|
    "has_intensity",  # 1 when intensities are known
    "mother_intensity_change",  # |log(I_m / mother's recent median intensity)|
    "daughter_intensity_change",  # smaller of the daughters' |log(I_d / mother's recent median intensity)|
    "daughter_intensity_ratio",  # |log(I_a / I_b)|
    "mother_history",  # log(1 + frames of the mother's track before m, up to 10)
    "daughter_branch",  # log(frames the shorter daughter branch lives, up to 10)
    "border",  # mother's distance to the edge of the field of view over the spacing, up to 2
)
_FAR = 3.0  # asymmetry cap: beyond it every hypothesis looks equally wrong


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``log(a / b)``, 0 where either is unknown (NaN) or not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(a / b)
    return np.where(np.isfinite(ratio), ratio, 0.0)


def division_features(
    scene: Scene,
    state: LinkState,
    mother: np.ndarray,
    daughter_a: np.ndarray,
    daughter_b: np.ndarray,
    split: np.ndarray | bool,
) -> np.ndarray:
    """Features of division hypotheses (see :data:`DIVISION_FEATURES`).

    Parameters
    ----------
    scene : Scene
    state : LinkState
        The links so far (the mother's history, the daughters' branches).
    mother, daughter_a, daughter_b : numpy.ndarray of int, shape (H,)
        Node ids; daughters one frame after the mother.
    split : numpy.ndarray of bool, shape (H,), or bool
        Whether daughter ``a`` already continues the mother's track.

    Returns
    -------
    numpy.ndarray, shape (H, F)
    """
    mother = np.asarray(mother, np.int64)
    a = np.asarray(daughter_a, np.int64)
    b = np.asarray(daughter_b, np.int64)
    h = len(mother)
    split = np.broadcast_to(np.asarray(split, np.float64), (h,))
    config = scene.config
    spacing = max(float(config.spacing), 1e-6)
    sigma = max(float(config.motion.sigma), 1e-6)
    origin, pa, pb = scene.yx[mother], scene.yx[a], scene.yx[b]
    separation = np.linalg.norm(pa - pb, axis=1)
    reach = np.stack([np.linalg.norm(pa - origin, axis=1), np.linalg.norm(pb - origin, axis=1)])
    far, near = reach.max(axis=0), reach.min(axis=0)
    midpoint_offset = np.linalg.norm(0.5 * (pa + pb) - origin, axis=1)
    asymmetry = np.minimum(midpoint_offset / np.maximum(0.5 * separation, 1e-9), _FAR)
    area = scene.area
    area_history = history_median(area, state, mother)
    size = 2.0 * np.sqrt(np.where(np.isfinite(area_history), area_history, area[mother]) / np.pi)
    features = [
        split,
        asymmetry,
        near / np.maximum(far, 1e-9),
        np.minimum(midpoint_offset / size, _FAR),
        np.log(np.maximum(near, 0.1 * sigma) / sigma),
        np.abs(np.log(area[a] / area[b])),
        np.log((area[a] + area[b]) / area[mother]),
        np.abs(_log_ratio(area[mother], area_history)),
        np.abs(_log_ratio(0.5 * (area[a] + area[b]), area_history)),
    ]
    if scene.intensity is not None:
        intensity = scene.intensity
        reference = history_median(intensity, state, mother)
        features += [
            np.ones(h),
            np.abs(_log_ratio(intensity[mother], reference)),
            np.minimum(
                np.abs(_log_ratio(intensity[a], reference)), np.abs(_log_ratio(intensity[b], reference))
            ),
            np.abs(np.log(intensity[a] / intensity[b])),
        ]
    else:
        features += [np.zeros(h)] * 4
    features += [
        np.log1p(history_length(state, mother)),
        np.log(np.minimum(branch_length(state, a), branch_length(state, b))),
        np.minimum(scene.border_distance(origin) / spacing, 2.0),
    ]
    return np.column_stack(features) if h else np.zeros((0, len(DIVISION_FEATURES)))


def division_logit(
    scene: Scene,
    state: LinkState,
    mother: np.ndarray,
    daughter_a: np.ndarray,
    daughter_b: np.ndarray,
    split: np.ndarray | bool,
    model: EventClassifier | None = None,
) -> np.ndarray:
    """Log-odds that each hypothesis is a division (``-inf`` beyond ``division.max_distance``).

    The classifier's log-odds plus ``division.bias``, plus ``division.mitosis_bonus`` times the mitosis
    score (the larger of the mother's and the daughters' mean) when the detections carry a
    ``mitosis_score`` column.

    Parameters
    ----------
    scene, state, mother, daughter_a, daughter_b, split
        As for :func:`division_features`.
    model : EventClassifier, optional
        The division classifier; the shipped one if omitted.

    Returns
    -------
    numpy.ndarray, shape (H,)
    """
    mother = np.asarray(mother, np.int64)
    if len(mother) == 0:
        return np.zeros(0)
    model = model if model is not None else load_division_model()
    model.check_features(DIVISION_FEATURES, "python benchmarks/event_models.py division train")
    config = scene.config.division
    logit = model.logit(division_features(scene, state, mother, daughter_a, daughter_b, split)) + config.bias
    if scene.mitosis is not None:
        daughters = 0.5 * (scene.mitosis[daughter_a] + scene.mitosis[daughter_b])
        logit = logit + config.mitosis_bonus * np.maximum(scene.mitosis[mother], daughters)
    origin = scene.yx[mother]
    reach = np.maximum(
        np.linalg.norm(scene.yx[daughter_a] - origin, axis=1),
        np.linalg.norm(scene.yx[daughter_b] - origin, axis=1),
    )
    return np.where(reach <= float(config.max_distance), logit, -np.inf)


def division_cost(scene: Scene, logit: np.ndarray, second_daughter: np.ndarray) -> np.ndarray:
    """Cost of linking a second daughter to its mother: its birth cost minus ``weight`` times the log-odds.

    Parameters
    ----------
    scene : Scene
    logit : numpy.ndarray, shape (H,)
        Division log-odds (:func:`division_logit`).
    second_daughter : numpy.ndarray of int, shape (H,)
        The daughter that would otherwise start a new track.

    Returns
    -------
    numpy.ndarray, shape (H,)
        ``inf`` where the log-odds are ``-inf``.
    """
    birth = scene.end_cost(scene.yx[np.asarray(second_daughter, np.int64)])
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(logit), birth - scene.config.division.weight * logit, np.inf)
