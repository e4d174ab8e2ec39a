"""The event classifier: fitting, probabilities, the movie's own event rate, weights on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from celltrack.models.events import EventClassifier, load_division_model, load_join_model


def separable(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    x = np.column_stack([rng.normal(2.0 * y, 1.0), rng.normal(0.0, 1.0, n)])
    return x, y


def test_fit_learns_the_informative_feature_and_calibrated_odds() -> None:
    x, y = separable()
    model = EventClassifier.fit(x, y, ("signal", "noise"), hidden=0, l2=1e-3)
    weight = model.weights[0][:, 0] / model.scale
    assert weight[0] > 1.5 and abs(weight[1]) < 0.3
    p = model.probability(x)
    assert abs(p.mean() - y.mean()) < 0.02  # log-loss fits are calibrated on their training rows
    assert model.prior == pytest.approx(y.mean())
    with_hidden = EventClassifier.fit(x, y, ("signal", "noise"), hidden=4)
    assert np.mean((with_hidden.probability(x) > 0.5) == y) > 0.8


def test_rate_shift_follows_the_event_rate_of_the_data_at_hand() -> None:
    x, y = separable(2000, seed=1)
    model = EventClassifier.fit(x, y, ("signal", "noise"), hidden=0)
    none = x[y == 0]  # a movie without events (GT detections have no gaps)
    shift, rate = model.rate_shift(model.logit(none))
    assert rate < 0.1 and shift < -1.0
    alike, rate_alike = model.rate_shift(model.logit(x))  # one like the training data
    assert abs(rate_alike - model.prior) < 0.05 and abs(alike) < 0.3
    # a handful of candidates cannot move the rate far from the training rate
    _, few = model.rate_shift(model.logit(none[:2]))
    assert few > 0.5 * model.prior


def test_weights_round_trip_and_bad_files_are_named(tmp_path: Path) -> None:
    x, y = separable()
    model = EventClassifier.fit(x, y, ("signal", "noise"), hidden=3, provenance={"command": "test"})
    path = model.save(tmp_path / "w" / "weights.json")
    loaded = EventClassifier.load(path)
    np.testing.assert_allclose(loaded.logit(x), model.logit(x))
    assert loaded.prior == model.prior and loaded.provenance["command"] == "test"
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        EventClassifier.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}), encoding="utf-8")
    with pytest.raises(ValueError, match="other.json: not a celltrack event classifier"):
        EventClassifier.load(tmp_path / "other.json")
    with pytest.raises(ValueError, match="weights not found"):
        EventClassifier.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match=r"features must have shape \(N, 2\)"):
        model.logit(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="retrain it with make-one"):
        model.check_features(("a", "b"), "make-one")


def test_the_shipped_models_load_and_say_how_they_were_made() -> None:
    from celltrack.link.divisions import DIVISION_FEATURES
    from celltrack.link.joins import JOIN_FEATURES

    for model, features in ((load_division_model(), DIVISION_FEATURES), (load_join_model(), JOIN_FEATURES)):
        model.check_features(features, "-")
        assert model.provenance["command"].startswith("python benchmarks/event_models.py")
        assert {"HeLa 01 (seed 0)", "SIM+ 01 (seed 0)"} <= set(model.provenance["trained_on"])
