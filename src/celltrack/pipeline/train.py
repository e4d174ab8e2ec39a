"""Training data from CTC folders, and the training runs behind ``celltrack train``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from celltrack.io.annotations import ctc_seg_frames

logger = logging.getLogger(__name__)


@dataclass
class SegmentationData:
    """Image/mask pairs of one or more CTC sequences, with their provenance."""

    pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    diameters: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    held_out: dict[str, list[int]] = field(default_factory=dict)
    dataset_diameters: dict[str, float] = field(default_factory=dict)


def segmentation_pairs(seq_dirs: Sequence[str | Path], hold_out_frames: int = 0) -> SegmentationData:
    """Training pairs from CTC sequence folders (``NN`` with ``NN_GT/SEG`` and/or ``NN_ST/SEG`` beside it).

    Parameters
    ----------
    seq_dirs : sequence of path
        CTC sequence folders.
    hold_out_frames : int
        The first frames of every sequence kept out of training (for honest evaluation).

    Returns
    -------
    SegmentationData
    """
    from celltrack.models import estimate_nucleus_diameter

    data = SegmentationData()
    for seq_dir in seq_dirs:
        seq_dir = Path(seq_dir)
        images, masks = ctc_seg_frames(seq_dir)
        name = f"{seq_dir.parent.name}/{seq_dir.name}"
        data.held_out[name] = [t for t in masks if t < hold_out_frames]
        diameters = []
        first = len(data.pairs)
        for t, read_mask in masks.items():
            if t < hold_out_frames:
                continue
            mask = read_mask()
            data.pairs.append((images[t], mask))
            data.names.append(f"{name}/t{t:03d}")
            diameters.append(estimate_nucleus_diameter(mask))
        if not diameters:
            raise ValueError(f"{seq_dir}: every SEG frame is held out; lower --hold-out-frames")
        diameter = float(np.median(diameters))
        data.dataset_diameters[name] = round(diameter, 2)
        data.diameters += [diameter] * (len(data.pairs) - first)
    return data


def synthetic_pairs(count: int, seed: int = 0) -> SegmentationData:
    """Pairs from ``count`` synthetic movies (a few frames each) of the package's own generator."""
    from celltrack.models import estimate_nucleus_diameter
    from celltrack.synthetic import generate_movie

    data = SegmentationData()
    for i in range(count):
        movie = generate_movie(frames=4, height=256, width=256, nuclei=40, seed=seed + i)
        for t in range(len(movie.images)):
            data.pairs.append((movie.images[t], movie.labels[t].astype(np.int32)))
            data.names.append(f"synthetic/{seed + i}/t{t:03d}")
        diameter = float(np.median([estimate_nucleus_diameter(m) for _, m in data.pairs[-4:]]))
        data.diameters += [diameter] * len(movie.images)
    return data


def train_segnet_from_folders(
    seq_dirs: Sequence[str | Path],
    out: str | Path,
    hold_out_frames: int = 0,
    synthetic: int = 0,
    overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """``celltrack train segnet``: read CTC training data, train a SegNet ensemble, save the model folder."""
    from celltrack.io import check_output
    from celltrack.models import SegNetTrainingConfig, train_segnet

    check_output(out, overwrite)
    config = SegNetTrainingConfig.model_validate(overrides or {})
    data = segmentation_pairs(seq_dirs, hold_out_frames)
    if synthetic:
        extra = synthetic_pairs(synthetic, seed=config.seed)
        data.pairs += extra.pairs
        data.diameters += extra.diameters
        data.names += extra.names
    logger.info("training SegNet on %d frames (%s)", len(data.pairs), data.dataset_diameters)
    provenance = {
        "datasets": [str(Path(d)) for d in seq_dirs],
        "held_out": data.held_out,
        "dataset_diameters_px": data.dataset_diameters,
        "synthetic_movies": synthetic,
        "n_pairs": len(data.pairs),
        "command": "celltrack train segnet",
    }
    model = train_segnet(data.pairs, config, pair_diameters=data.diameters, provenance=provenance)
    return model.save(out, overwrite=overwrite)


def train_panoptic_from_folders(
    data_paths: Sequence[str | Path],
    out: str | Path,
    *,
    hold_out_frames: int = 0,
    exclude_splits: Sequence[str] = (),
    synthetic: int = 0,
    overrides: dict[str, Any] | None = None,
    init: str | Path | None = None,
    resume: bool = False,
    checkpoint_dir: str | Path | None = None,
    overwrite: bool = False,
    command: str = "celltrack train segnet",
) -> Path:
    """``celltrack train segnet``: train the default (panoptic) SegNet on annotated images and save it.

    Parameters
    ----------
    data_paths : sequence of path
        ``images/`` + ``labels/`` folders, CTC sequence folders or CTC dataset folders, in any mix.
    out : path
        Model folder to create (written atomically at the end).
    hold_out_frames : int
        First frames of every CTC sequence kept out of training.
    exclude_splits : sequence of str
        Manifest ``source_split`` values left out of image folders (e.g. ``test``).
    synthetic : int
        Synthetic movies from the built-in generator to add (source ``synthetic``).
    overrides : dict, optional
        :class:`~celltrack.models.panoptic_training.PanopticTrainingConfig` fields.
    init : path, optional
        A panoptic model folder to start from (fine-tuning).
    resume : bool
        Continue the run whose checkpoint is in ``checkpoint_dir``.
    checkpoint_dir : path, optional
        Default ``OUT.checkpoint`` beside ``out``.
    overwrite : bool
        Replace an existing ``out``.
    command : str
        The command line, recorded in the model folder.
    """
    from celltrack.io import check_output
    from celltrack.io.annotations import AnnotatedImage, read_annotations
    from celltrack.models.panoptic import PanopticSegNet
    from celltrack.models.panoptic_training import PanopticSegNetTrainer, PanopticTrainingConfig

    check_output(out, overwrite)
    config = PanopticTrainingConfig.model_validate(overrides or {})
    model = PanopticSegNet.load(init, device=config.device) if init is not None else None
    images = read_annotations(data_paths, hold_out_frames=hold_out_frames, exclude_splits=exclude_splits)
    if synthetic:
        extra = synthetic_pairs(synthetic, seed=config.seed)
        images += [AnnotatedImage(image, mask, "synthetic", name)
                   for (image, mask), name in zip(extra.pairs, extra.names, strict=True)]
    if not images:
        raise ValueError("no annotated images to train on; pass --data folders")
    sources = sorted({i.source for i in images})
    unknown = sorted(set(config.source_weights) - set(sources))
    if unknown:
        raise ValueError(
            f"--source-weight names {', '.join(unknown)}, which is not among the sources read "
            f"({', '.join(sources)})"
        )
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else Path(f"{out}.checkpoint")
    provenance = {
        "paths": [str(Path(p)) for p in data_paths],
        "sources": {s: sum(1 for i in images if i.source == s) for s in sources},
        "hold_out_frames": hold_out_frames,
        "exclude_splits": list(exclude_splits),
        "synthetic_movies": synthetic,
        "init": str(init) if init is not None else None,
        "command": command,
    }
    logger.info("training SegNet on %d images from %s", len(images), provenance["sources"])
    trainer = PanopticSegNetTrainer(config)
    network = trainer.fit(
        images, init=model, checkpoint_dir=checkpoint_dir, resume=resume, provenance=provenance
    )
    return network.save(out, overwrite=overwrite)


def train_recognet_from_folders(
    seq_dirs: Sequence[str | Path],
    out: str | Path,
    hold_out_frames: int = 0,
    overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
    identities: int = 256,
    *,
    pretrain_dirs: Sequence[str | Path] = (),
    pretrain_overrides: dict[str, Any] | None = None,
    model_diameter: float | None = None,
    checkpoint_dir: str | Path | None = None,
    initial: str | Path | None = None,
    command: str = "celltrack train recognet",
) -> Path:
    """``celltrack train recognet``: crops around GT TRA markers → identity, embedding and state heads.

    Parameters
    ----------
    seq_dirs : sequence of path
        CTC sequence folders, each with ``NN_GT/TRA`` beside it.
    out : path
        Model folder to create.
    hold_out_frames : int
        Accepted for symmetry with SegNet and ignored: the crop dataset keeps its own frame-block
        train/validation/test split, which already holds out whole blocks of frames.
    overrides : dict, optional
        :class:`~celltrack.models.recognet.RecogNetTrainingConfig` fields (``epochs``, ``seed``, …).
    overwrite : bool
        Replace an existing ``out``.
    identities : int
        Identity classes, taken from the longest GT tracks.
    pretrain_dirs : sequence of path
        nuclei-seg folders (:mod:`celltrack.io.nuclei_seg`): the trunk is first pre-trained on every
        nucleus there (:func:`~celltrack.models.recognet_pretrain.pretrain_recognet`), then fine-tuned on
        the tracks of ``seq_dirs``.
    pretrain_overrides : dict, optional
        :class:`~celltrack.models.recognet_pretrain.PretrainConfig` fields (``steps``, ``network``, …).
    model_diameter : float, optional
        Nucleus diameter (px) every image and movie is rescaled to (16 with ``pretrain_dirs``); None: the
        movies' native scale (the study's model).
    checkpoint_dir : path, optional
        Folder for resumable checkpoints (``pretrain.pt``, ``finetune.pt``) and the pre-trained model
        folder (``pretrained/``); a re-run with the same options continues where an interrupted one stopped.
    initial : path, optional
        Model folder to fine-tune from instead of pre-training (e.g. a pre-trained model).
    command : str
        The command line, recorded in the model folder.

    Returns
    -------
    pathlib.Path
        The model folder. With ``max_seconds`` unset, the same data, overrides and thread count give
        bit-identical weights.
    """
    from celltrack.io import check_output
    from celltrack.models.recognet import RecogNet, RecogNetTrainer, RecogNetTrainingConfig
    from celltrack.models.recognet_data import CropDatasetConfig, build_crop_dataset_from_ctc

    check_output(out, overwrite)
    if hold_out_frames:
        logger.info("RecogNet uses its own frame-block test split; --hold-out-frames is ignored")
    if pretrain_dirs and initial is not None:
        raise ValueError("give either --pretrain (pre-train here) or --init (an already trained model)")
    checkpoints = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if checkpoints is not None:
        checkpoints.mkdir(parents=True, exist_ok=True)
    data = dict(overrides or {})
    network = dict(data.pop("network", {}) or {})
    network["n_identities"] = identities
    start_model = None
    if pretrain_dirs:
        diameter = 16.0 if model_diameter is None else model_diameter
        start_model = pretrain_from_folders(
            pretrain_dirs,
            pretrain_overrides,
            diameter,
            checkpoints / "pretrain.pt" if checkpoints is not None else None,
        )
        if checkpoints is not None:
            # The pre-trained model alone: it has never seen a tracked movie (an honest baseline).
            start_model.save(checkpoints / "pretrained", overwrite=True)
        network.update(crop_size=start_model.config.crop_size, channels=start_model.config.channels)
    elif initial is not None:
        start_model = RecogNet.load(initial)
        network.update(crop_size=start_model.config.crop_size, channels=start_model.config.channels)
    if start_model is not None:
        model_diameter = start_model.config.nucleus_diameter
        network["dropout"] = start_model.config.dropout
    config = RecogNetTrainingConfig.model_validate({**data, "network": network})
    crop_config = CropDatasetConfig(
        crop_size=config.network.crop_size,
        model_diameter=model_diameter,
        seed=config.seed,
        **(
            {}
            if start_model is None
            else {
                "background_percentile": start_model.config.background_percentile,
                "high_percentile": start_model.config.high_percentile,
            }
        ),
    )
    dataset = build_crop_dataset_from_ctc([Path(d) for d in seq_dirs], crop_config, n_identities=identities)
    logger.info("training RecogNet on %s", dataset.summary())
    provenance = {
        "datasets": [f"{Path(d).parent.name}/{Path(d).name}" for d in seq_dirs],
        "pretrain": [str(Path(d)) for d in pretrain_dirs],
        "initial": str(initial) if initial is not None else None,
        "command": command,
    }
    model = RecogNetTrainer(config).fit(
        dataset,
        provenance=provenance,
        initial=start_model,
        checkpoint=checkpoints / "finetune.pt" if checkpoints is not None else None,
    )
    return model.save(out, overwrite=overwrite)


def pretrain_from_folders(
    roots: Sequence[str | Path],
    overrides: dict[str, Any] | None,
    model_diameter: float,
    checkpoint: Path | None = None,
) -> Any:
    """Self-supervised pre-training on every nucleus of nuclei-seg folders; returns the RecogNet."""
    from celltrack.io.nuclei_seg import iter_labelled_images
    from celltrack.models.recognet_pretrain import (
        NucleusCropsConfig,
        PretrainConfig,
        build_nucleus_crops,
        pretrain_recognet,
    )

    config = PretrainConfig.model_validate(overrides or {})
    crop_config = NucleusCropsConfig(
        model_diameter=model_diameter,
        stored_size=_stored_size(config.network.crop_size, config.augmentation.scale_range[1]),
    )
    crops = build_nucleus_crops(iter_labelled_images(list(roots)), crop_config)
    logger.info("pre-training RecogNet on %s", crops.summary())
    provenance = {"pretrain": [str(Path(r)) for r in roots], "command": "celltrack train recognet --pretrain"}
    return pretrain_recognet(crops, config, checkpoint=checkpoint, provenance=provenance)


def _stored_size(crop_size: int, max_zoom: float) -> int:
    """Stored crop side that keeps any rotation of a ``max_zoom``-times wider view inside real pixels."""
    side = int(np.ceil(crop_size * max_zoom * np.sqrt(2))) + 8
    return side + side % 2
