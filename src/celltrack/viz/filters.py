"""What the networks and the correlation filters learned (the study's Figure 4).

Pure array preparation plus one matplotlib figure (Agg canvas, no pyplot state).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


@dataclass
class FilterPanel:
    """One row of the figure: a title and a stack of small 2-D filters (K, h, w)."""

    title: str
    filters: np.ndarray


def conv_kernels(module: torch.nn.Module, name: str, max_filters: int = 16) -> list[FilterPanel]:
    """The 3×3 (or larger) convolution kernels of a network, one panel per conv layer.

    For an ensemble only the first member is shown (``members.0.``). A first-layer kernel is shown
    as it is; a deeper layer's output filter is shown through its strongest input channel, which is
    the part of the filter that decides most of its response.
    """
    # 1x1 convolutions (the fully connected head) have no spatial pattern to show
    weights = [
        (n, p.detach().cpu().float().numpy())
        for n, p in module.named_parameters()
        if p.ndim == 4 and p.shape[-1] * p.shape[-2] > 1
    ]
    if any(".members." in f".{n}" for n, _ in weights):
        weights = [(n, w) for n, w in weights if n.startswith("members.0.")]
    panels = []
    for index, (_, kernel) in enumerate(weights):
        out_channels = kernel[:max_filters]
        strongest = np.abs(out_channels).sum(axis=(2, 3)).argmax(axis=1)
        shown = out_channels[np.arange(len(out_channels)), strongest]
        panels.append(
            FilterPanel(
                f"{name} conv{index + 1} ({kernel.shape[0]}×{kernel.shape[1]}×"
                f"{kernel.shape[2]}×{kernel.shape[3]})",
                shown,
            )
        )
    return panels


def correlation_filters(
    arrays: Mapping[str, np.ndarray], cells: int = 6, lambda_rel: float = 1e-2
) -> list[FilterPanel]:
    """Spatial correlation filters of a few cells from a cf-track ``filters.npz``, one panel per layer.

    ``W = A / (B + λ·mean(B))`` is brought back to the spatial domain, summed in magnitude over
    channels and centred, so each image is the template the cell was followed with.
    """
    panels = []
    n_layers = sum(1 for key in arrays if key.startswith("numerator_"))
    if n_layers == 0:
        raise ValueError("filters.npz holds no numerator_* arrays; pass a cf-track output's filters.npz")
    shape = tuple(int(v) for v in np.asarray(arrays["window_shape"]))
    labels = np.asarray(arrays.get("labels", []))
    targets = np.asarray(arrays.get("targets", np.arange(arrays["numerator_0"].shape[0])))
    for layer in range(n_layers):
        num = np.asarray(arrays[f"numerator_{layer}"])[:cells]
        den = np.asarray(arrays[f"denominator_{layer}"])[:cells]
        lam = lambda_rel * den.mean(axis=(1, 2, 3), keepdims=True)
        spatial = np.fft.irfft2(num / (den + lam), s=shape, axes=(-2, -1))
        image = np.fft.fftshift(np.abs(spatial).sum(axis=1), axes=(-2, -1))
        names = [str(labels[t]) if len(labels) > t else str(t) for t in targets[:cells]]
        panels.append(
            FilterPanel(f"correlation filters, layer {layer + 1} (cells {', '.join(names)})", image)
        )
    return panels


def filters_figure(panels: Sequence[FilterPanel], per_row: int = 16) -> Figure:
    """One row of thumbnails per panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError("nothing to show: no convolution layers or correlation filters were found")
    columns = min(per_row, max(len(p.filters) for p in panels))
    figure = Figure(figsize=(columns * 0.8 + 0.5, len(panels) * 1.1 + 0.3), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(len(panels), columns, hspace=0.6, wspace=0.1)
    for row, panel in enumerate(panels):
        for col in range(columns):
            axis = figure.add_subplot(grid[row, col])
            axis.set_xticks([])
            axis.set_yticks([])
            if col < len(panel.filters):
                kernel = panel.filters[col]
                limit = float(np.abs(kernel).max()) or 1.0
                signed = bool((kernel < 0).any())
                axis.imshow(
                    kernel,
                    cmap="RdBu_r" if signed else "magma",
                    vmin=-limit if signed else 0,
                    vmax=limit,
                    interpolation="nearest",
                )
            else:
                axis.axis("off")
            if col == 0:
                axis.set_title(panel.title, fontsize=7, loc="left")
    return figure
