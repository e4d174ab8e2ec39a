"""napari dock widget: ``celltrack track`` on the open image layer, in a worker thread, with a progress bar.

:func:`track_movie` is the whole job as a plain function (a movie array in, napari layers out); the
widget (:func:`track_widget`, napari and magicgui imported only there) collects the options, runs it
in a worker thread and adds the layers it returns.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from celltrack.io import ImageSequence, open_sequence
from celltrack.pipeline.track import TrackingConfig, load_config, run_tracking
from celltrack.viz.napari_view import LayerData, napari_layers

T = TypeVar("T")
#: ``report(stage, done, total)``: called from the worker thread as frames are processed.
Report = Callable[[str, int, int], None]
METHODS = ("auto", "segnet", "classic")
DEVICES = ("cpu", "auto", "cuda")


@dataclass
class TrackOptions:
    """The pipeline options the widget offers; None keeps the configuration's (or the default) value.

    Attributes
    ----------
    method : {"auto", "segnet", "classic"}, optional
        Segmentation method (``[segmentation] method``).
    nucleus_diameter : float, optional
        Nucleus diameter in pixels (``[segmentation] nucleus_diameter``); None: measured ("auto").
    max_gap : int, optional
        Frames a nucleus may be missed (``[linker.gaps] max_gap``).
    appearance_weight : float, optional
        Weight of the correlation-filter response in the linking cost (``[linker.appearance] weight``).
    mitosis : bool, optional
        Score mitosis with RecogNet (``[mitosis] enabled``).
    config : pathlib.Path, optional
        A pipeline configuration (TOML) read first; the options above override it.
    device : {"cpu", "auto", "cuda"}
    """

    method: Literal["auto", "segnet", "classic"] | None = None
    nucleus_diameter: float | None = None
    max_gap: int | None = None
    appearance_weight: float | None = None
    mitosis: bool | None = None
    config: Path | None = None
    device: str = "cpu"

    def tracking_config(self) -> TrackingConfig:
        """The :class:`TrackingConfig` these options make (checked as ``--config`` files are)."""
        overrides = {
            "segmentation.method": self.method,
            "segmentation.nucleus_diameter": self.nucleus_diameter,
            "linker.gaps.max_gap": self.max_gap,
            "linker.appearance.weight": self.appearance_weight,
            "mitosis.enabled": self.mitosis,
        }
        given = [(key, value) for key, value in overrides.items() if value is not None]
        return load_config(self.config, given)


def movie_sequence(movie: np.ndarray | ImageSequence, name: str = "movie") -> ImageSequence:
    """A (T, Y, X) array (a napari image layer's data) as an :class:`ImageSequence`.

    Raises
    ------
    ValueError
        A single frame, RGB or 3-D frames, or a float movie with no finite pixel.
    """
    if isinstance(movie, ImageSequence):
        return movie
    shape = tuple(int(s) for s in np.shape(movie))
    if len(shape) == 2:
        raise ValueError(f"{name}: a single frame {shape}; tracking needs a movie (T, Y, X)")
    if len(shape) != 3:
        raise ValueError(f"{name}: shape {shape}; celltrack tracks (T, Y, X) movies of single-channel frames")
    dtype = np.dtype(getattr(movie, "dtype", np.float32))

    def read(t: int) -> np.ndarray:
        return np.asarray(movie[t])

    return ImageSequence(name, read, shape, dtype)  # type: ignore[arg-type]


def track_movie(
    movie: np.ndarray | ImageSequence,
    options: TrackOptions | None = None,
    out_dir: str | Path | None = None,
    report: Report | None = None,
    name: str = "movie",
) -> list[LayerData]:
    """Run the ``celltrack track`` pipeline on a movie and return its result as napari layers.

    Parameters
    ----------
    movie : numpy.ndarray (or array-like, e.g. dask), shape (T, Y, X), or ImageSequence
        The raw movie (a napari image layer's data).
    options : TrackOptions, optional
    out_dir : str or pathlib.Path, optional
        Keep the result here (CTC masks, ``res_track.txt``, ``tracks.csv``, ``celltrack.json``);
        by default it goes to a temporary folder and the masks are kept in memory.
    report : callable, optional
        ``report(stage, done, total)`` after every frame of every stage (segment, link, write).
    name : str
        The movie's name (layer names, messages, the run record).

    Returns
    -------
    list of LayerData
        ``labels`` (T, Y, X) and ``tracks`` (with the lineage graph), as
        :func:`celltrack.viz.napari_view.napari_layers` makes them.
    """
    options = options or TrackOptions()
    config = options.tracking_config()
    sequence = movie_sequence(movie, name)
    progress = _reporting(report) if report is not None else _silent
    if out_dir is not None:
        run_tracking(sequence, out_dir, config, progress=progress, command="napari", device=options.device)
        return napari_layers(None, out_dir)
    with tempfile.TemporaryDirectory(prefix="celltrack-napari-") as tmp:
        res = Path(tmp) / f"{name}_RES"
        run_tracking(sequence, res, config, progress=progress, command="napari", device=options.device)
        layers = napari_layers(None, res)
        # the folder goes away: masks into memory, named after the movie rather than the folder
        masks = np.stack(list(open_sequence(res, prefix="mask")))
        return [_in_memory(layer, masks, name) for layer in layers]


def _in_memory(layer: LayerData, masks: np.ndarray, name: str) -> LayerData:
    data, kwargs, kind = layer
    kwargs = {**kwargs, "name": f"{name} {kind}"}
    return (masks, kwargs, kind) if kind == "labels" else (data, kwargs, kind)


def _silent(iterable: Iterable[T], total: int, desc: str) -> Iterable[T]:
    return iterable


def _reporting(report: Report) -> Callable[[Iterable[T], int, str], Iterator[T]]:
    def progress(iterable: Iterable[T], total: int, desc: str) -> Iterator[T]:
        report(desc, 0, total)
        for done, item in enumerate(iterable, start=1):
            yield item
            report(desc, done, total)

    return progress


def track_widget(napari_viewer: Any) -> Any:
    """The dock widget (npe2 ``widgets`` contribution): options, Run, a progress bar.

    Parameters
    ----------
    napari_viewer : napari.Viewer

    Returns
    -------
    magicgui.widgets.Container
    """
    import napari.layers
    from magicgui import widgets
    from napari.qt.threading import thread_worker
    from qtpy.QtCore import QObject, Signal

    class _Progress(QObject):
        # emitted in the worker thread, delivered in the GUI thread (a queued connection)
        changed = Signal(str, int, int)

    def image_layers(_: Any = None) -> list[tuple[str, Any]]:
        layers = napari_viewer.layers
        return [(layer.name, layer) for layer in layers if isinstance(layer, napari.layers.Image)]

    image = widgets.ComboBox(label="movie", choices=image_layers)
    method = widgets.ComboBox(label="segmentation", choices=METHODS, value="auto")
    diameter = widgets.FloatSpinBox(label="nucleus diameter (px, 0 = auto)", min=0, max=1000, value=0)
    max_gap = widgets.SpinBox(label="max gap (frames)", min=0, max=20, value=2)
    weight = widgets.FloatSpinBox(label="appearance weight", min=0, max=10, step=0.1, value=0.5)
    mitosis = widgets.CheckBox(label="RecogNet mitosis scores", value=False)
    config = widgets.FileEdit(label="configuration (.toml)", mode="r", filter="*.toml", value="")
    out = widgets.FileEdit(label="save result in (optional)", mode="d", value="")
    device = widgets.ComboBox(label="device", choices=DEVICES, value="cpu")
    run = widgets.PushButton(text="Track")
    bar = widgets.ProgressBar(label="progress", min=0, max=1, value=0)
    status = widgets.Label(value="")
    container = widgets.Container(
        widgets=[image, method, diameter, max_gap, weight, mitosis, config, out, device, run, bar, status]
    )
    signals = _Progress()

    def show(stage: str, done: int, total: int) -> None:
        bar.max, bar.value = max(total, 1), done
        status.value = f"{stage}: {done}/{total}"

    signals.changed.connect(show)
    for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
        event.connect(lambda _: image.reset_choices())

    def added(layers: list[LayerData]) -> None:
        for data, kwargs, kind in layers:
            getattr(napari_viewer, f"add_{kind}")(data, **kwargs)
        status.value = "done"
        run.enabled = True

    def failed(error: Exception) -> None:
        status.value = f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        run.enabled = True

    @run.changed.connect
    def start() -> None:
        layer = image.value
        if layer is None:
            status.value = "open a movie (an image layer) first"
            return
        options = TrackOptions(
            method=method.value,
            nucleus_diameter=diameter.value or None,
            max_gap=max_gap.value,
            appearance_weight=weight.value,
            mitosis=mitosis.value,
            config=Path(config.value) if str(config.value) not in ("", ".") else None,
            device=device.value,
        )
        out_dir = Path(out.value) / f"{layer.name}_RES" if str(out.value) not in ("", ".") else None
        run.enabled = False
        worker = thread_worker(track_movie)(layer.data, options, out_dir, signals.changed.emit, layer.name)
        worker.returned.connect(added)
        worker.errored.connect(failed)
        worker.start()

    return container
