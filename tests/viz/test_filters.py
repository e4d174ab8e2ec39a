"""show-filters: conv kernels of the networks and correlation filters of a cf-track run."""

import numpy as np
import pytest
import torch

from celltrack.cf import FilterBank
from celltrack.cli.main import main
from celltrack.models import SegNet, SegNetConfig
from celltrack.viz.filters import conv_kernels, correlation_filters, filters_figure


def test_conv_kernels_one_panel_per_spatial_layer_of_the_first_member():
    torch.manual_seed(0)
    model = SegNet(SegNetConfig(channels=(4, 4, 4, 4, 4), n_members=2))
    panels = conv_kernels(model, "SegNet")
    assert len(panels) == 5  # the 1x1 head is not shown
    assert all(p.filters.shape == (4, 3, 3) for p in panels)
    first = model.members[0].convs[0].weight.detach().numpy()[:, 0]
    np.testing.assert_allclose(panels[0].filters, first)


def test_correlation_filters_of_a_few_cells():
    rng = np.random.default_rng(0)
    windows = torch.as_tensor(rng.normal(size=(3, 2, 24, 24)), dtype=torch.float32)
    arrays = FilterBank.train([windows], layer_weights=(1.0,)).to_numpy() | {"labels": np.array([5, 6, 7])}
    panels = correlation_filters(arrays, cells=2)
    assert len(panels) == 1 and panels[0].filters.shape == (2, 24, 24)
    assert "cells 5, 6" in panels[0].title
    with pytest.raises(ValueError, match="numerator"):
        correlation_filters({"window_shape": np.array([4, 4])})


def test_figure_and_cli(tmp_path, capsys):
    with pytest.raises(ValueError, match="nothing to show"):
        filters_figure([])
    windows = torch.ones((2, 1, 16, 16)) + torch.rand((2, 1, 16, 16))
    np.savez(tmp_path / "filters.npz", **FilterBank.train([windows], layer_weights=(1.0,)).to_numpy())
    out = tmp_path / "filters.png"
    assert main(["show-filters", "segnet", str(tmp_path), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["show-filters", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")]) == 2
