"""The same code on CUDA when a GPU is present (skipped otherwise)."""

import numpy as np
import pytest
import torch

from celltrack.cf import FilterBank
from celltrack.features import RawExtractor
from celltrack.link import Linker
from celltrack.synthetic import drifting_nuclei, generate_movie

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_filters_give_the_same_displacements_on_cuda_and_cpu():
    movie = drifting_nuclei(velocity=(1.5, -1.0), n=4, frames=2, seed=1)
    centres = np.array([[r[2], r[3]] for r in movie.centroids if r[0] == 0])
    results = {}
    for device in ("cpu", "cuda"):
        extractor = RawExtractor(device=device)
        bank = FilterBank.train(extractor.extract_windows(movie.images[0], centres, 32), centres=centres,
                                layer_weights=(1.0,))
        detection = bank.detect(extractor.extract_windows(movie.images[1], centres, 32), centres)
        results[device] = detection.displacement
    np.testing.assert_allclose(results["cpu"], results["cuda"], atol=1e-3)


def test_linker_on_cuda_matches_cpu():
    import pandas as pd

    from celltrack.graph import measure_detections

    movie = generate_movie(frames=5, height=128, width=128, nuclei=10, seed=2)
    table = pd.concat([measure_detections(movie.labels[t], t) for t in range(5)], ignore_index=True)
    cpu = Linker().link(table, movie.images, device="cpu")
    gpu = Linker().link(table, movie.images, device="cuda")
    assert cpu.edges.equals(gpu.edges)
