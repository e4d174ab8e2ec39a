"""Evidence that a segment end and a later segment start are one nucleus (gap closing, segment joining).

The frame-to-frame pass leaves segments; a segment that ends may continue as a segment that starts up to
``gaps.max_gap + 1`` frames later. Whether it does depends on more than the distance: a nucleus missed
by the detector for a frame has a long track before the gap and after it, keeps its size and brightness,
and is usually away from the border; two different objects that each show for a frame or two at the
border (cells poking into the field) have short tracks, are cut off by the edge, and are best left apart.
:func:`join_features` describes each candidate by such scale-free quantities, and a small classifier
(:class:`celltrack.models.events.EventClassifier`, shipped weights trained on HeLa 01, SIM+ 01 and
synthetic movies with detections dropped at random to stand for a detector's misses; see
``benchmarks/event_models.py``) turns them into a probability.

A join costs what ending a segment and starting one cost in the interior of the field of view, minus
``gaps.weight`` times its log-odds (plus the correlation-filter appearance term when responses were
recorded): in the interior a join is made when it is more likely than not, and it competes with divisions
on the same scale. Near the border, where ending and starting cost less (cells leave and enter there), it
needs correspondingly more evidence: the border enters through the linker's one border model
(``birth_death``), not through the classifier, whose training misses are dropped anywhere. How common
joins are differs by orders of magnitude between movies (none with ground-truth detections, a few percent
of nuclei from a detector), so the rate the log-odds assume is re-estimated on each movie's own
candidates (:meth:`~celltrack.models.events.EventClassifier.rate_shift`).
"""

from __future__ import annotations

import numpy as np

from celltrack.link.costs import Scene
from celltrack.link.state import LinkState, branch_length, history_length
from celltrack.models.events import EventClassifier, load_join_model

__all__ = ["JOIN_FEATURES", "join_features", "join_logit"]

#: Features of a join candidate (end e at frame t, start s at t + g), in column order.
JOIN_FEATURES = (
    "missed_frames",  # g - 1: frames without a detection between them
    "motion",  # Student-t cost of the displacement from e's prediction over g frames (nats)
    "area_change",  # |log(area_s / area_e)| in units of the measured frame-to-frame size noise
    "has_intensity",  # 1 when intensities are known
    "intensity_change",  # |log(I_s / I_e)| in units of the measured frame-to-frame intensity noise
    "end_history",  # log(1 + frames of e's track before e, up to 10)
    "start_branch",  # log(frames s's branch lives from s, up to 10)
    "shorter_side",  # the smaller of the two: two short pieces are rarely one broken track
    "end_size",  # log(area_e / median detection area)
    "start_size",  # log(area_s / median detection area)
)


def join_features(
    scene: Scene,
    state: LinkState,
    ends: np.ndarray,
    starts: np.ndarray,
    steps: np.ndarray,
    squared_distance: np.ndarray,
) -> np.ndarray:
    """Features of join candidates (see :data:`JOIN_FEATURES`).

    Parameters
    ----------
    scene : Scene
    state : LinkState
        The links so far (the tracks before ``ends`` and after ``starts``).
    ends, starts : numpy.ndarray of int, shape (P,)
        Node ids of each candidate's end and start.
    steps : numpy.ndarray of int, shape (P,)
        Frames from end to start (1: consecutive).
    squared_distance : numpy.ndarray, shape (P,)
        Squared distance (px**2) from the end's predicted position to the start.

    Returns
    -------
    numpy.ndarray, shape (P, F)
    """
    ends = np.asarray(ends, np.int64)
    starts = np.asarray(starts, np.int64)
    p = len(ends)
    if p == 0:
        return np.zeros((0, len(JOIN_FEATURES)))
    config = scene.config
    steps = np.asarray(steps, np.float64)
    before = np.log1p(history_length(state, ends))
    after = np.log(branch_length(state, starts))
    typical_area = float(np.median(scene.area))
    area_change = np.abs(np.log(scene.area[starts] / scene.area[ends])) / max(float(config.size.sigma), 1e-6)
    if scene.intensity is not None:
        ratio = np.abs(np.log(scene.intensity[starts] / scene.intensity[ends]))
        intensity = [np.ones(p), ratio / max(float(config.intensity.sigma), 1e-6)]
    else:
        intensity = [np.zeros(p), np.zeros(p)]
    return np.column_stack(
        [
            steps - 1.0,
            scene.link_motion_cost(squared_distance, steps),
            area_change,
            *intensity,
            before,
            after,
            np.minimum(before, after),
            np.log(scene.area[ends] / typical_area),
            np.log(scene.area[starts] / typical_area),
        ]
    )


def join_logit(
    scene: Scene,
    state: LinkState,
    ends: np.ndarray,
    starts: np.ndarray,
    steps: np.ndarray,
    squared_distance: np.ndarray,
    model: EventClassifier | None = None,
) -> np.ndarray:
    """Log-odds that each end and start are one nucleus (see :func:`join_features` for the arguments).

    Parameters
    ----------
    model : EventClassifier, optional
        The join classifier; the shipped one if omitted.

    Returns
    -------
    numpy.ndarray, shape (P,)
    """
    if len(np.asarray(ends)) == 0:
        return np.zeros(0)
    model = model if model is not None else load_join_model()
    model.check_features(JOIN_FEATURES, "python benchmarks/event_models.py join train")
    return model.logit(join_features(scene, state, ends, starts, steps, squared_distance))
