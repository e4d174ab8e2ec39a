"""A small probabilistic classifier of linking events (divisions, joins), in numpy, with shipped weights.

:class:`EventClassifier` is a one-hidden-layer perceptron (or, with no hidden units, a logistic regression)
over a handful of standardised, scale-free features. Inference is numpy only (a few microseconds per
thousand hypotheses); :meth:`EventClassifier.fit` trains it with torch (full-batch L-BFGS, L2 penalty) on
labelled hypotheses. Weights are a small JSON file: feature names, standardisation, layers, and the
provenance of the training (sources, command).

The shipped models are reproduced by ``python benchmarks/event_models.py division train`` (division,
``weights/division_default``) and ``python benchmarks/event_models.py join train`` (gap closing,
``weights/join_default``); see those folders' README files.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DIVISION_MODEL_PATH",
    "DEFAULT_JOIN_MODEL_PATH",
    "EventClassifier",
    "load_division_model",
    "load_join_model",
]

#: The division model shipped with celltrack.
DEFAULT_DIVISION_MODEL_PATH = Path(__file__).parent / "weights" / "division_default" / "weights.json"
#: The gap-closing (join) model shipped with celltrack.
DEFAULT_JOIN_MODEL_PATH = Path(__file__).parent / "weights" / "join_default" / "weights.json"
_FORMAT = "celltrack-event-classifier"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class EventClassifier:
    """Probability of an event from a feature vector: ``sigmoid(MLP(standardised features))``.

    Attributes
    ----------
    features : tuple of str
        Names of the F input features, in column order.
    mean, scale : numpy.ndarray, shape (F,)
        Standardisation: the network sees ``(x - mean) / scale``.
    weights : tuple of numpy.ndarray
        Layer matrices, ``(F, H)`` then ``(H, 1)`` (or only ``(F, 1)``: logistic regression).
    biases : tuple of numpy.ndarray
        Layer biases, ``(H,)`` then ``(1,)``.
    prior : float
        Fraction of events among the (weighted) training rows: the prior the log-odds carry.
    provenance : dict
        How the weights were made (sources, counts, command); stored with them.
    """

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    prior: float = 0.5
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.mean.shape != (n,) or self.scale.shape != (n,):
            raise ValueError(
                f"mean and scale must have shape ({n},) for {n} features, got {self.mean.shape} and "
                f"{self.scale.shape}"
            )
        if len(self.weights) != len(self.biases) or not self.weights:
            raise ValueError("weights and biases must be non-empty and of equal length")
        width = n
        for w, b in zip(self.weights, self.biases, strict=True):
            if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                raise ValueError(f"layer shapes do not chain: {w.shape} after width {width}, bias {b.shape}")
            width = w.shape[1]
        if width != 1:
            raise ValueError(f"the last layer must have one output, got {width}")
        if not 0 < self.prior < 1:
            raise ValueError(f"prior must lie strictly between 0 and 1, got {self.prior}")

    def check_features(self, expected: Sequence[str], retrain: str) -> None:
        """Raise ValueError unless the model reads the ``expected`` features (``retrain``: how to fit one)."""
        if tuple(self.features) != tuple(expected):
            raise ValueError(
                f"the model expects features {list(self.features)}, the linker computes {list(expected)}; "
                f"retrain it with {retrain}"
            )

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of the event for feature rows ``x`` of shape (N, F); returns shape (N,)."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"features must have shape (N, {len(self.features)}), got {x.shape}")
        h = (x - self.mean) / self.scale
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = np.tanh(h @ w + b)
        return (h @ self.weights[-1] + self.biases[-1])[:, 0]

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Probability of the event, shape (N,)."""
        return _sigmoid(self.logit(x))

    def rate_shift(
        self, logit: np.ndarray, pseudo_count: float = 5.0, iterations: int = 200
    ) -> tuple[float, float]:
        """The log-odds shift to the event rate of the data at hand from the training rate.

        Expectation-maximisation of the event rate among the given candidates (Saerens, Latinne and
        Decaestecker 2002): the rate is the mean of the posteriors re-weighted to it, with one
        pseudo-candidate at the training rate so that a handful of candidates cannot drive it to 0 or 1.

        Parameters
        ----------
        logit : numpy.ndarray, shape (N,)
            :meth:`logit` of every candidate of one movie.
        pseudo_count : float
            Weight of the training rate in the estimate (candidates).
        iterations : int
            Most EM steps (it stops when the rate moves less than 1e-6).

        Returns
        -------
        shift : float
            ``logit(rate) - logit(prior)``: add it to every candidate's log-odds.
        rate : float
            The estimated event rate.
        """
        logit = np.asarray(logit, np.float64)
        finite = logit[np.isfinite(logit)]
        rate = self.prior
        base = np.log(self.prior / (1.0 - self.prior))
        for _ in range(iterations):
            shift = np.log(rate / (1.0 - rate)) - base
            expected = _sigmoid(finite + shift).sum() + pseudo_count * self.prior
            updated = expected / (len(finite) + pseudo_count)
            updated = float(np.clip(updated, 1e-6, 1.0 - 1e-6))
            done = abs(updated - rate) < 1e-6
            rate = updated
            if done:
                break
        return float(np.log(rate / (1.0 - rate)) - base), rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": [w.tolist() for w in self.weights],
            "biases": [b.tolist() for b in self.biases],
            "prior": self.prior,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> EventClassifier:
        if data.get("format") != _FORMAT or data.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"{source}: not a celltrack event classifier (format {data.get('format')!r} version "
                f"{data.get('version')!r}; expected {_FORMAT!r} version {_FORMAT_VERSION})"
            )
        try:
            return cls(
                features=tuple(data["features"]),
                mean=np.asarray(data["mean"], np.float64),
                scale=np.asarray(data["scale"], np.float64),
                weights=tuple(np.asarray(w, np.float64).reshape(len(w), -1) for w in data["weights"]),
                biases=tuple(np.asarray(b, np.float64).reshape(-1) for b in data["biases"]),
                prior=float(data.get("prior", 0.5)),
                provenance=dict(data.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: malformed event classifier ({err})") from err

    def save(self, path: str | Path) -> Path:
        """Write the weights as JSON (a few kB)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> EventClassifier:
        """Read weights written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: event classifier weights not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        return cls.from_dict(data, str(path))

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        features: Sequence[str],
        hidden: int = 8,
        l2: float = 1e-3,
        seed: int = 0,
        provenance: dict[str, Any] | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> EventClassifier:
        """Train on labelled rows by full-batch L-BFGS on the mean log-loss plus an L2 penalty.

        Parameters
        ----------
        x : numpy.ndarray, shape (N, F)
            Features.
        y : numpy.ndarray, shape (N,)
            Labels in {0, 1}.
        features : sequence of str
            The F feature names.
        hidden : int
            Hidden units (0: logistic regression).
        l2 : float
            Penalty on the squared weights (not the biases), per row.
        seed : int
            Seed of the initial weights.
        provenance : dict, optional
            Stored with the weights.
        sample_weight : numpy.ndarray, shape (N,), optional
            Weight of every row in the log-loss (e.g. so that every source counts alike); ones if omitted.

        Returns
        -------
        EventClassifier
        """
        import torch

        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64).reshape(-1)
        if x.ndim != 2 or x.shape[1] != len(features) or len(y) != len(x):
            raise ValueError(
                f"x must be (N, {len(features)}) and y (N,), got {x.shape} and {y.shape}"
            )
        if len(np.unique(y)) < 2:
            raise ValueError("training needs both positive and negative examples")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.as_tensor((x - mean) / scale, dtype=torch.float64)
        targets = torch.as_tensor(y, dtype=torch.float64)
        row_weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        if row_weight.shape != y.shape or not np.all(row_weight >= 0) or row_weight.sum() <= 0:
            raise ValueError(f"sample_weight must be {y.shape} non-negative weights, got {row_weight.shape}")
        row_weight = torch.as_tensor(row_weight / row_weight.mean(), dtype=torch.float64)
        widths = [x.shape[1], *([hidden] if hidden > 0 else []), 1]
        params = []
        for fan_in, fan_out in itertools.pairwise(widths):
            w = torch.randn(fan_in, fan_out, generator=generator, dtype=torch.float64) / np.sqrt(fan_in)
            params += [w.requires_grad_(), torch.zeros(fan_out, dtype=torch.float64, requires_grad=True)]
        optimiser = torch.optim.LBFGS(
            params, max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            h = inputs
            for i in range(0, len(params) - 2, 2):
                h = torch.tanh(h @ params[i] + params[i + 1])
            out = (h @ params[-2] + params[-1])[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out, targets, weight=row_weight)
            loss = loss + l2 * sum((w**2).sum() for w in params[0::2])
            loss.backward()
            return loss

        optimiser.step(closure)
        arrays = [p.detach().numpy().copy() for p in params]
        record = {"rows": len(y), "positives": int(y.sum()), "hidden": hidden, "l2": l2, "seed": seed}
        weight = row_weight.numpy()
        return cls(
            features=tuple(features),
            mean=mean,
            scale=scale,
            weights=tuple(arrays[0::2]),
            biases=tuple(arrays[1::2]),
            prior=float(np.clip(np.sum(weight * y) / np.sum(weight), 1e-6, 1 - 1e-6)),
            provenance={**record, **(provenance or {})},
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


@cache
def load_division_model() -> EventClassifier:
    """The shipped division model (read once per process)."""
    return EventClassifier.load(DEFAULT_DIVISION_MODEL_PATH)


@cache
def load_join_model() -> EventClassifier:
    """The shipped gap-closing (join) model (read once per process)."""
    return EventClassifier.load(DEFAULT_JOIN_MODEL_PATH)
