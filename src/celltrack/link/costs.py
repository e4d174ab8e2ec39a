"""Cost terms shared by the frame-to-frame pass and the global pass.

All costs are dimensionless negative log-likelihoods. The unit that ties them together is the *gate*: the
motion cost of a displacement equal to ``motion.reach``. Birth plus death in the interior of the field of
view costs exactly one gate, so a link is only ever made when it is more plausible than ending one track
and starting another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrack.link.config import LinkerConfig, positive_intensity

logger = logging.getLogger(__name__)

__all__ = ["Scene", "motion_cost"]


def motion_cost(squared_distance: np.ndarray, sigma: float | np.ndarray, dof: float) -> np.ndarray:
    """2-D Student-t negative log-likelihood of a displacement (0 at zero displacement).

    Parameters
    ----------
    squared_distance : numpy.ndarray
        Squared displacement from the predicted position (px**2), any shape.
    sigma : float or numpy.ndarray
        Per-axis displacement scale (px), broadcast against ``squared_distance``.
    dof : float
        Degrees of freedom (large: Gaussian ``d**2 / (2 sigma**2)``).

    Returns
    -------
    numpy.ndarray
        Same shape as ``squared_distance``.
    """
    return 0.5 * (dof + 2.0) * np.log1p(np.asarray(squared_distance) / (dof * np.asarray(sigma) ** 2))


@dataclass
class Scene:
    """Node attributes as arrays plus the resolved configuration and derived cost scales.

    Attributes
    ----------
    config : LinkerConfig
        Resolved configuration (no ``"auto"``).
    frame : numpy.ndarray, shape (N,)
        Frame of every node (node id = row position).
    yx : numpy.ndarray, shape (N, 2)
        Centroids (px).
    area : numpy.ndarray, shape (N,)
        Areas (px), at least 1.
    intensity : numpy.ndarray or None, shape (N,)
        Mean intensity above background (floored to stay positive), if known.
    mitosis : numpy.ndarray or None, shape (N,)
        Per-detection mitosis score in [0, 1], if given.
    fov : numpy.ndarray, shape (4,)
        Field of view ``(y_min, x_min, y_max, x_max)`` (px): the image, or the detections' bounding box.
    gate : float
        Motion cost of a displacement of ``motion.reach``; birth + death in the interior.
    """

    config: LinkerConfig
    frame: np.ndarray
    yx: np.ndarray
    area: np.ndarray
    intensity: np.ndarray | None
    mitosis: np.ndarray | None
    fov: np.ndarray
    gate: float

    @classmethod
    def build(
        cls, detections: pd.DataFrame, config: LinkerConfig, frame_shape: tuple[int, int] | None = None
    ) -> Scene:
        """Arrays from a detections table (index already reset) and a resolved config.

        The field of view is the image (``frame_shape``) when known and ``birth_death.field_of_view`` is
        ``"frames"``; otherwise the bounding box of all detections grown by half a diameter (the centroid
        of a nucleus touching the image edge lies about a radius inside it).
        """
        yx = detections[["y", "x"]].to_numpy(np.float64)
        if frame_shape is not None and config.birth_death.field_of_view == "frames":
            fov = np.array([0.0, 0.0, frame_shape[0] - 1.0, frame_shape[1] - 1.0])
        elif len(yx):
            radius = 0.5 * float(config.diameter)
            fov = np.r_[yx.min(axis=0) - radius, yx.max(axis=0) + radius]
        else:
            fov = np.zeros(4, np.float64)
        intensity = None
        if "mean_intensity" in detections.columns:
            intensity = positive_intensity(detections["mean_intensity"].to_numpy(np.float64))
        mitosis = None
        if "mitosis_score" in detections.columns:
            mitosis = np.clip(detections["mitosis_score"].to_numpy(np.float64), 0.0, 1.0)
        motion = config.motion
        gate = float(motion_cost(np.float64(motion.reach) ** 2, motion.sigma, motion.dof))
        return cls(
            config=config,
            frame=detections["frame"].to_numpy(np.int64),
            yx=yx,
            area=np.maximum(detections["area"].to_numpy(np.float64), 1.0),
            intensity=intensity,
            mitosis=mitosis,
            fov=fov,
            gate=gate,
        )

    def border_distance(self, yx: np.ndarray) -> np.ndarray:
        """Distance (px) of positions (K, 2) to the edge of the field of view (0 outside it)."""
        yx = np.asarray(yx, np.float64).reshape(-1, 2)
        inner = np.minimum(yx - self.fov[:2], self.fov[2:] - yx)
        return np.maximum(inner.min(axis=1), 0.0)

    def end_cost(self, yx: np.ndarray, margin: float | None = None) -> np.ndarray:
        """Cost of a track starting or ending at positions (K, 2).

        Half a gate in the interior; ``border_factor`` times that at the edge of the field of view, rising
        linearly to the interior value at ``margin`` (px; ``birth_death.border_margin`` by default).
        """
        settings = self.config.birth_death
        margin = max(float(settings.border_margin if margin is None else margin), 1e-9)
        ramp = np.clip(self.border_distance(yx) / margin, 0.0, 1.0)
        factor = settings.border_factor + (1.0 - settings.border_factor) * ramp
        return 0.5 * self.gate * factor

    def appearance_cost(self, response: np.ndarray) -> np.ndarray:
        """Cost (negative: bonus) of filter responses relative to the neutral response; NaN costs 0."""
        appearance = self.config.appearance
        response = np.asarray(response, np.float64)
        cost = appearance.weight * self.gate * (appearance.neutral_response - response)
        return np.where(np.isnan(response), 0.0, cost)

    def change_cost(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Size- and intensity-change cost between node ids ``source`` and ``target`` (same shape).

        Each term is ``weight * log(1 + log(ratio)**2 / (2 sigma**2))``: quadratic for small changes,
        only logarithmic for large ones (segmentation slips). Both fade out toward the border of the field
        of view, where nuclei are cut off by the image edge.
        """
        cost = np.zeros(np.shape(source))
        size, intensity = self.config.size, self.config.intensity
        if size.weight > 0:
            ratio = np.log(self.area[target] / self.area[source])
            cost = cost + size.weight * np.log1p(ratio**2 / (2.0 * float(size.sigma) ** 2))
        if intensity.weight > 0 and self.intensity is not None:
            ratio = np.log(self.intensity[target] / self.intensity[source])
            cost = cost + intensity.weight * np.log1p(ratio**2 / (2.0 * float(intensity.sigma) ** 2))
        margin = max(float(self.config.birth_death.border_margin), 1e-9)
        border = np.minimum(self.border_distance(self.yx[source]), self.border_distance(self.yx[target]))
        return cost * np.clip(border / margin, 0.0, 1.0)

    def link_cost(
        self,
        source: np.ndarray,
        target: np.ndarray,
        squared_distance: np.ndarray,
        frames_apart: np.ndarray | int,
        response: np.ndarray | None = None,
    ) -> np.ndarray:
        """Full cost of linking nodes ``source`` to ``target`` (arrays of equal shape).

        Motion cost plus the size, intensity and appearance terms ("cues"). The cues of every source are
        shifted down together until its best candidate's cue cost is at most ``max_cue_penalty`` gates: a
        nucleus entering mitosis changes shape, brightness and texture all at once, and that must not make
        it end, while the differences between its candidates (which one looks like it) are kept whole.
        """
        cues = self.change_cost(source, target)
        if response is not None:
            cues = cues + self.appearance_cost(response)
        source = np.asarray(source, np.int64)
        if len(source):
            _, group = np.unique(source, return_inverse=True)
            best = np.full(group.max() + 1, np.inf)
            np.minimum.at(best, group, cues)
            excess = np.maximum(best - self.config.max_cue_penalty * self.gate, 0.0)
            cues = cues - excess[group]
        return self.link_motion_cost(squared_distance, frames_apart) + cues

    def link_cost_bounds(
        self,
        source: np.ndarray,
        target: np.ndarray,
        squared_distance: np.ndarray,
        frames_apart: np.ndarray | int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest :meth:`link_cost` of each pair over every possible filter response.

        A response is in [0, 1] or missing (NaN), and the bounds hold for any responses of all pairs
        together: through the cue shift, a pair's cost also depends on the responses of its source's
        other candidates (it falls when they rise), which the bounds take at their extremes.

        Returns
        -------
        lower, upper : numpy.ndarray, shape (P,)
        """
        appearance = self.config.appearance
        change = self.change_cost(source, target)
        best = appearance.weight * self.gate * (appearance.neutral_response - 1.0)
        worst = appearance.weight * self.gate * appearance.neutral_response
        low_cue, high_cue = change + min(best, 0.0), change + max(worst, 0.0)
        source = np.asarray(source, np.int64)
        if len(source):
            _, group = np.unique(source, return_inverse=True)
            penalty = self.config.max_cue_penalty * self.gate
            # The shift is ``max(min(cues) - penalty, 0)``: smallest when the other candidates' cues are low.
            low_others, high_others = _min_of_others(low_cue, group), _min_of_others(high_cue, group)
            low_cue = low_cue - np.maximum(np.minimum(low_cue, high_others) - penalty, 0.0)
            high_cue = high_cue - np.maximum(np.minimum(high_cue, low_others) - penalty, 0.0)
        motion = self.link_motion_cost(squared_distance, frames_apart)
        return motion + low_cue, motion + high_cue

    def link_motion_cost(self, squared_distance: np.ndarray, frames_apart: np.ndarray | int) -> np.ndarray:
        """Motion cost of a displacement over ``frames_apart`` frames (random-walk scale ``sigma * sqrt``)."""
        motion = self.config.motion
        scale = motion.sigma * np.sqrt(np.maximum(np.asarray(frames_apart, np.float64), 1.0))
        return motion_cost(squared_distance, scale, motion.dof)


def _min_of_others(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """For each element, the minimum of ``values`` over the other elements of its group (inf if alone)."""
    order = np.lexsort((values, group))
    sorted_group, sorted_values = group[order], values[order]
    first = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    n_groups = int(group.max()) + 1
    smallest = np.full(n_groups, np.inf)
    second = np.full(n_groups, np.inf)
    smallest[sorted_group[first]] = sorted_values[first]
    has_second = first + 1 < len(order)
    has_second[has_second] = sorted_group[first[has_second] + 1] == sorted_group[first[has_second]]
    second[sorted_group[first[has_second]]] = sorted_values[first[has_second] + 1]
    holder = np.full(n_groups, -1)
    holder[sorted_group[first]] = order[first]
    return np.where(holder[group] == np.arange(len(values)), second[group], smallest[group])
