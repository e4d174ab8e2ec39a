"""RecogNet: a CNN that tells nuclei apart — identity logits, an embedding and a cell-state head.

The study's network takes a 1×40×40 crop centred on a nucleus: six 3×3 convolutions with ReLU, three max
pools, a 1024-unit dense layer, dropout and a softmax over 256 nucleus identities. RecogNet keeps that
trunk and adds two heads on the dense layer:

* ``embedding``: an L2-normalised vector trained with a supervised contrastive loss (crops of one nucleus
  within a few frames close, other nuclei far). Unlike the identity classes, which only mean something in
  the training movie, it generalises to nuclei never seen;
* ``state``: interphase / mitosis / other (see :mod:`celltrack.models.recognet_data`), for the linker to
  expect divisions and reject false detections.

Design choices that matter for the correlation-filter features (:mod:`celltrack.features.recognet`):

* pools are 3×3 with stride 2 and padding 1, so pooled pixel ``i`` is centred on input pixel ``2 i``; the
  study's 2×2 pools centre it on ``2 i + 0.5``, a half-pixel offset per pool that upsampling turns into a
  shift toward the origin;
* the dataset normalisation is one scalar mean and one scalar scale (not a per-pixel mean image, which
  would imprint a fixed centred pattern into every window), so the trunk runs on full frames as well.

Width: the default conv widths are (16, 16, 32, 32, 64, 64), narrower than a typical 2015 network, so the
trunk runs on a full HeLa frame in about a second on one CPU core and the float16 model folder stays
about 4 MB (the 64·5·5 → 1024 dense layer holds most of the weights).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.nn import functional as nnf
from tqdm import tqdm

from celltrack.io.model_folder import load_network, save_model_folder
from celltrack.models.recognet_data import (
    MITOSIS,
    OTHER,
    STATE_NAMES,
    TEST,
    TRAIN,
    VALIDATION,
    CropDataset,
    assign_identities,
    build_crop_dataset,
    concat_datasets,
    crop_nuclei,
)
from celltrack.models.training import (
    BestCheckpoint,
    EpochLog,
    TrainingRunSettings,
    _celltrack_version,
    _deterministic_algorithms,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHITECTURE",
    "DEFAULT_RECOGNET_PATH",
    "TRACKING_RECOGNET_PATH",
    "RecogNet",
    "RecogNetConfig",
    "RecogNetOutput",
    "RecogNetTrainer",
    "RecogNetTrainingConfig",
    "evaluate_recognet",
    "mitosis_scores",
    "retrieval_counts",
    "supervised_contrastive_loss",
    "train_recognet",
]

ARCHITECTURE = "recognet"
ARCHITECTURE_VERSION = 1
#: The study-mode model shipped with celltrack: 256-way identity head, cell-state head (mitosis scores);
#: see its config.json for the command that reproduces it.
DEFAULT_RECOGNET_PATH = Path(__file__).parent / "weights" / "recognet_default"
#: The model behind ``--features recognet``: trunk pre-trained self-supervised on still images of many
#: nuclei, fine-tuned on tracks (see its config.json and README.md for the command).
TRACKING_RECOGNET_PATH = Path(__file__).parent / "weights" / "recognet_tracking"
_N_POOLS = 3
_INFERENCE_BATCH = 512


class RecogNetConfig(BaseModel):
    """Architecture and input conventions of :class:`RecogNet` (lengths in pixels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    crop_size: int = Field(40, ge=8, description="Input side (px); a multiple of 8 (three stride-2 pools).")
    channels: tuple[int, ...] = Field(
        (16, 16, 32, 32, 64, 64), description="Width of the six 3×3 conv layers (a pool after every second)."
    )
    fc_width: int = Field(1024, ge=1, description="Width of the dense layer.")
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout after the dense layer (training only).")
    n_identities: int = Field(256, ge=1, description="Identity classes of the softmax head.")
    embedding_size: int = Field(64, ge=2, description="Length of the L2-normalised embedding.")
    background_percentile: float = Field(50.0, ge=0, lt=100, description="Per-frame level mapped to 0.")
    high_percentile: float = Field(99.5, gt=0, le=100, description="Per-frame level mapped to 1.")
    input_mean: float = Field(0.0, description="Training-set mean of the per-frame normalised crops.")
    input_scale: float = Field(1.0, gt=0, description="Divides the centred crops so they span about ±1.")
    nucleus_diameter: float | None = Field(
        None,
        gt=0,
        description="Nucleus diameter (px) the network was trained at (frames rescaled to it); None: the "
        "training movies' native scale.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RecogNetConfig:
        if len(self.channels) != 2 * _N_POOLS:
            raise ValueError(f"RecogNet has six conv layers; got {len(self.channels)} channel widths")
        if min(self.channels) < 1:
            raise ValueError(f"channel widths must be positive, got {self.channels}")
        if self.crop_size % (1 << _N_POOLS):
            raise ValueError(
                f"crop_size must be a multiple of 8 (three stride-2 pools), got {self.crop_size}"
            )
        if self.high_percentile <= self.background_percentile:
            raise ValueError("high_percentile must exceed background_percentile")
        return self

    @property
    def pooled_size(self) -> int:
        """Side of the last pooled map (5 for 40 px crops)."""
        return self.crop_size >> _N_POOLS

    @property
    def layer_strides(self) -> tuple[int, ...]:
        """Stride (input px per map px) of each conv layer's output: (1, 1, 2, 2, 4, 4)."""
        return tuple(1 << (i // 2) for i in range(2 * _N_POOLS))


@dataclass(frozen=True)
class RecogNetOutput:
    """What :meth:`RecogNet.forward` returns for N crops.

    Attributes
    ----------
    identity : torch.Tensor, shape (N, n_identities)
        Identity logits.
    embedding : torch.Tensor, shape (N, embedding_size)
        L2-normalised embedding.
    state : torch.Tensor, shape (N, 3)
        Cell-state logits (interphase, mitosis, other).
    """

    identity: torch.Tensor
    embedding: torch.Tensor
    state: torch.Tensor


class RecogNet(nn.Module):
    """The RecogNet network (trunk, dense layer and three heads).

    Inputs everywhere are per-frame normalised crops as returned by :meth:`crop` /
    :func:`celltrack.models.recognet_data.crop_nuclei` (background ≈ 0, nuclei ≈ 1); the network applies
    the training-set centring and scaling itself.

    Parameters
    ----------
    config : RecogNetConfig, optional
    """

    def __init__(self, config: RecogNetConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else RecogNetConfig()
        cfg = self.config
        widths = (1, *cfg.channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, padding=1) for i in range(len(cfg.channels))
        )
        self.fc = nn.Linear(cfg.channels[-1] * cfg.pooled_size**2, cfg.fc_width)
        self.dropout = nn.Dropout(cfg.dropout)
        self.identity_head = nn.Linear(cfg.fc_width, cfg.n_identities)
        self.embedding_head = nn.Linear(cfg.fc_width, cfg.embedding_size)
        self.state_head = nn.Linear(cfg.fc_width, len(STATE_NAMES))
        self.training_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ core
    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.fc.weight.device

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Training-set centring and scaling of per-frame normalised input."""
        return (x - self.config.input_mean) / self.config.input_scale

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        """3×3 max pool, stride 2, padding 1: pooled pixel ``i`` is centred on input pixel ``2 i``."""
        return nnf.max_pool2d(x, kernel_size=3, stride=2, padding=1)

    def conv_maps(
        self, x: torch.Tensor, n_layers: int | None = None, *, channels_last: bool = False
    ) -> list[torch.Tensor]:
        """Post-ReLU maps of the first ``n_layers`` conv layers for standardised input of any size.

        Parameters
        ----------
        x : torch.Tensor, shape (N, 1, Y, X)
            Standardised input (:meth:`standardise` already applied).
        n_layers : int, optional
            How many conv layers to run (all six by default).
        channels_last : bool
            Keep the maps in channels-last memory (same values, about twice as fast on CPU for inference:
            pooling and convolutions run on contiguous channel vectors).

        Returns
        -------
        list of torch.Tensor
            Layer ``l`` has shape (N, C_l, ceil(Y / s_l), ceil(X / s_l)) with stride ``s_l`` from
            :attr:`RecogNetConfig.layer_strides`; its pixel ``i`` is centred on input pixel ``s_l * i``.
        """
        n_layers = len(self.convs) if n_layers is None else n_layers
        maps = []
        h = x
        for index, conv in enumerate(self.convs[:n_layers]):
            if index and index % 2 == 0:
                h = self.pool(h)
            h = nnf.relu(conv(h), inplace=channels_last)
            if channels_last and index == 0:
                h = h.contiguous(memory_format=torch.channels_last)
            maps.append(h)
        return maps

    def embedding_and_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Dense-layer activations (after ReLU and dropout) for crops (N, 1, S, S)."""
        self._check_input(x)
        h = self.conv_maps(self.standardise(x))[-1]
        h = self.pool(h).flatten(1)
        return self.dropout(nnf.relu(self.fc(h)))

    def forward(self, x: torch.Tensor) -> RecogNetOutput:
        """All three heads for per-frame normalised crops.

        Parameters
        ----------
        x : torch.Tensor, shape (N, 1, crop_size, crop_size)

        Returns
        -------
        RecogNetOutput
        """
        dense = self.embedding_and_dense(x)
        return RecogNetOutput(
            identity=self.identity_head(dense),
            embedding=nnf.normalize(self.embedding_head(dense), dim=1),
            state=self.state_head(dense),
        )

    def _check_input(self, x: torch.Tensor) -> None:
        size = self.config.crop_size
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"RecogNet expects a torch.Tensor (N, 1, {size}, {size}), got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != size or x.shape[3] != size:
            raise ValueError(
                f"RecogNet expects crops of shape (N, 1, {size}, {size}), got {tuple(x.shape)}; "
                f"cut them with RecogNet.crop(frame, centres)"
            )

    # ------------------------------------------------------------------ batch APIs
    def crop(self, frame: np.ndarray, centres: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Crops for detections of one frame, normalised as in training; border crops are padded, not dropped.

        Parameters
        ----------
        frame : numpy.ndarray, shape (Y, X)
            Raw frame.
        centres : numpy.ndarray (N, 2) or pandas.DataFrame
            ``(y, x)`` centres (px) or a detections table with columns ``y, x``.

        Returns
        -------
        numpy.ndarray, shape (N, crop_size, crop_size), float32
        """
        return crop_nuclei(
            frame,
            centres,
            self.config.crop_size,
            background_percentile=self.config.background_percentile,
            high_percentile=self.config.high_percentile,
        )

    def _as_batch(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        tensor = torch.as_tensor(np.asarray(crops, np.float32) if isinstance(crops, np.ndarray) else crops)
        tensor = tensor.to(dtype=torch.float32, device=self.device)
        if tensor.ndim == 3:
            tensor = tensor[:, None]
        self._check_input(tensor)
        return tensor

    def _heads(self, crops: np.ndarray | torch.Tensor) -> RecogNetOutput:
        batch = self._as_batch(crops)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                outputs = [
                    self(batch[i : i + _INFERENCE_BATCH]) for i in range(0, len(batch), _INFERENCE_BATCH)
                ]
        finally:
            self.train(was_training)
        if not outputs:
            empty = batch.new_zeros
            return RecogNetOutput(
                empty((0, self.config.n_identities)), empty((0, self.config.embedding_size)), empty((0, 3))
            )
        return RecogNetOutput(
            *(torch.cat([getattr(o, k) for o in outputs]) for k in ("identity", "embedding", "state"))
        )

    def embed(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings of crops (N, S, S) or (N, 1, S, S): shape (N, embedding_size).

        Cosine similarity (a dot product) near 1 means the same nucleus; it generalises to unseen nuclei.
        """
        return self._heads(crops).embedding

    def cell_state(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Cell-state probabilities (N, 3): interphase, mitosis, other (:data:`STATE_NAMES`)."""
        return torch.softmax(self._heads(crops).state, dim=1)

    def identity_logits(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Identity logits (N, n_identities) (training-movie identities only)."""
        return self._heads(crops).identity

    # ------------------------------------------------------------------ folders
    def save(self, path: str | Path, *, weights_dtype: str = "float16", overwrite: bool = False) -> Path:
        """Write the model folder (``config.json`` + ``weights.pt``), float16 by default (about 4 MB)."""
        config = {
            "architecture_version": ARCHITECTURE_VERSION,
            "states": list(STATE_NAMES),
            "hyperparameters": self.config.model_dump(mode="json"),
            "normalisation": {
                "method": "per-frame percentiles, then training-set scalar mean and scale",
                "background_percentile": self.config.background_percentile,
                "high_percentile": self.config.high_percentile,
                "input_mean": self.config.input_mean,
                "input_scale": self.config.input_scale,
            },
            "training": self.training_info,
        }
        return save_model_folder(
            path, ARCHITECTURE, config, self.state_dict(), weights_dtype=weights_dtype, overwrite=overwrite
        )

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> RecogNet:
        """Read a RecogNet model folder; ``None`` loads the model shipped with celltrack.

        Raises
        ------
        ValueError
            Missing or broken folder, another architecture, or weights that do not fit.
        """
        path = Path(path) if path is not None else DEFAULT_RECOGNET_PATH
        model = load_network(path, ARCHITECTURE, ARCHITECTURE_VERSION, RecogNetConfig, cls)
        return model.to(device).eval()


def training_record(
    trainer: str, config: BaseModel, torch_seed: int, seconds: float, provenance: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What every RecogNet training run records in its model folder: who, how, with what, how long."""
    return {
        "trainer": trainer,
        "started_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "config": config.model_dump(mode="json"),
        "torch_seed": torch_seed,
        "data": dict(provenance or {}),
        "torch_version": torch.__version__,
        # Float reductions in the convolution kernels depend on the thread count: bit-identical weights
        # need the same count (and torch build) as this run.
        "torch_threads": torch.get_num_threads(),
        "celltrack_version": _celltrack_version(),
    }


def save_training_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write a resumable training state atomically (a crash never leaves a half-written checkpoint)."""
    partial = path.with_name(path.name + ".partial")
    torch.save(dict(state), partial)
    os.replace(partial, path)


# ---------------------------------------------------------------------------- losses
def supervised_contrastive_loss(
    embedding: torch.Tensor,
    track: torch.Tensor,
    frame: torch.Tensor,
    positive_frames: int,
    temperature: float,
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) with time-limited positives.

    Two crops are positives when they show the same track at most ``positive_frames`` apart; crops of the
    same track further apart in time are neither positives nor negatives (a nucleus changes over hours).

    Parameters
    ----------
    embedding : torch.Tensor, shape (B, E)
        L2-normalised embeddings.
    track : torch.Tensor, shape (B,), int64
        Track key of every crop; give background crops unique keys.
    frame : torch.Tensor, shape (B,), int64
    positive_frames : int
    temperature : float

    Returns
    -------
    torch.Tensor
        Scalar loss averaged over anchors that have a positive (0 if none does).
    """
    similarity = embedding @ embedding.T / temperature
    same_track = track[:, None] == track[None, :]
    near = (frame[:, None] - frame[None, :]).abs() <= positive_frames
    eye = torch.eye(len(track), dtype=torch.bool, device=embedding.device)
    positive = same_track & near & ~eye
    excluded = eye | (same_track & ~near)
    logits = similarity.masked_fill(excluded, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    n_positive = positive.sum(1)
    anchors = n_positive > 0
    if not bool(anchors.any()):
        return embedding.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(1)[anchors]) / n_positive[anchors]
    return per_anchor.mean()


# ---------------------------------------------------------------------------- training
class RecogNetTrainingConfig(TrainingRunSettings):
    """Parameters of :class:`RecogNetTrainer` (lengths in pixels, times in frames).

    A run is defined by its epochs (``epochs`` × ``steps_per_epoch`` batches, cosine learning-rate decay over
    exactly that many steps), not by wall time: with ``max_seconds=None`` (the default) the same data, config,
    torch build and thread count give bit-identical weights, as for
    :class:`~celltrack.models.training.SegNetTrainingConfig`.
    """

    model_config = ConfigDict(extra="forbid")

    network: RecogNetConfig = Field(default_factory=RecogNetConfig, description="Architecture to train.")
    epochs: int = Field(30, ge=1, description="Epoch limit (the study: 20 over a larger dataset).")
    steps_per_epoch: int | None = Field(
        None, ge=1, description="Batches per epoch; None: one pass over the training crops."
    )
    anchors_per_batch: int = Field(32, ge=1, description="Tracks per batch (P of P×K sampling).")
    crops_per_anchor: int = Field(4, ge=1, description="Crops of each track within positive_frames (K).")
    mitosis_per_batch: int = Field(12, ge=0, description="Extra mitosis crops per batch (a rare class).")
    other_per_batch: int = Field(8, ge=0, description="Extra 'other' crops per batch.")
    positive_frames: int = Field(3, ge=0, description="Max frame gap of embedding positives.")
    anchor_neighbours: int = Field(
        0,
        ge=0,
        description="Each drawn anchor brings this many of its nearest nuclei of the same frame as further "
        "anchors, so that the batch holds the neighbours it must be told apart from (hard negatives); 0: "
        "anchors drawn independently (the study's sampling).",
    )
    temperature: float = Field(0.1, gt=0, description="Contrastive temperature.")
    identity_weight: float = Field(1.0, ge=0, description="Weight of the identity cross-entropy.")
    embedding_weight: float = Field(1.0, ge=0, description="Weight of the contrastive loss.")
    state_weight: float = Field(1.0, ge=0, description="Weight of the cell-state cross-entropy.")
    max_shift: int = Field(3, ge=0, description="Random crop shift (px); at most the dataset margin.")
    intensity_scale_range: tuple[float, float] = Field((0.8, 1.25), description="Random contrast factor.")
    intensity_offset: float = Field(0.05, ge=0, description="Max random additive offset.")
    noise_std: float = Field(0.02, ge=0, description="Std of additive Gaussian noise.")
    learning_rate: float = Field(1.5e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(8, ge=1, description="Stop after this many epochs without validation improvement.")
    n_validation_batches: int = Field(4, ge=1, description="Fixed, unaugmented validation batches.")
    max_seconds: float | None = Field(
        None, gt=0, description="Optional wall-time budget (s); stopping on time makes a run irreproducible."
    )
    seed: int = Field(0, description="Seeds weights, batches, augmentation and dropout.")


@dataclass
class _Batch:
    crops: torch.Tensor  # (B, 1, S, S)
    identity: torch.Tensor  # (B,) -1 = none
    state: torch.Tensor  # (B,)
    track: torch.Tensor  # (B,)
    frame: torch.Tensor  # (B,)


class _BatchSampler:
    """P×K batches: crops of one track within ``positive_frames``, plus extra mitosis and 'other' crops."""

    def __init__(self, dataset: CropDataset, split: int, config: RecogNetTrainingConfig) -> None:
        self.dataset = dataset
        self.config = config
        in_split = dataset.split == split
        nucleus = in_split & (dataset.state != OTHER)
        self.nucleus = np.flatnonzero(nucleus)
        self.mitosis = np.flatnonzero(in_split & (dataset.state == MITOSIS))
        self.other = np.flatnonzero(in_split & (dataset.state == OTHER))
        keys = dataset.movie.astype(np.int64) * (1 << 32) + dataset.label.astype(np.int64)
        # Background crops get unique negative keys: never anyone's positive.
        self.keys = np.where(dataset.state == OTHER, -1 - np.arange(len(dataset)), keys)
        order = np.lexsort((dataset.frame[self.nucleus], self.keys[self.nucleus]))
        self.sorted_index = self.nucleus[order]
        sorted_keys = self.keys[self.sorted_index]
        self.sorted_frames = dataset.frame[self.sorted_index].astype(np.int64)
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(sorted_keys)]
        self.track_start = np.zeros(len(dataset), np.int64)
        self.track_end = np.zeros(len(dataset), np.int64)
        for s, e in zip(starts, ends, strict=True):
            self.track_start[self.sorted_index[s:e]] = s
            self.track_end[self.sorted_index[s:e]] = e
        self.size = dataset.config.crop_size
        self.margin = dataset.config.margin
        self.neighbours = (
            self._same_frame_neighbours(config.anchor_neighbours) if config.anchor_neighbours else None
        )

    def _same_frame_neighbours(self, k: int) -> np.ndarray:
        """(M, k) nearest nuclei in the same movie and frame of each split nucleus (itself if alone)."""
        from scipy.spatial import cKDTree

        data = self.dataset
        nearest = np.repeat(np.arange(len(data))[:, None], k, axis=1)
        frame_key = data.movie.astype(np.int64) * (1 << 32) + data.frame.astype(np.int64)
        order = self.nucleus[np.argsort(frame_key[self.nucleus], kind="stable")]
        keys = frame_key[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        for s, e in zip(starts, np.r_[starts[1:], len(order)], strict=True):
            rows = order[s:e]
            if len(rows) < 2:
                continue
            points = np.stack([data.y[rows], data.x[rows]], 1)
            count = min(k + 1, len(rows))
            _, index = cKDTree(points).query(points, k=count)
            found = rows[np.asarray(index).reshape(len(rows), count)[:, 1:]]
            nearest[rows, : count - 1] = found
            nearest[rows, count - 1 :] = found[:, -1:]
        return nearest

    def __bool__(self) -> bool:
        return len(self.nucleus) > 0

    def indices(self, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        if self.neighbours is None:
            anchors = self.nucleus[rng.integers(len(self.nucleus), size=cfg.anchors_per_batch)]
        else:
            group = cfg.anchor_neighbours + 1
            seeds = self.nucleus[rng.integers(len(self.nucleus), size=-(-cfg.anchors_per_batch // group))]
            grouped = np.concatenate([seeds[:, None], self.neighbours[seeds]], axis=1).ravel()
            anchors = grouped[: cfg.anchors_per_batch]
        chosen = [anchors]
        for _ in range(cfg.crops_per_anchor - 1):
            partners = np.empty_like(anchors)
            for i, a in enumerate(anchors):
                s, e = self.track_start[a], self.track_end[a]
                frames = self.sorted_frames[s:e]
                lo = s + np.searchsorted(frames, self.dataset.frame[a] - cfg.positive_frames, side="left")
                hi = s + np.searchsorted(frames, self.dataset.frame[a] + cfg.positive_frames, side="right")
                partners[i] = self.sorted_index[rng.integers(lo, hi)]
            chosen.append(partners)
        if len(self.mitosis) and cfg.mitosis_per_batch:
            chosen.append(self.mitosis[rng.integers(len(self.mitosis), size=cfg.mitosis_per_batch)])
        if len(self.other) and cfg.other_per_batch:
            chosen.append(self.other[rng.integers(len(self.other), size=cfg.other_per_batch)])
        return np.concatenate(chosen)

    def batch(self, rng: np.random.Generator, augment: bool) -> _Batch:
        cfg = self.config
        index = self.indices(rng)
        n = len(index)
        shift = min(cfg.max_shift, self.margin) if augment else 0
        offsets = self.margin + rng.integers(-shift, shift + 1, size=(n, 2))
        steps = np.arange(self.size)
        rows = offsets[:, 0:1] + steps
        cols = offsets[:, 1:2] + steps
        crops = self.dataset.crops[index[:, None, None], rows[:, :, None], cols[:, None, :]].astype(
            np.float32
        )
        if augment:
            low, high = cfg.intensity_scale_range
            crops = crops * np.exp(rng.uniform(math.log(low), math.log(high), size=(n, 1, 1))).astype(
                np.float32
            )
            crops += rng.uniform(-cfg.intensity_offset, cfg.intensity_offset, size=(n, 1, 1)).astype(
                np.float32
            )
            if cfg.noise_std > 0:
                crops += rng.normal(0, cfg.noise_std, size=crops.shape).astype(np.float32)
        return _Batch(
            crops=torch.from_numpy(np.ascontiguousarray(crops))[:, None],
            identity=torch.from_numpy(self.dataset.identity[index].astype(np.int64)),
            state=torch.from_numpy(self.dataset.state[index].astype(np.int64)),
            track=torch.from_numpy(self.keys[index]),
            frame=torch.from_numpy(self.dataset.frame[index].astype(np.int64)),
        )


DatasetLike = CropDataset | tuple[Sequence[np.ndarray] | np.ndarray, Sequence[np.ndarray] | np.ndarray, Any]


class RecogNetTrainer:
    """Train a :class:`RecogNet` on nucleus crops (identity, embedding and cell-state heads together).

    Parameters
    ----------
    config : RecogNetTrainingConfig, optional

    Attributes
    ----------
    history : list of celltrack.models.training.EpochLog
        Every epoch of the last :meth:`fit`.
    """

    def __init__(self, config: RecogNetTrainingConfig | None = None) -> None:
        self.config = config or RecogNetTrainingConfig()
        self.history: list[EpochLog] = []

    def _loss(self, model: RecogNet, batch: _Batch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        out = model(batch.crops)
        parts: dict[str, torch.Tensor] = {}
        has_identity = batch.identity >= 0
        if bool(has_identity.any()):
            parts["identity"] = nnf.cross_entropy(out.identity[has_identity], batch.identity[has_identity])
        parts["embedding"] = supervised_contrastive_loss(
            out.embedding, batch.track, batch.frame, cfg.positive_frames, cfg.temperature
        )
        parts["state"] = nnf.cross_entropy(out.state, batch.state)
        weights = {
            "identity": cfg.identity_weight,
            "embedding": cfg.embedding_weight,
            "state": cfg.state_weight,
        }
        total = sum(weights[k] * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def fit(
        self,
        dataset: CropDataset,
        *,
        provenance: Mapping[str, Any] | None = None,
        callback: Callable[[EpochLog], None] | None = None,
        initial: RecogNet | None = None,
        checkpoint: str | Path | None = None,
    ) -> RecogNet:
        """Train on ``dataset`` (its TRAIN split; VALIDATION picks the best epoch).

        Parameters
        ----------
        dataset : CropDataset
            Crops with identities assigned (:func:`~celltrack.models.recognet_data.assign_identities`).
        provenance : mapping, optional
            JSON-serialisable description of the data, stored in the model folder.
        callback : callable, optional
            Called with an :class:`~celltrack.models.training.EpochLog` after every epoch.
        initial : RecogNet, optional
            Start from these weights (e.g. :func:`~celltrack.models.recognet_pretrain.pretrain_recognet`):
            its architecture, input scaling and nucleus diameter are kept and ``config.network`` is ignored
            except for ``n_identities`` and ``dropout``.
        checkpoint : path, optional
            File written after every epoch; when it exists the run resumes from it (same config required)
            and ends with the weights of an uninterrupted run.

        Returns
        -------
        RecogNet
            In eval mode with the weights of the best validation epoch; ``training_info`` holds provenance
            and test-split scores.
        """
        cfg = self.config
        started = time.monotonic()
        if not isinstance(dataset, CropDataset):
            raise TypeError(f"RecogNetTrainer.fit expects a CropDataset, got {type(dataset).__name__}")
        crop_size = initial.config.crop_size if initial is not None else cfg.network.crop_size
        if dataset.config.crop_size != crop_size:
            raise ValueError(
                f"dataset crops are {dataset.config.crop_size} px but the network takes "
                f"{crop_size}; build the dataset with CropDatasetConfig(crop_size=...)"
            )
        n_identities = dataset.n_identities
        if n_identities == 0:
            dataset = assign_identities(dataset, cfg.network.n_identities)
            n_identities = dataset.n_identities
        if n_identities > cfg.network.n_identities:
            raise ValueError(
                f"dataset has {n_identities} identity classes but the network only {cfg.network.n_identities}"
            )
        train_sampler = _BatchSampler(dataset, TRAIN, cfg)
        if not train_sampler:
            raise ValueError("the dataset has no training nuclei; check its split fractions")
        val_sampler = _BatchSampler(dataset, VALIDATION, cfg)
        seeds = np.random.SeedSequence(cfg.seed).spawn(3)
        rng = np.random.default_rng(seeds[0])
        val_rng = np.random.default_rng(seeds[1])
        if initial is not None:
            network = initial.config.model_copy(
                update={"n_identities": cfg.network.n_identities, "dropout": cfg.network.dropout}
            )
            if (network.background_percentile, network.high_percentile) != (
                dataset.config.background_percentile,
                dataset.config.high_percentile,
            ):
                raise ValueError(
                    "the dataset's normalisation percentiles differ from the initial model's; build it with "
                    f"background_percentile={network.background_percentile}, "
                    f"high_percentile={network.high_percentile}"
                )
            if network.nucleus_diameter != dataset.config.model_diameter:
                raise ValueError(
                    f"the initial model sees nuclei at {network.nucleus_diameter} px but the dataset was cut "
                    f"at {dataset.config.model_diameter}; build it with CropDatasetConfig(model_diameter=...)"
                )
        else:
            train_crops = dataset.centre_crops()[dataset.split == TRAIN]
            mean = float(train_crops.mean())
            scale = float(np.percentile(np.abs(train_crops - mean), 99.9)) or 1.0
            network = cfg.network.model_copy(
                update={
                    "input_mean": mean,
                    "input_scale": scale,
                    "background_percentile": dataset.config.background_percentile,
                    "high_percentile": dataset.config.high_percentile,
                    "nucleus_diameter": dataset.config.model_diameter,
                }
            )
        device = torch.device(cfg.device)
        torch_seed = int(seeds[2].generate_state(1, np.uint64)[0] % (2**63))
        # Weights and dropout masks come from a forked generator: the run neither disturbs nor depends on the
        # caller's RNG state. On GPUs some kernels have no deterministic variant: warn there, do not fail.
        fork_devices = [device] if device.type == "cuda" else []
        with (
            torch.random.fork_rng(devices=fork_devices),
            _deterministic_algorithms(cfg.deterministic, warn_only=device.type != "cpu"),
        ):
            torch.manual_seed(torch_seed)
            model = RecogNet(network).to(device)
            if initial is not None:
                trunk = {k: v for k, v in initial.state_dict().items() if not k.startswith("identity_head.")}
                model.load_state_dict(trunk, strict=False)
            return self._train(
                model,
                dataset,
                train_sampler,
                val_sampler,
                rng,
                val_rng,
                started,
                provenance,
                callback,
                torch_seed,
                Path(checkpoint) if checkpoint is not None else None,
                initial.training_info if initial is not None else None,
            )

    def _train(
        self,
        model: RecogNet,
        dataset: CropDataset,
        train_sampler: _BatchSampler,
        val_sampler: _BatchSampler,
        rng: np.random.Generator,
        val_rng: np.random.Generator,
        started: float,
        provenance: Mapping[str, Any] | None,
        callback: Callable[[EpochLog], None] | None,
        torch_seed: int,
        checkpoint_path: Path | None,
        pretraining: Mapping[str, Any] | None,
    ) -> RecogNet:
        cfg = self.config
        device = model.device
        val_batches = (
            [val_sampler.batch(val_rng, augment=False) for _ in range(cfg.n_validation_batches)]
            if (val_sampler)
            else []
        )
        batch_size = len(train_sampler.indices(np.random.default_rng(0)))
        steps = cfg.steps_per_epoch or max(1, int((dataset.split == TRAIN).sum()) // batch_size)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps)
        checkpoint = BestCheckpoint(cfg.patience)
        self.history = []
        out_of_time = False
        epochs_run = 0
        elapsed_before = 0.0
        if checkpoint_path is not None and checkpoint_path.is_file():
            state = torch.load(checkpoint_path, weights_only=False)
            if state["config"] != cfg.model_dump(mode="json"):
                raise ValueError(
                    f"{checkpoint_path}: checkpoint of a different configuration; delete it or use another"
                )
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            checkpoint.best_loss, checkpoint.best_epoch = state["best_loss"], state["best_epoch"]
            checkpoint.epochs_since_best, checkpoint.state = state["epochs_since_best"], state["best_state"]
            self.history = [EpochLog(**h) for h in state["history"]]
            epochs_run, elapsed_before = state["epoch"], state["seconds"]
            logger.info("resuming RecogNet training after epoch %d from %s", epochs_run, checkpoint_path)
        bar = tqdm(
            total=cfg.epochs * steps,
            initial=epochs_run * steps,
            desc="RecogNet",
            disable=None if cfg.progress else True,
            leave=False,
        )
        try:
            for epoch in range(epochs_run + 1, cfg.epochs + 1):
                if checkpoint.should_stop:
                    break
                model.train()
                losses = []
                for _ in range(steps):
                    batch = _to(train_sampler.batch(rng, augment=True), device)
                    loss, _ = self._loss(model, batch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    losses.append(float(loss.detach()))
                    bar.update(1)
                    if cfg.max_seconds is not None and time.monotonic() - started > cfg.max_seconds:
                        out_of_time = True
                        break
                epochs_run = epoch
                train_loss = float(np.mean(losses))
                val_loss = self._validate(model, val_batches) if val_batches else train_loss
                improved = checkpoint.update(val_loss, model, epoch)
                log = EpochLog(
                    member=0,
                    epoch=epoch,
                    train_loss=train_loss,
                    validation_loss=val_loss,
                    best_validation_loss=checkpoint.best_loss,
                    improved=improved,
                    learning_rate=float(optimizer.param_groups[0]["lr"]),
                    seconds=elapsed_before + time.monotonic() - started,
                )
                self.history.append(log)
                bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}")
                logger.info(
                    "epoch %d: train %.4f val %.4f%s (%.0f s)",
                    epoch,
                    train_loss,
                    val_loss,
                    " *" if improved else "",
                    log.seconds,
                )
                if checkpoint_path is not None and not out_of_time:
                    save_training_checkpoint(
                        checkpoint_path,
                        {
                            "config": cfg.model_dump(mode="json"),
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "rng": rng.bit_generator.state,
                            "torch_rng": torch.get_rng_state(),
                            "best_loss": checkpoint.best_loss,
                            "best_epoch": checkpoint.best_epoch,
                            "epochs_since_best": checkpoint.epochs_since_best,
                            "best_state": checkpoint.state,
                            "history": [asdict(h) for h in self.history],
                            "epoch": epoch,
                            "seconds": log.seconds,
                        },
                    )
                if callback is not None:
                    callback(log)
                if checkpoint.should_stop or out_of_time:
                    break
        finally:
            bar.close()
        checkpoint.restore(model)
        model.eval()
        model.training_info = {
            **training_record(
                f"{type(self).__module__}.{type(self).__name__}",
                cfg,
                torch_seed,
                elapsed_before + time.monotonic() - started,
                provenance,
            ),
            "epochs": epochs_run,
            "best_epoch": checkpoint.best_epoch,
            "steps_per_epoch": steps,
            "batch_size": batch_size,
            "stopped": "time" if out_of_time else ("patience" if checkpoint.should_stop else "max_epochs"),
            "dataset": dataset.summary(),
            "dataset_config": dataset.config.model_dump(mode="json"),
            "history": [asdict(h) for h in self.history],
        }
        if pretraining is not None:
            model.training_info["pretraining"] = dict(pretraining)
        return model

    def _validate(self, model: RecogNet, batches: list[_Batch]) -> float:
        model.eval()
        with torch.no_grad():
            losses = [float(self._loss(model, _to(b, model.device))[0]) for b in batches]
        return float(np.mean(losses))


def _to(batch: _Batch, device: torch.device) -> _Batch:
    return _Batch(*(getattr(batch, k).to(device) for k in ("crops", "identity", "state", "track", "frame")))


def train_recognet(
    datasets: CropDataset | Sequence[DatasetLike],
    config: RecogNetTrainingConfig | None = None,
    progress: Callable[[EpochLog], None] | None = None,
    *,
    provenance: Mapping[str, Any] | None = None,
) -> RecogNet:
    """Train RecogNet from crop datasets or ``(images, markers, tracks)`` arrays.

    Parameters
    ----------
    datasets : CropDataset or sequence of (CropDataset or (images, markers, tracks))
        One dataset, or several movies: each a :class:`CropDataset` or a tuple of raw frames
        ((T, Y, X) array or sequence of (Y, X)), TRA marker images of the same shape and the
        ``label, begin, end, parent`` track table. Movies are concatenated and the
        ``network.n_identities`` longest tracks become the identity classes.
    config : RecogNetTrainingConfig, optional
    progress : callable, optional
        Called with an :class:`~celltrack.models.training.EpochLog` after every epoch.
    provenance : mapping, optional
        JSON-serialisable description of the data (paths), stored in the model folder.

    Returns
    -------
    RecogNet
        Trained model in eval mode; save it with ``model.save(folder)``.
    """
    config = config or RecogNetTrainingConfig()
    if isinstance(datasets, CropDataset):
        dataset = datasets
    else:
        parts = []
        for i, item in enumerate(datasets):
            if isinstance(item, CropDataset):
                parts.append(item)
            elif isinstance(item, tuple) and len(item) == 3:
                from celltrack.models.recognet_data import CropDatasetConfig

                crop_config = CropDatasetConfig(crop_size=config.network.crop_size, seed=config.seed)
                parts.append(build_crop_dataset(*item, crop_config, movie=f"movie{i}"))
            else:
                raise TypeError(
                    f"datasets[{i}] must be a CropDataset or an (images, markers, tracks) tuple, "
                    f"got {type(item).__name__}"
                )
        if not parts:
            raise ValueError("train_recognet needs at least one dataset")
        dataset = parts[0] if len(parts) == 1 and parts[0].n_identities else concat_datasets(parts)
    if dataset.n_identities == 0:
        dataset = assign_identities(dataset, config.network.n_identities)
    return RecogNetTrainer(config).fit(dataset, provenance=provenance, callback=progress)


# ---------------------------------------------------------------------------- per-detection scores
def mitosis_scores(
    model: RecogNet,
    frames: Sequence[np.ndarray] | np.ndarray,
    detections: pd.DataFrame,
    progress: Callable[[Any], Any] | None = None,
) -> np.ndarray:
    """RecogNet's mitosis probability of every detection (the ``mitosis_score`` the linker reads).

    Parameters
    ----------
    model : RecogNet
    frames : sequence of numpy.ndarray, each (Y, X), or numpy.ndarray (T, Y, X)
        Raw frames (lazy sequences work; only frames holding detections are read).
    detections : pandas.DataFrame
        Columns ``frame, y, x`` (any others are ignored), one row per detection.
    progress : callable, optional
        Wraps the iterable of frame numbers (e.g. a progress bar).

    Returns
    -------
    numpy.ndarray, shape (N,), float64
        Probability of the ``mitosis`` state in [0, 1], in the row order of ``detections``.
    """
    if not isinstance(detections, pd.DataFrame):
        raise TypeError(f"detections must be a pandas.DataFrame, got {type(detections).__name__}")
    missing = {"frame", "y", "x"} - set(detections.columns)
    if missing:
        raise ValueError(f"detections need columns frame, y, x; missing {sorted(missing)}")
    scores = np.zeros(len(detections), np.float64)
    if not len(detections):
        return scores
    frame_of = detections["frame"].to_numpy(np.int64)
    if frame_of.min() < 0 or frame_of.max() >= len(frames):
        raise ValueError(
            f"detections refer to frames {frame_of.min()}..{frame_of.max()} but the movie has {len(frames)}"
        )
    centres = detections[["y", "x"]].to_numpy(np.float64)
    present = np.unique(frame_of)
    for t in present if progress is None else progress(present):
        rows = np.flatnonzero(frame_of == t)
        crops = model.crop(np.asarray(frames[int(t)]), centres[rows])
        scores[rows] = model.cell_state(crops)[:, MITOSIS].double().cpu().numpy()
    return scores


# ---------------------------------------------------------------------------- evaluation
def evaluate_recognet(model: RecogNet, dataset: CropDataset, split: int = TEST) -> dict[str, float]:
    """Scores of a trained model on one split of a dataset.

    Parameters
    ----------
    model : RecogNet
    dataset : CropDataset
        Crops (identities as assigned for training, for the identity accuracy).
    split : int
        :data:`~celltrack.models.recognet_data.TEST` by default.

    Returns
    -------
    dict
        ``identity_accuracy`` (top-1 over crops of identity tracks), ``retrieval_accuracy`` (for each
        nucleus in frame t, is the nearest embedding among all nuclei of frame t+1 the same nucleus; pairs of
        frames both in the split), ``retrieval_pairs``, ``mitosis_precision``, ``mitosis_recall``,
        ``state_accuracy`` and the sample counts.
    """
    part = dataset.subset(dataset.split == split)
    crops = part.centre_crops()
    out = model._heads(crops)
    scores: dict[str, float] = {"samples": float(len(part))}
    has_identity = part.identity >= 0
    predicted = out.identity.argmax(1).cpu().numpy()
    scores["identity_samples"] = float(has_identity.sum())
    scores["identity_accuracy"] = (
        float((predicted[has_identity] == part.identity[has_identity]).mean())
        if has_identity.any()
        else math.nan
    )
    state = out.state.argmax(1).cpu().numpy()
    truth_mitosis = part.state == MITOSIS
    called = state == MITOSIS
    scores["mitosis_samples"] = float(truth_mitosis.sum())
    scores["mitosis_precision"] = (
        float((called & truth_mitosis).sum() / called.sum()) if called.any() else math.nan
    )
    scores["mitosis_recall"] = (
        float((called & truth_mitosis).sum() / truth_mitosis.sum()) if truth_mitosis.any() else math.nan
    )
    scores["state_accuracy"] = float((state == part.state).mean()) if len(part) else math.nan
    correct, pairs = retrieval_counts(out.embedding.cpu().numpy(), part)
    scores["retrieval_pairs"] = float(pairs)
    scores["retrieval_accuracy"] = correct / pairs if pairs else math.nan
    return scores


def retrieval_counts(features: np.ndarray, dataset: CropDataset) -> tuple[int, int]:
    """Next-frame retrieval: for each nucleus of frame t whose track is in frame t+1, is its nearest
    neighbour (largest dot product of ``features``) among all nuclei of frame t+1 the same track?

    Parameters
    ----------
    features : numpy.ndarray, shape (M, E)
        One row per sample of ``dataset`` (e.g. L2-normalised embeddings).
    dataset : CropDataset

    Returns
    -------
    (int, int)
        Correct retrievals and queries.
    """
    nucleus = dataset.state != OTHER
    correct = total = 0
    for movie in np.unique(dataset.movie):
        in_movie = nucleus & (dataset.movie == movie)
        frames = np.unique(dataset.frame[in_movie])
        for t in frames:
            now = np.flatnonzero(in_movie & (dataset.frame == t))
            later = np.flatnonzero(in_movie & (dataset.frame == t + 1))
            if not len(now) or not len(later):
                continue
            match = np.isin(dataset.label[now], dataset.label[later])
            if not match.any():
                continue
            queries = now[match]
            nearest = later[np.argmax(features[queries] @ features[later].T, axis=1)]
            correct += int((dataset.label[nearest] == dataset.label[queries]).sum())
            total += len(queries)
    return correct, total
