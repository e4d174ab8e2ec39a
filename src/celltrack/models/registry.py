"""Segmentation models by name or folder: the shipped ``default`` (PanopticSegNet) and ``study`` (SegNet)."""

from __future__ import annotations

from pathlib import Path

import torch

from celltrack.io.model_folder import read_model_config
from celltrack.models import panoptic, segnet

#: Shipped segmentation models: name -> model folder.
SHIPPED_SEGMENTATION_MODELS: dict[str, Path] = {
    "default": panoptic.DEFAULT_PANOPTIC_PATH,
    "study": segnet.DEFAULT_SEGNET_PATH,
}

SegmentationModel = panoptic.PanopticSegNet | segnet.SegNet


def segmentation_model_path(model: str | Path | None) -> Path:
    """The folder behind a model name (``default``, ``study``), a folder path, or None (= ``default``)."""
    if model is None:
        return SHIPPED_SEGMENTATION_MODELS["default"]
    path = Path(model)
    if not path.exists() and str(model) in SHIPPED_SEGMENTATION_MODELS:
        return SHIPPED_SEGMENTATION_MODELS[str(model)]
    return path


def load_segmentation_model(model: str | Path | None = None, device: str | torch.device = "cpu"
                            ) -> SegmentationModel:
    """Load a segmentation model of either architecture.

    Parameters
    ----------
    model : str or pathlib.Path, optional
        ``"default"`` (None), ``"study"`` or a model folder written by ``celltrack train segnet``.
    device : str or torch.device

    Raises
    ------
    ValueError
        A folder that is missing, broken or holds another kind of network (one line naming the fix).
    """
    path = segmentation_model_path(model)
    architecture = read_model_config(path).get("architecture")
    if architecture == panoptic.ARCHITECTURE:
        return panoptic.PanopticSegNet.load(path, device=device)
    if architecture == segnet.ARCHITECTURE:
        return segnet.SegNet.load(path, device=device)
    raise ValueError(
        f"{path}: holds a '{architecture}' model, not a segmentation model; pass 'default', 'study' or a "
        "folder written by `celltrack train segnet`"
    )
