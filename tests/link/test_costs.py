"""Link-cost bounds over every possible filter response."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrack.link import LinkerConfig
from celltrack.link.costs import Scene


@pytest.mark.parametrize("seed", range(4))
def test_cost_bounds_hold_for_any_responses(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 30
    table = pd.DataFrame(
        {
            "frame": np.repeat([0, 1], n),
            "label": np.arange(1, 2 * n + 1),
            "y": rng.uniform(0, 200, 2 * n),
            "x": rng.uniform(0, 200, 2 * n),
            "area": rng.uniform(100, 600, 2 * n),
        }
    )
    # A low cue cap makes the shift of a source's cues (its coupling to the other candidates) matter.
    config = LinkerConfig(diameter=20.0, max_cue_penalty=0.05).resolve(table)
    scene = Scene.build(table, config, frame_shape=(200, 200))
    source = rng.integers(0, n, 120)
    target = rng.integers(n, 2 * n, 120)
    squared = np.sum((scene.yx[target] - scene.yx[source]) ** 2, axis=1)
    lower, upper = scene.link_cost_bounds(source, target, squared, 1)
    assert np.all(lower <= upper)
    for response in (np.zeros(120), np.ones(120), np.full(120, np.nan)):
        cost = scene.link_cost(source, target, squared, 1, response)
        assert np.all(cost >= lower - 1e-9) and np.all(cost <= upper + 1e-9)
    for _ in range(50):
        response = rng.uniform(0, 1, 120)
        response[rng.random(120) < 0.2] = np.nan
        cost = scene.link_cost(source, target, squared, 1, response)
        assert np.all(cost >= lower - 1e-9) and np.all(cost <= upper + 1e-9)
    # The bounds are reached: all-best responses give the lower bound of a source's best candidate.
    assert np.isclose(scene.link_cost(source, target, squared, 1, np.ones(120)), lower).any()
