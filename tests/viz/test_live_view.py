"""TrackingView rendering and the LiveViewer's refusal to run headless (Agg backend, no display)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import sys
from collections.abc import Iterator

import numpy as np
import pytest
from pydantic import ValidationError

from celltrack.cftrack import FrameState
from celltrack.viz import LiveViewer, TrackingView, ViewConfig, crop_window, render_frame, stretch_contrast

WINDOW = 21
SMALL = ViewConfig(figsize=(6.0, 2.0), dpi=50)


def make_state(
    t: int = 0,
    n: int = 3,
    lost: tuple[int, ...] = (),
    response: bool = True,
    selected: int = 0,
    shape: tuple[int, int] = (64, 64),
) -> FrameState:
    """A hand-made tracker state on a uint16 frame with a HeLa-like camera offset."""
    rng = np.random.default_rng(t)
    frame = (33000 + rng.normal(0, 30, shape)).astype(np.uint16)
    positions = np.array([[10.0 + 2 * t, 12.0], [40.3, 50.6], [60.0, 3.0]])[:n]
    pixels = np.clip(positions.astype(int), 0, np.array(shape) - 1)
    frame[pixels[:, 0], pixels[:, 1]] = 40000
    active = np.ones(n, bool)
    active[list(lost)] = False
    positions[~active] = np.nan
    peak = np.where(active, 0.5, np.nan)
    psr = np.where(active, 12.5, np.nan)
    yy, xx = np.mgrid[:WINDOW, :WINDOW] - WINDOW // 2
    shown = np.exp(-((yy - 1) ** 2 + (xx + 2) ** 2) / 8.0) if response else None
    return FrameState(t, frame, positions, active, peak, psr, WINDOW, shown, selected)


def test_frames_keep_one_size_whatever_the_state() -> None:
    view = TrackingView(SMALL)
    states = [
        make_state(0, response=False),
        make_state(1),
        make_state(2, lost=(0,)),
        make_state(3, lost=(0, 1, 2)),
        make_state(4, n=0, response=False),
        make_state(5, shape=(40, 90)),
    ]
    images = [view.render_rgb(state) for state in states]
    expected = (round(SMALL.figsize[1] * SMALL.dpi), round(SMALL.figsize[0] * SMALL.dpi), 3)
    assert {image.shape for image in images} == {expected}
    assert all(image.dtype == np.uint8 for image in images)
    # Successive states really change the picture (frame number, boxes, response).
    assert not np.array_equal(images[0], images[1])


def test_artists_are_reused_between_frames() -> None:
    view = TrackingView(SMALL)
    view.render(make_state(0))
    figure = view.figure
    before = [(len(ax.images), len(ax.lines), len(ax.collections), len(ax.patches)) for ax in figure.axes]
    for t in range(1, 4):
        assert view.render(make_state(t, lost=(1,) if t == 2 else ())) is figure
    after = [(len(ax.images), len(ax.lines), len(ax.collections), len(ax.patches)) for ax in figure.axes]
    assert before == after
    assert len(figure.axes) == 4  # frame, close-up, response, colour bar


def test_only_tracked_cells_get_a_window_and_the_selected_one_is_highlighted() -> None:
    view = TrackingView(SMALL)
    state = make_state(0, n=3, lost=(1,), selected=2)
    view.render(state)
    ax_frame = view.figure.axes[0]
    (windows,) = ax_frame.collections
    assert len(windows.get_paths()) == 2
    (box,) = ax_frame.patches
    assert box.get_visible()
    # Window origin follows the tracker's crop: floor(centre + 0.5) - window // 2, drawn at pixel edges.
    y, x = state.positions[2]
    left, top = np.floor(x + 0.5) - WINDOW // 2 - 0.5, np.floor(y + 0.5) - WINDOW // 2 - 0.5
    assert box.get_xy() == pytest.approx((left, top))
    assert box.get_width() == box.get_height() == WINDOW
    assert box.get_edgecolor() != windows.get_edgecolor()[0].tolist()
    # The selected cell lost: no highlight, no boxes for lost cells, the close-up says so.
    view.render(make_state(1, n=3, lost=(1, 2), selected=2))
    assert not box.get_visible()
    assert len(windows.get_paths()) == 1
    assert "lost" in view.figure.axes[1].get_title()


def test_titles_report_frame_and_confidence() -> None:
    view = TrackingView(SMALL)
    view.render(make_state(7))
    figure = view.figure
    assert "frame 7" in figure.get_suptitle()
    assert "PSR 12.5" in figure.axes[2].get_title()
    view.render(make_state(8, response=False))
    assert "none" in figure.axes[2].get_title()


def test_response_map_shows_its_own_range_and_peak() -> None:
    view = TrackingView(SMALL)
    state = make_state(1)
    view.render(state)
    ax_response = view.figure.axes[2]
    image = ax_response.images[0]
    assert image.get_clim() == pytest.approx((state.response.min(), state.response.max()), rel=1e-5)
    peak_marker = ax_response.lines[1]
    peak_y, peak_x = np.unravel_index(np.argmax(state.response), state.response.shape)
    assert (peak_marker.get_xdata()[0], peak_marker.get_ydata()[0]) == (peak_x, peak_y)


def test_close_up_is_the_selected_window_of_the_stretched_frame() -> None:
    view = TrackingView(SMALL)
    state = make_state(0, selected=1)
    view.render(state)
    shown = np.asarray(view.figure.axes[1].images[0].get_array())
    display = stretch_contrast(state.frame, SMALL.percentiles)
    expected, _ = crop_window(display, tuple(state.positions[1]), WINDOW)
    np.testing.assert_allclose(shown, expected)


def test_crop_window_zero_pads_at_the_border_and_centres_the_rounded_position() -> None:
    image = np.arange(1, 101, dtype=np.float32).reshape(10, 10)
    window, origin = crop_window(image, (1.4, 8.6), 5)
    assert window.shape == (5, 5)
    np.testing.assert_array_equal(origin, [-1, 7])
    assert window[2, 2] == image[1, 9]
    assert (window[0] == 0).all() and (window[:, 3:] == 0).all()
    np.testing.assert_array_equal(window[1:, :3], image[0:4, 7:10])
    outside, _ = crop_window(image, (-50.0, -50.0), 5)
    assert not outside.any()


def test_stretch_contrast_maps_percentiles_to_unit_range() -> None:
    rng = np.random.default_rng(0)
    frame = (33000 + rng.integers(0, 1000, (50, 60))).astype(np.uint16)
    display = stretch_contrast(frame, (1.0, 99.0))
    assert display.dtype == np.float32 and display.shape == frame.shape
    assert display.min() == 0.0 and display.max() == 1.0
    assert 0.4 < float(np.median(display)) < 0.6
    assert not stretch_contrast(np.full((8, 8), 33000, np.uint16)).any()
    with pytest.raises(ValueError, match="2-D"):
        stretch_contrast(np.zeros((2, 8, 8)))


def test_bad_input_is_refused() -> None:
    view = TrackingView(SMALL)
    state = make_state(0)
    state.frame = np.zeros((3, 64, 64))
    with pytest.raises(ValueError, match="2-D"):
        view.render(state)
    state = make_state(0)
    state.active = np.ones(5, bool)
    with pytest.raises(ValueError, match="active"):
        view.render(state)
    with pytest.raises(ValidationError):
        ViewConfig(percentiles=(99.0, 1.0))
    with pytest.raises(ValidationError):
        ViewConfig(unknown=1)


def test_render_frame_wrapper() -> None:
    image = render_frame(make_state(0), SMALL)
    assert image.shape == (100, 300, 3)


def test_live_viewer_refuses_a_headless_backend() -> None:
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    figures = plt.get_fignums()
    with pytest.raises(ValueError, match=r"non-interactive.*--save-video"):
        LiveViewer()
    assert plt.get_fignums() == figures


def test_live_viewer_refuses_a_bad_pause() -> None:
    with pytest.raises(ValueError, match="pause"):
        LiveViewer(pause=0)


@pytest.fixture
def fake_gui_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[type]:
    """A pyplot backend that claims a GUI framework but draws with Agg and shows nothing."""
    import types

    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureManagerBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    class FakeGuiCanvas(FigureCanvasAgg):
        # "headless" is the framework matplotlib reports as running without a display, so it accepts it.
        required_interactive_framework = "headless"
        draws = 0

        def draw(self) -> None:
            type(self).draws += 1
            super().draw()

        def start_event_loop(self, timeout: float = 0) -> None:
            pass

    class FakeGuiManager(FigureManagerBase):
        def show(self) -> None:
            pass

    module = types.ModuleType("fake_gui_backend")
    module.FigureCanvas = FakeGuiCanvas
    module.FigureManager = FakeGuiManager
    monkeypatch.setitem(sys.modules, "fake_gui_backend", module)
    plt.switch_backend("module://fake_gui_backend")
    try:
        yield FakeGuiCanvas
    finally:
        plt.switch_backend("Agg")  # closes every figure


def test_live_viewer_updates_its_window_until_closed(fake_gui_backend: type) -> None:
    import matplotlib.pyplot as plt

    with LiveViewer(SMALL) as viewer:
        assert viewer.is_open and plt.fignum_exists(viewer.figure.number)
        viewer(make_state(0))
        viewer(make_state(1))
        assert "frame 1" in viewer.figure.get_suptitle()
        assert fake_gui_backend.draws >= 1
        plt.close(viewer.figure)  # the user closes the window: tracking goes on, nothing is drawn
        assert not viewer.is_open
        viewer(make_state(2))
        assert "frame 1" in viewer.figure.get_suptitle()
    assert plt.get_fignums() == []
