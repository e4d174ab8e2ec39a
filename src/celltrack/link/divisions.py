"""Division plausibility: the cost of a mother at frame t splitting into two daughters at t + 1.

The geometry is scale-free: the asymmetry ``rho`` is the distance from the mother's last position to the
daughters' midpoint divided by half the daughters' separation, so it reads the same on 10x HeLa and on
large SIM+ nuclei (daughters on opposite sides at equal distance: ``rho = 0``; one daughter on top of the
mother and the other beside it: ``rho = 1``). Mitosis evidence lowers the cost: a ``mitosis_score`` column,
or mother/daughters brighter than the mother's recent history.
"""

from __future__ import annotations

import logging

import numpy as np

from celltrack.link.costs import Scene

logger = logging.getLogger(__name__)

__all__ = ["division_cost", "mitosis_evidence"]


def mitosis_evidence(
    scene: Scene, mother: np.ndarray, daughter_a: np.ndarray, daughter_b: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """Evidence in [0, 1] that a mother is in mitosis.

    Parameters
    ----------
    scene : Scene
    mother, daughter_a, daughter_b : numpy.ndarray of int, shape (H,)
        Node ids of each division hypothesis.
    reference : numpy.ndarray, shape (H,)
        The mother's typical intensity before mitosis (median of its recent history; NaN if unknown).

    Returns
    -------
    numpy.ndarray, shape (H,)
        Largest of the available cues: mitosis scores (mother, or the daughters' mean), and the smaller of
        the two daughters' intensity changes ``|log(intensity / reference)|``, graded from 0 at one
        ``intensity.sigma`` to 1 at ``division.intensity_change`` sigmas.
    """
    evidence = np.zeros(len(mother), np.float64)
    if scene.mitosis is not None:
        daughters = 0.5 * (scene.mitosis[daughter_a] + scene.mitosis[daughter_b])
        evidence = np.maximum(evidence, np.maximum(scene.mitosis[mother], daughters))
    if scene.intensity is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            ref = np.where(reference > 0, reference, np.nan)
            # Mitosis changes a nucleus' brightness (condensed chromatin is brighter in most markers, but
            # not all: SIM+ daughters are dimmer), so count a change either way, in both daughters: a
            # neighbour continuing beside an entering or fragmenting cell keeps its brightness.
            change = np.minimum(
                np.abs(np.log(scene.intensity[daughter_a] / ref)),
                np.abs(np.log(scene.intensity[daughter_b] / ref)),
            )
            sigma = float(scene.config.intensity.sigma)
            threshold = scene.config.division.intensity_change
            graded = (change - sigma) / max((threshold - 1.0) * sigma, 1e-9)
        evidence = np.maximum(evidence, np.clip(np.nan_to_num(graded, nan=0.0), 0.0, 1.0))
    return evidence


def division_cost(
    scene: Scene,
    mother: np.ndarray,
    daughter_a: np.ndarray,
    daughter_b: np.ndarray,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Cost of each division hypothesis (``inf`` when the geometry is impossible).

    Parameters
    ----------
    scene : Scene
    mother, daughter_a, daughter_b : numpy.ndarray of int, shape (H,)
        Node ids; daughters one frame after the mother.
    reference : numpy.ndarray, shape (H,), optional
        Mother's pre-mitotic intensity (see :func:`mitosis_evidence`).

    Returns
    -------
    numpy.ndarray, shape (H,)
        ``gate * (base + asymmetry * rho**2 + size * log(1 + log(area ratio)**2) - mitosis_bonus *
        evidence)``.
    """
    mother = np.asarray(mother, np.int64)
    daughter_a = np.asarray(daughter_a, np.int64)
    daughter_b = np.asarray(daughter_b, np.int64)
    if len(mother) == 0:
        return np.zeros(0, np.float64)
    config = scene.config.division
    origin = scene.yx[mother]
    pa, pb = scene.yx[daughter_a], scene.yx[daughter_b]
    separation = np.linalg.norm(pa - pb, axis=1)
    reach_a = np.linalg.norm(pa - origin, axis=1)
    reach_b = np.linalg.norm(pb - origin, axis=1)
    midpoint_offset = np.linalg.norm(0.5 * (pa + pb) - origin, axis=1)
    rho = midpoint_offset / np.maximum(0.5 * separation, 1e-9)
    size_ratio = np.log(scene.area[daughter_a] / scene.area[daughter_b])
    if reference is None:
        reference = np.full(len(mother), np.nan)
    evidence = mitosis_evidence(scene, mother, daughter_a, daughter_b, reference)
    cost = scene.gate * (
        config.base
        + config.asymmetry * rho**2
        + config.size * np.log1p(size_ratio**2)
        - config.mitosis_bonus * evidence
    )
    diameter = float(scene.config.diameter)
    max_distance = float(config.max_distance)
    possible = (
        (rho <= config.max_asymmetry)
        & (separation >= config.min_separation * diameter)
        & (reach_a <= max_distance)
        & (reach_b <= max_distance)
    )
    return np.where(possible, cost, np.inf)
