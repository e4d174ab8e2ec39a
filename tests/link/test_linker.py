"""Tests for celltrack.link.Linker: API, validation, appearance, edge cases, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from celltrack.graph import TrackGraph
from celltrack.link import Linker, LinkerConfig, link_hungarian, link_tracks, measure_scene
from celltrack.synthetic import drifting_nuclei, static_nuclei, two_crossing_nuclei

# The crossing scene moves its nuclei 10 px per frame; give the motion model that physical scale instead of
# letting it measure a scene of two cells, and no velocity (two frames carry none anyway).
CROSSING_MOTION = {"sigma": 5.0, "reach": 30.0, "velocity_weight": 0.0}


@pytest.fixture(scope="module")
def crossing():
    return two_crossing_nuclei(frames=2, height=64, seed=0)


def test_crossing_nuclei_need_appearance(crossing, detections_of, labels_per_track) -> None:
    detections = detections_of(crossing.labels)
    frames = list(crossing.images)
    with_frames = link_tracks(detections, frames, motion=CROSSING_MOTION)
    assert len(with_frames.edges) == 2
    assert (labels_per_track(with_frames) == 1).all(), "the linker with appearance swapped identities"
    # Without the correlation filters, the same scene swaps: position alone points the wrong way.
    motion_only = link_tracks(detections, None, motion=CROSSING_MOTION)
    assert (labels_per_track(motion_only) == 2).all()
    no_filters = link_tracks(detections, frames, motion=CROSSING_MOTION, appearance={"weight": 0.0})
    assert (labels_per_track(no_filters) == 2).all()
    assert (labels_per_track(link_hungarian(detections)) == 2).all()


def test_node_ids_are_row_positions_and_columns_kept(detections_of) -> None:
    movie = drifting_nuclei(velocity=(1.0, 1.5), n=4, frames=5, seed=3)
    detections = detections_of(movie.labels).sample(frac=1.0, random_state=0)
    detections.index = detections.index + 1000  # any index: node ids must be row positions
    detections["mitosis_score"] = 0.0
    detections["note"] = "x"
    graph = Linker().link(detections, list(movie.images))
    assert isinstance(graph, TrackGraph)
    assert graph.nodes.index.tolist() == list(range(len(detections)))
    assert graph.nodes["label"].tolist() == detections["label"].tolist()
    assert {"mitosis_score", "note"} <= set(graph.nodes.columns)
    # every link joins the same nucleus in consecutive frames
    src, dst = graph.edges["source"], graph.edges["target"]
    assert (graph.nodes.loc[src, "label"].to_numpy() == graph.nodes.loc[dst, "label"].to_numpy()).all()
    assert len(graph.edges) == len(detections) - detections["label"].nunique()


def test_linking_is_deterministic(detections_of) -> None:
    movie = drifting_nuclei(velocity=(0.5, 2.0), n=6, frames=6, seed=1)
    detections = detections_of(movie.labels)
    first = link_tracks(detections, list(movie.images))
    second = link_tracks(detections, list(movie.images))
    pd.testing.assert_frame_equal(first.edges, second.edges)


def test_single_frame_and_no_detections(detections_of) -> None:
    movie = static_nuclei(n=3, frames=1)
    detections = detections_of(movie.labels)
    for frames in (None, list(movie.images)):
        graph = link_tracks(detections, frames)
        assert len(graph.nodes) == 3 and len(graph.edges) == 0
    empty = detections.iloc[:0]
    for frames in (None, list(movie.images)):
        graph = link_tracks(empty, frames)
        assert len(graph.nodes) == 0 and len(graph.edges) == 0


def test_empty_frame_mid_movie_is_bridged(detections_of) -> None:
    # Away from the border: there a vanishing nucleus has more likely left, and a join needs more evidence.
    movie = static_nuclei(n=3, frames=6, seed=2, height=160, width=160, border_margin=40.0)
    detections = detections_of(movie.labels)
    detections = detections[detections["frame"] != 3].reset_index(drop=True)
    for frames in (None, list(movie.images)):
        graph = link_tracks(detections, frames, frame_shape=movie.labels.shape[1:])
        src, dst = graph.edges["source"], graph.edges["target"]
        same = graph.nodes.loc[src, "label"].to_numpy() == graph.nodes.loc[dst, "label"].to_numpy()
        assert same.all()
        # each nucleus is one lineage: every node but the first of each label has a predecessor
        assert len(graph.edges) == len(detections) - 3
        gaps = graph.nodes.loc[dst, "frame"].to_numpy() - graph.nodes.loc[src, "frame"].to_numpy()
        assert sorted(set(gaps.tolist())) == [1, 2]


def test_progress_wrapper_sees_every_frame(detections_of) -> None:
    movie = static_nuclei(n=2, frames=4)
    seen: list[int] = []

    def progress(frames):
        for t in frames:
            seen.append(t)
            yield t

    Linker().link(detections_of(movie.labels), progress=progress)
    assert seen == [0, 1, 2, 3]


def test_resolve_fills_every_auto_field(detections_of) -> None:
    movie = drifting_nuclei(velocity=(2.0, 2.0), n=5, frames=6, seed=0)
    detections = detections_of(movie.labels)
    config = LinkerConfig()
    assert not config.is_resolved
    resolved = Linker(config).resolve(detections, list(movie.images))
    assert resolved.is_resolved
    stats = measure_scene(detections)
    assert resolved.diameter == pytest.approx(stats.diameter)
    assert 12 < resolved.diameter < 25  # radius_mean 9 px
    # rigid drift: steps are perfectly persistent
    assert resolved.motion.velocity_weight == pytest.approx(1.0, abs=0.05)
    assert resolved.motion.reach >= resolved.diameter
    assert resolved.intensity.sigma >= 0.1
    # resolving again changes nothing, and the record round-trips through JSON
    assert resolved.resolve(detections) == resolved
    assert LinkerConfig.model_validate_json(resolved.model_dump_json()) == resolved
    explicit = LinkerConfig(diameter=30.0, motion={"sigma": 4.0}).resolve(detections)
    assert explicit.diameter == 30.0 and explicit.motion.sigma == 4.0
    # Filters bin the frames once nuclei are 40 px or larger, so that they stay at least 20 px across.
    assert resolved.appearance.downsample == 1 and explicit.appearance.downsample == 1
    assert LinkerConfig(diameter=49.0).resolve(detections).appearance.downsample == 2
    with pytest.raises(ValidationError, match="positive"):
        LinkerConfig(appearance={"downsample": 0})


def test_measure_scene_pairs_only_consecutive_frames() -> None:
    # Frames 0, 1 and 3 (frame 2 missing), rows out of order: only the 0 -> 1 pairs are measured.
    table = pd.DataFrame(
        {
            "frame": [3, 0, 1, 0, 1, 3],
            "y": [50.0, 10.0, 12.0, 40.0, 41.0, 80.0],
            "x": [50.0, 10.0, 10.0, 40.0, 40.0, 80.0],
            "area": [100.0] * 6,
        }
    )
    stats = measure_scene(table)
    assert stats.n_pairs == 2
    assert stats.diameter == pytest.approx(2 * np.sqrt(100 / np.pi))
    empty = measure_scene(table.iloc[:0])
    assert empty.n_pairs == 0 and empty.step_p90 is None and empty.persistence == 0.0


def test_config_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        LinkerConfig(motion={"sigmaa": 3.0})
    with pytest.raises(ValidationError):
        link_tracks(pd.DataFrame(columns=["frame", "label", "y", "x", "area"]), wrong=1)


def test_input_validation(detections_of) -> None:
    movie = static_nuclei(n=2, frames=3)
    detections = detections_of(movie.labels)
    with pytest.raises(ValueError, match="lack columns"):
        link_tracks(detections.drop(columns=["area"]))
    with pytest.raises(TypeError, match="DataFrame"):
        link_tracks(detections.to_numpy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frames has 2 images"):
        link_tracks(detections, list(movie.images[:2]))
    bad = detections.copy()
    bad.loc[0, "y"] = np.nan
    with pytest.raises(ValueError, match="'y'"):
        link_tracks(bad)
    with pytest.raises(TypeError, match="LinkerConfig"):
        Linker(config={"motion": {}})  # type: ignore[arg-type]


@pytest.mark.parametrize("centring", ["candidate", "predicted"])
def test_both_window_placements_link_drifting_nuclei(centring: str, detections_of, labels_per_track) -> None:
    movie = drifting_nuclei(velocity=(1.0, -2.0), n=5, frames=6, seed=6)
    detections = detections_of(movie.labels)
    graph = link_tracks(detections, list(movie.images), device="cpu", appearance={"centring": centring})
    assert (labels_per_track(graph) == 1).all()
    assert len(graph.edges) == len(detections) - detections["label"].nunique()


def test_given_intensities_are_used_without_frames(detections_of) -> None:
    movie = static_nuclei(n=3, frames=4, seed=1)
    detections = detections_of(movie.labels, movie.images.astype(np.float64) - 100.0)
    assert "mean_intensity" in detections.columns
    resolved = Linker().resolve(detections)
    assert resolved.intensity.sigma >= 0.1
    graph = link_tracks(detections)
    assert len(graph.edges) == len(detections) - 3
