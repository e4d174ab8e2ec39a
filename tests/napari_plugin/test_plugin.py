"""The napari plugin without a display: manifest, reader, and the widget's tracking function.

The reader and :func:`track_movie` return plain napari LayerData, tested here without napari. Where
napari is installed (``pip install "celltrack[napari]"``), the layers are also built by napari's own
viewer model and the dock widget runs on Qt's offscreen platform.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from celltrack.io import read_track_table
from celltrack.napari_plugin import TrackOptions, napari_get_reader, read_result_folder, track_movie
from celltrack.napari_plugin.widget import movie_sequence
from celltrack.synthetic import generate_movie


@pytest.fixture(scope="module")
def result(tmp_path_factory, gt_as_result):
    return gt_as_result(tmp_path_factory.mktemp("napari") / "movie")


def test_npe2_validates_the_manifest_and_its_commands_import():
    npe2 = Path(sys.executable).with_name("npe2")
    done = subprocess.run([str(npe2), "validate", "celltrack", "--imports"], capture_output=True, text=True)
    assert done.returncode == 0 and "valid" in done.stdout, done.stdout + done.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # npe2's own pydantic v1-style fields
        from npe2 import PluginManifest

        manifest = PluginManifest.from_distribution("celltrack")
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert commands == {
        "celltrack.get_reader": "celltrack.napari_plugin.reader:napari_get_reader",
        "celltrack.track_widget": "celltrack.napari_plugin.widget:track_widget",
    }
    (reader,) = manifest.contributions.readers
    assert reader.accepts_directories and reader.command == "celltrack.get_reader"
    assert [w.command for w in manifest.contributions.widgets] == ["celltrack.track_widget"]


def test_reader_opens_a_result_folder_as_labels_and_lineage_tracks(result):
    root, res = result
    assert napari_get_reader(str(res)) is read_result_folder
    assert napari_get_reader([str(res)]) is read_result_folder
    assert napari_get_reader(str(root / "01")) is None  # a movie, not a result
    assert napari_get_reader([str(res), str(res)]) is None
    (masks, _, first), (data, track_kwargs, second) = read_result_folder(str(res))
    assert (first, second) == ("labels", "tracks")
    assert masks.shape == (6, 96, 96) and np.asarray(masks[2]).max() > 0
    tracks = read_track_table(res / "res_track.txt")
    parents = {int(r.label): [int(r.parent)] for r in tracks.itertuples() if r.parent > 0}
    assert parents and track_kwargs["graph"] == parents
    assert data.shape[1] == 4 and set(np.unique(data[:, 0]).astype(int)) == set(tracks["label"])


def test_track_movie_runs_the_pipeline_and_reports_progress(tmp_path):
    movie = generate_movie(frames=5, height=96, width=96, nuclei=5, seed=4).images
    seen: list[tuple[str, int, int]] = []
    options = TrackOptions(method="classic", max_gap=1)
    layers = track_movie(movie, options, report=lambda *event: seen.append(event), name="pos1")
    (masks, mask_kwargs, first), (data, track_kwargs, second) = layers
    assert (first, second) == ("labels", "tracks")
    assert isinstance(masks, np.ndarray) and masks.shape == movie.shape and masks.max() > 0
    assert mask_kwargs["name"] == "pos1 labels" and track_kwargs["name"] == "pos1 tracks"
    assert set(np.unique(masks[masks > 0])) <= set(np.unique(data[:, 0]).astype(int))
    stages = {stage for stage, _, _ in seen}
    assert {"segment", "link", "write"} <= stages
    for stage in stages:
        done = [d for s, d, _ in seen if s == stage]
        assert done == sorted(done) and done[-1] == next(t for s, _, t in seen if s == stage)

    out = tmp_path / "pos1_RES"
    layers = track_movie(movie, options, out_dir=out)
    assert (out / "res_track.txt").is_file() and (out / "celltrack.json").is_file()
    assert np.array_equal(np.asarray(layers[0][0]), masks)


def test_widget_options_map_onto_the_pipeline_configuration(tmp_path):
    config = TrackOptions(method="classic", nucleus_diameter=14.0, max_gap=1, mitosis=False).tracking_config()
    assert config.segmentation.method == "classic" and config.segmentation.nucleus_diameter == 14.0
    assert config.linker.gaps.max_gap == 1 and config.mitosis.enabled is False
    toml = tmp_path / "tracking.toml"
    toml.write_text("[linker.gaps]\nmax_gap = 3\n")
    assert TrackOptions(config=toml).tracking_config().linker.gaps.max_gap == 3
    assert TrackOptions(config=toml, max_gap=0).tracking_config().linker.gaps.max_gap == 0
    with pytest.raises(ValueError, match="max_gap"):
        TrackOptions(max_gap=-1).tracking_config()
    with pytest.raises(ValueError, match="single frame"):
        movie_sequence(np.zeros((8, 8)), "one frame")
    with pytest.raises(ValueError, match=r"\(T, Y, X\)"):
        movie_sequence(np.zeros((2, 8, 8, 3)), "rgb")


# napari 0.9 on pydantic 2.14 warns of its own deprecated pydantic usage, which is not ours to fix
NAPARI_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@NAPARI_WARNINGS
def test_napari_builds_the_layers(result):
    napari = pytest.importorskip("napari", reason="napari is an optional extra")
    from napari.components import ViewerModel

    viewer = ViewerModel()
    for data, kwargs, kind in read_result_folder(str(result[1])):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    assert [type(layer).__name__ for layer in viewer.layers] == ["Labels", "Tracks"]
    assert viewer.layers[1].graph
    del napari


def test_the_dock_widget_tracks_the_open_image_layer_offscreen():
    """In a process of its own: a QApplication, once made, stays for the process (and matplotlib then
    takes Qt for the running GUI framework in later tests)."""
    for module in ("napari", "magicgui", "qtpy"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (napari is an optional extra)")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    command = [sys.executable, "-W", "ignore::DeprecationWarning", __file__]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("widget ok")


def _run_the_dock_widget() -> None:
    from napari.components import ViewerModel
    from qtpy.QtWidgets import QApplication

    from celltrack.napari_plugin.widget import track_widget

    app = QApplication.instance() or QApplication([])
    viewer = ViewerModel()
    movie = generate_movie(frames=4, height=64, width=64, nuclei=3, seed=1).images
    viewer.add_image(movie, name="pos1")
    widget = track_widget(viewer)
    movie_box, method = widget[0], widget[1]
    assert movie_box.value is viewer.layers["pos1"]
    method.value = "classic"
    progress, status = widget[-2], widget[-1]
    widget[-3].clicked()  # Track: the pipeline runs in a worker thread
    for _ in range(1200):
        app.processEvents()
        if status.value == "done" or status.value.startswith("error"):
            break
        time.sleep(0.05)
    assert status.value == "done", status.value
    assert [layer.name for layer in viewer.layers] == ["pos1", "pos1 labels", "pos1 tracks"]
    assert progress.value == progress.max
    print("widget ok")


if __name__ == "__main__":
    _run_the_dock_widget()
