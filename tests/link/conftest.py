"""Helpers for the linking tests: detections of synthetic movies and lineage checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from celltrack.graph import TrackGraph, measure_detections


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def movie_detections(labels: np.ndarray, images: np.ndarray | None = None) -> pd.DataFrame:
    """Detections of a (T, Y, X) label movie; ``label`` is the ground-truth track label."""
    tables = [
        measure_detections(frame, t, None if images is None else images[t]) for t, frame in enumerate(labels)
    ]
    return pd.concat(tables, ignore_index=True)


def track_labels(graph: TrackGraph) -> pd.Series:
    """Number of distinct ground-truth labels in each CTC track (1 everywhere = no identity swap)."""
    assignment = graph.tracks()
    return graph.nodes.assign(track=assignment.node_track).groupby("track")["label"].nunique()


def lineage_edges(graph: TrackGraph) -> set[tuple[int, int]]:
    """Edges as (source label, target label) pairs between different labels (divisions, gap errors)."""
    nodes = graph.nodes
    pairs = zip(
        nodes.loc[graph.edges["source"], "label"].to_numpy(),
        nodes.loc[graph.edges["target"], "label"].to_numpy(),
        strict=True,
    )
    return {(int(a), int(b)) for a, b in pairs if a != b}


@pytest.fixture
def detections_of():
    """:func:`movie_detections` as a fixture (test modules cannot import conftest)."""
    return movie_detections


@pytest.fixture
def labels_per_track():
    """:func:`track_labels` as a fixture."""
    return track_labels


@pytest.fixture
def cross_label_edges():
    """:func:`lineage_edges` as a fixture."""
    return lineage_edges
