import numpy as np
import pandas as pd
import pytest

from celltrack.graph import TrackGraph, measure_detections, relabel_frame


def _nodes(rows):
    return pd.DataFrame(rows, columns=["frame", "label", "y", "x", "area"])


def lineage_graph() -> TrackGraph:
    """Track A (frames 0-2) divides into B and C (frames 3-4); D (0-1) then a gap, reappears at 3."""
    nodes = _nodes(
        [
            (0, 1, 10, 10, 50),
            (1, 1, 11, 10, 50),
            (2, 1, 12, 10, 50),  # 0,1,2 A
            (3, 2, 8, 10, 30),
            (4, 2, 7, 10, 30),  # 3,4 B
            (3, 3, 16, 10, 30),
            (4, 3, 17, 10, 30),  # 5,6 C
            (0, 4, 40, 40, 50),
            (1, 4, 41, 40, 50),  # 7,8 D
            (3, 5, 43, 40, 50),  # 9 D after a gap
        ]
    )
    edges = pd.DataFrame({"source": [0, 1, 2, 3, 2, 5, 7, 8], "target": [1, 2, 3, 4, 5, 6, 8, 9]})
    return TrackGraph(nodes, edges)


def test_tracks_split_at_divisions_and_gaps():
    graph = lineage_graph()
    tracks = graph.tracks().tracks.set_index("label")
    assert len(tracks) == 5
    node_track = graph.tracks().node_track
    a, b, c, d, d2 = (node_track[i] for i in (0, 3, 5, 7, 9))
    assert tracks.loc[b, "parent"] == a and tracks.loc[c, "parent"] == a
    assert tracks.loc[d2, "parent"] == d  # a gap-closing link starts a child track
    assert tracks.loc[a, "begin"] == 0 and tracks.loc[a, "end"] == 2
    assert tracks.loc[d2, "begin"] == 3
    assert list(graph.divisions()) == [2]


def test_table_round_trip_preserves_edges():
    graph = lineage_graph()
    rebuilt = TrackGraph.from_table(graph.to_table())
    as_set = lambda g: set(map(tuple, g.edges[["source", "target"]].to_numpy()))  # noqa: E731
    assert as_set(rebuilt) == as_set(graph)
    pd.testing.assert_frame_equal(rebuilt.tracks().tracks, graph.tracks().tracks)


def test_napari_data_and_parent_graph():
    data, parents = lineage_graph().to_napari()
    assert data.shape == (10, 4)
    assert len(parents) == 3 and all(len(v) == 1 for v in parents.values())
    # sorted by track, then time
    assert np.all(np.diff(data[:, 0]) >= 0)


def test_ctc_round_trip_from_track_table():
    graph = lineage_graph()
    table = graph.to_table()
    detections = table[["frame", "y", "x", "area"]].assign(label=table["track_id"])
    rebuilt = TrackGraph.from_ctc(detections, graph.tracks().tracks)
    pd.testing.assert_frame_equal(rebuilt.tracks().tracks, graph.tracks().tracks)


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ({"source": [0], "target": [99]}, "unknown nodes"),
        ({"source": [1], "target": [0]}, "forward in time"),
        ({"source": [0, 2], "target": [1, 1]}, "merges"),
    ],
)
def test_invalid_edges_raise(edges, message):
    nodes = _nodes([(0, 1, 0, 0, 1), (1, 1, 0, 0, 1), (0, 2, 5, 5, 1)])
    with pytest.raises(ValueError, match=message):
        TrackGraph(nodes, pd.DataFrame(edges))


def test_missing_columns_raise():
    with pytest.raises(ValueError, match="lack columns"):
        TrackGraph(pd.DataFrame({"frame": [0]}))


def test_empty_graph():
    graph = TrackGraph(_nodes([]))
    assert len(graph.tracks().tracks) == 0 and graph.n_frames == 0


def test_measure_detections_centroids_and_areas():
    labels = np.zeros((20, 30), np.uint16)
    labels[2:6, 3:7] = 7  # non-consecutive labels are fine
    labels[10:12, 20:30] = 2
    image = np.full(labels.shape, 5.0)
    table = measure_detections(labels, 4, image)
    assert list(table["label"]) == [2, 7]
    row = table.set_index("label").loc[7]
    assert (row["y"], row["x"], row["area"], row["frame"]) == (3.5, 4.5, 16, 4)
    assert np.allclose(table["mean_intensity"], 5.0)
    assert len(measure_detections(np.zeros((5, 5), np.uint8), 0)) == 0


@pytest.mark.parametrize("bad", [np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3), np.float32)])
def test_measure_detections_rejects_bad_labels(bad):
    with pytest.raises((ValueError, TypeError)):
        measure_detections(bad, 0)


def test_measure_detections_rejects_negative_labels():
    with pytest.raises(ValueError, match="negative"):
        measure_detections(np.full((3, 3), -1, np.int32), 0)


def test_relabel_frame_maps_and_drops():
    labels = np.array([[0, 3, 3], [5, 5, 9]])
    out = relabel_frame(labels, np.array([3, 5]), np.array([100, 200]))
    assert out.tolist() == [[0, 100, 100], [200, 200, 0]]
    assert out.dtype == np.uint16
    assert relabel_frame(labels, np.array([3]), np.array([70000])).dtype == np.uint32


def test_drop_far_pieces_keeps_the_largest_piece_of_a_label_split_far_apart():
    from celltrack.graph import drop_far_pieces

    labels = np.zeros((60, 60), np.uint16)
    labels[5:15, 5:15] = 1  # a nucleus ...
    labels[40:45, 40:45] = 1  # ... and a stray piece of its label, far off
    labels[5:15, 15:25] = 2  # a touching neighbour, whole
    labels[30:40, 5:15] = 3
    labels[30:40, 10] = 0  # a nucleus cut by a thin line: its pieces stay
    labels[20:22, 40:42] = 4
    labels[20:22, 44:46] = 4  # a fragmented small marker: pieces a nucleus' radius apart stay
    cleaned, split = drop_far_pieces(labels)
    assert split[["label", "pieces", "kept_area", "dropped_area"]].to_numpy().tolist() == [[1, 2, 100, 25]]
    assert split["gap"].iloc[0] > 30
    assert (cleaned[40:45, 40:45] == 0).all() and (cleaned == 1).sum() == 100
    np.testing.assert_array_equal(cleaned[labels != 1], labels[labels != 1])
    assert labels[40, 40] == 1  # the input is not modified
    untouched, none = drop_far_pieces(cleaned)
    assert untouched is cleaned and none.empty and list(none.columns) == list(split.columns)
    assert drop_far_pieces(np.zeros((4, 4), np.uint8))[1].empty
