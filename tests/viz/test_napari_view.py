"""napari layer data without napari, lazy frame reading, a stand-in viewer, and the ``view`` command."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import dask.array as da
import numpy as np
import pytest

from celltrack.cli import main as cli_main
from celltrack.io import ImageSequence, open_sequence, read_track_table
from celltrack.io.export import read_result
from celltrack.viz import napari_view
from celltrack.viz.napari_view import NAPARI_INSTALL_HINT, napari_layers, show_in_napari


@pytest.fixture(scope="module")
def movie_dirs(tmp_path_factory, gt_as_result):
    """(raw movie, result folder): the ground truth of a small dividing movie copied as a result."""
    root, res = gt_as_result(tmp_path_factory.mktemp("napari") / "movie")
    return root / "01", res


class CountingSequence(ImageSequence):
    """An in-memory movie that counts frame reads."""

    def __init__(self, frames: np.ndarray) -> None:
        self.reads: list[int] = []

        def read(t: int) -> np.ndarray:
            self.reads.append(t)
            return frames[t]

        super().__init__("counting", read, frames.shape, frames.dtype)


class FakeViewer:
    def __init__(self, title: str = "") -> None:
        self.title = title
        self.layers: list[tuple[str, object, dict]] = []

    def add_image(self, data, **kwargs):
        self.layers.append(("image", data, kwargs))

    def add_labels(self, data, **kwargs):
        self.layers.append(("labels", data, kwargs))

    def add_tracks(self, data, **kwargs):
        self.layers.append(("tracks", data, kwargs))


@pytest.fixture
def fake_napari(monkeypatch):
    """A stand-in ``napari`` module: records viewers and calls to ``napari.run``."""
    module = types.ModuleType("napari")
    module.__spec__ = importlib.machinery.ModuleSpec("napari", None)
    module.viewers = []
    module.runs = 0

    def viewer(title=""):
        module.viewers.append(FakeViewer(title))
        return module.viewers[-1]

    def run():
        module.runs += 1

    module.Viewer = viewer
    module.run = run
    monkeypatch.setitem(sys.modules, "napari", module)
    return module


def test_layers_are_lazy_napari_layer_data(movie_dirs):
    images, res = movie_dirs
    layers = napari_layers(images, res)
    assert [layer_type for _, _, layer_type in layers] == ["image", "labels", "tracks"]
    (image, image_kwargs, _), (labels, _, _), (tracks, track_kwargs, _) = layers
    raw, masks = open_sequence(images), open_sequence(res, prefix="mask")
    assert isinstance(image, da.Array) and image.shape == raw.shape and image.dtype == raw.dtype
    assert image.chunks[0] == (1,) * len(raw)  # one frame per chunk
    np.testing.assert_array_equal(image[4].compute(), raw[4])
    np.testing.assert_array_equal(labels[2].compute(), masks[2])
    low, high = image_kwargs["contrast_limits"]
    assert raw[0].min() <= low < high <= raw[0].max()

    graph = read_result(res).graph
    expected_data, expected_graph = graph.to_napari()
    np.testing.assert_array_equal(tracks, expected_data)
    assert track_kwargs["graph"] == expected_graph
    assert len(track_kwargs["features"]) == len(tracks)
    ids = set(tracks[:, 0].astype(int))
    truth = read_track_table(res / "res_track.txt")
    assert len(ids) == len(truth) and len(expected_graph) == int((truth["parent"] > 0).sum())
    assert all(child in ids and set(parents) <= ids for child, parents in expected_graph.items())
    order = np.lexsort((tracks[:, 1], tracks[:, 0]))
    assert (order == np.arange(len(tracks))).all()  # napari wants rows by track, then time


def test_frames_are_read_only_when_shown():
    frames = np.arange(5 * 8 * 8, dtype=np.uint16).reshape(5, 8, 8)
    sequence = CountingSequence(frames)
    ((image, _, layer_type),) = napari_layers(sequence)
    assert layer_type == "image" and sequence.reads == [0]  # the first frame sets the contrast
    np.testing.assert_array_equal(image[3].compute(), frames[3])
    assert sequence.reads == [0, 3]


def test_layers_reject_a_movie_that_does_not_match_the_result(movie_dirs):
    _, res = movie_dirs
    other = CountingSequence(np.zeros((4, 96, 96), np.uint16))
    with pytest.raises(ValueError, match="do not match"):
        napari_layers(other, res)
    with pytest.raises(ValueError, match="needs a movie"):
        napari_layers(None, None)
    assert [t for _, _, t in napari_layers(None, res)] == ["labels", "tracks"]


def test_show_in_napari_adds_every_layer(fake_napari, movie_dirs):
    images, res = movie_dirs
    viewer = show_in_napari(images, res, tail_length=5)
    assert fake_napari.viewers == [viewer] and fake_napari.runs == 1 and "01_RES" in viewer.title
    assert [kind for kind, _, _ in viewer.layers] == ["image", "labels", "tracks"]
    assert viewer.layers[2][2]["tail_length"] == 5
    mine = FakeViewer()
    assert show_in_napari(images, viewer=mine, block=False) is mine
    assert [kind for kind, _, _ in mine.layers] == ["image"] and fake_napari.runs == 1


def test_view_command_without_napari_says_how_to_install(monkeypatch, movie_dirs, capsys):
    images, res = movie_dirs
    monkeypatch.setattr(napari_view, "napari_available", lambda: False)
    monkeypatch.setitem(cli_main.COMMANDS, "view", "view")
    assert cli_main.main(["view", str(images), str(res)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and NAPARI_INSTALL_HINT in error[0]


def test_view_command_opens_the_viewer(fake_napari, monkeypatch, movie_dirs):
    images, res = movie_dirs
    monkeypatch.setitem(cli_main.COMMANDS, "view", "view")
    assert cli_main.main(["view", str(images), str(res), "--tail", "3"]) == 0
    (viewer,) = fake_napari.viewers
    assert [kind for kind, _, _ in viewer.layers] == ["image", "labels", "tracks"]
