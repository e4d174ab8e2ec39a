"""Tests for celltrack.synthetic: determinism, CTC validity of the ground truth, events and special scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage as ndi

from celltrack.synthetic import (
    MovieGenerator,
    SyntheticConfig,
    SyntheticMovie,
    dividing_nucleus,
    drifting_nuclei,
    generate_movie,
    hard_movie,
    static_nuclei,
    two_crossing_nuclei,
)

SMALL = {"frames": 12, "height": 96, "width": 96, "nuclei": 8}
QUIET = {"noise_std": 0.0, "poisson": False, "bleaching_rate": 0.0, "blur_sigma": 0.0}


def span_of(movie: SyntheticMovie) -> dict[int, tuple[int, int, int]]:
    return {int(label): (int(begin), int(end), int(parent)) for label, begin, end, parent in movie.tracks}


def centre_of(movie: SyntheticMovie, frame: int, label: int) -> np.ndarray:
    rows = movie.centroids[(movie.centroids[:, 0] == frame) & (movie.centroids[:, 1] == label)]
    assert len(rows) == 1, f"expected one centroid for label {label} on frame {frame}, got {len(rows)}"
    return rows[0, 2:]


def assert_ctc_valid(movie: SyntheticMovie) -> None:
    """Every CTC rule the generator promises, checked from the arrays alone."""
    config = movie.config
    frames = config.frames
    tracks = movie.tracks
    assert tracks.dtype == np.int64 and tracks.ndim == 2 and tracks.shape[1] == 4
    assert len(np.unique(tracks[:, 0])) == len(tracks), "labels must be unique over the movie"
    assert (tracks[:, 0] > 0).all()
    assert (tracks[:, 1] <= tracks[:, 2]).all()
    assert (tracks[:, 1] >= 0).all() and (tracks[:, 2] < frames).all()
    spans = span_of(movie)

    for label, (begin, _end, parent) in spans.items():
        if parent:
            assert parent in spans, f"parent {parent} of {label} is not a track"
            assert begin == spans[parent][1] + 1, f"child {label} must begin right after parent {parent} ends"

    for frame in range(frames):
        expected = {label for label, (begin, end, _) in spans.items() if begin <= frame <= end}
        labels, markers = movie.labels[frame], movie.markers[frame]
        assert set(np.unique(labels)) - {0} == expected, f"mask labels differ from tracks on frame {frame}"
        assert set(np.unique(markers)) - {0} == expected, f"marker labels differ from tracks on frame {frame}"
        marked = markers > 0
        assert (markers[marked] == labels[marked]).all(), f"a marker leaves its nucleus on frame {frame}"
        if expected:
            areas = np.bincount(labels.ravel(), minlength=max(expected) + 1)
            assert min(areas[label] for label in expected) >= config.min_visible_area
        rows = movie.centroids[movie.centroids[:, 0] == frame]
        assert set(rows[:, 1].astype(int)) == expected and len(rows) == len(expected)
        for _, label, y, x in rows:
            iy, ix = math.floor(y + 0.5), math.floor(x + 0.5)
            assert 0 <= iy < config.height and 0 <= ix < config.width, "true centres stay in the field"
            assert labels[iy, ix] == label, f"centre pixel of {int(label)} belongs to another nucleus"
        for label, region in enumerate(ndi.find_objects(labels), start=0 + 1):
            if region is None:
                continue
            _, pieces = ndi.label(labels[region] == label, structure=np.ones((3, 3)))
            assert pieces == 1, f"nucleus {label} is split into {pieces} pieces on frame {frame}"


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    for a, b in ((labels[:, 1:], labels[:, :-1]), (labels[1:, :], labels[:-1, :])):
        contact = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(p)) for p in zip(a[contact].tolist(), b[contact].tolist(), strict=True)}
    return pairs


def test_same_config_gives_identical_arrays_and_seed_changes_them() -> None:
    first = generate_movie(**SMALL, seed=3)
    second = MovieGenerator(SyntheticConfig(**SMALL, seed=3)).generate()
    for name in ("images", "labels", "markers", "tracks", "centroids"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    other = generate_movie(**SMALL, seed=4)
    assert not np.array_equal(first.labels, other.labels)


def test_noise_settings_leave_ground_truth_unchanged() -> None:
    noisy = generate_movie(**SMALL, seed=1)
    clean = generate_movie(**SMALL, **QUIET, seed=1)
    np.testing.assert_array_equal(noisy.labels, clean.labels)
    np.testing.assert_array_equal(noisy.tracks, clean.tracks)
    assert not np.array_equal(noisy.images, clean.images)


def test_shapes_and_dtypes() -> None:
    movie = generate_movie(**SMALL)
    shape = (SMALL["frames"], SMALL["height"], SMALL["width"])
    assert movie.images.shape == movie.labels.shape == movie.markers.shape == shape
    assert movie.images.dtype == np.uint16
    assert movie.labels.dtype == np.uint16 and movie.markers.dtype == np.uint16
    assert movie.tracks.dtype == np.int64 and movie.centroids.dtype == np.float64
    assert movie.centroids.shape[1] == 4
    assert movie.config == SyntheticConfig(**SMALL)
    small_range = generate_movie(**SMALL, dtype="uint8", brightness_mean=100.0, background=20.0)
    assert small_range.images.dtype == np.uint8


def test_default_movie_resembles_hela() -> None:
    movie = generate_movie()
    assert movie.images.shape == (30, 256, 256)
    assert_ctc_valid(movie)
    divisions = int((movie.tracks[:, 3] > 0).sum()) // 2
    assert 2 <= divisions <= 15
    areas = np.bincount(movie.labels[0].ravel())[1:]
    radii = np.sqrt(areas[areas > 0] / np.pi)
    assert 7.0 <= np.median(radii) <= 12.0
    steps = []
    for label in movie.tracks[:, 0]:
        rows = movie.centroids[movie.centroids[:, 1] == label]
        steps.extend(np.hypot(*np.diff(rows[:, 2:], axis=0).T))
    assert 1.0 <= np.median(steps) <= 5.0
    assert any(touching_pairs(frame) for frame in movie.labels)
    inside = movie.images[0][movie.labels[0] > 0].mean()
    outside = movie.images[0][movie.labels[0] == 0].mean()
    assert inside > outside + 100


@pytest.mark.parametrize(
    "overrides",
    [
        {"seed": 0},
        {"seed": 5, "nuclei": 20, "min_separation": 0.5},
        {"seed": 2, "division_probability": 0.4, "min_cycle": 1, "mitosis_frames": 0},
        {"seed": 7, "entry_rate": 2.0, "speed": 5.0, "death_probability": 0.05},
        {"seed": 9, "division_probability": 0.3, "min_cycle": 2, "entry_rate": 1.0, "speed": 4.0},
    ],
)
def test_ground_truth_follows_ctc_rules(overrides: dict) -> None:
    assert_ctc_valid(generate_movie(**{**SMALL, **overrides}))


def test_divisions_have_two_daughters_on_opposite_sides_of_the_mother() -> None:
    config = SyntheticConfig(
        frames=14,
        height=128,
        width=128,
        nuclei=4,
        border_margin=30.0,
        division_probability=0.5,
        min_cycle=1,
        mitosis_frames=2,
        speed=1.0,
        entry_rate=0.0,
        death_probability=0.0,
        seed=4,
        **QUIET,
    )
    movie = generate_movie(config)
    assert_ctc_valid(movie)
    spans = span_of(movie)
    children: dict[int, list[int]] = {}
    for label, (_, _, parent) in spans.items():
        if parent:
            children.setdefault(parent, []).append(label)
    assert len(children) >= 2
    compared = 0
    for mother, daughters in children.items():
        assert len(daughters) == 2
        last = spans[mother][1]
        assert all(spans[d][0] == last + 1 for d in daughters)
        mother_centre = centre_of(movie, last, mother)
        first, second = (centre_of(movie, last + 1, d) for d in daughters)
        assert np.hypot(*((first + second) / 2 - mother_centre)) < 3.0
        assert 1.4 * config.daughter_offset < np.hypot(*(first - second)) < 2.6 * config.daughter_offset
        # Mitosis: the mother brightens before the split (compared once its own birth glow has faded).
        calm = last - config.mitosis_frames
        if calm >= spans[mother][0] + config.mitosis_frames:
            before = movie.images[calm][movie.labels[calm] == mother].mean() - config.background
            during = movie.images[last][movie.labels[last] == mother].mean() - config.background
            assert during > 1.3 * before
            compared += 1
    assert compared


def test_cells_enter_and_leave_through_the_borders() -> None:
    config = SyntheticConfig(
        frames=15,
        height=96,
        width=96,
        nuclei=6,
        entry_rate=1.0,
        speed=4.0,
        persistence=0.9,
        division_probability=0.0,
        death_probability=0.0,
        seed=1,
    )
    movie = generate_movie(config)
    assert_ctc_valid(movie)
    entered = exited = 0
    for label, begin, end, parent in movie.tracks:
        if begin > 0:
            assert parent == 0
            y, x = centre_of(movie, begin, label)
            assert min(y, x, config.height - 1 - y, config.width - 1 - x) <= config.radius_mean
            entered += 1
        if end < config.frames - 1:
            y, x = centre_of(movie, end, label)
            assert min(y, x, config.height - 1 - y, config.width - 1 - x) <= 15.0
            exited += 1
    assert entered >= 5 and exited >= 3
    # Partially visible nuclei are cropped: masks reach the frame edge.
    edges = np.concatenate(
        [movie.labels[:, 0, :], movie.labels[:, -1, :], movie.labels[:, :, 0], movie.labels[:, :, -1]], axis=1
    )
    assert (edges > 0).any()


def test_transient_border_objects_are_short_tracks_beside_an_unchanged_population() -> None:
    settings = {"frames": 30, "height": 160, "width": 160, "nuclei": 12, "division_probability": 0.05}
    settings["seed"] = 7
    plain = generate_movie(**settings)
    movie = generate_movie(**settings, transient_rate=1.0, transient_return=1.0)
    assert_ctc_valid(movie)

    # The population draws the same numbers: every nucleus of the plain movie is there, in the same place.
    def places(m: SyntheticMovie) -> set[tuple[float, ...]]:
        return {tuple(np.round(row[[0, 2, 3]], 6)) for row in m.centroids}

    assert places(plain) < places(movie)
    extra = {tuple(np.round(row[[0, 2, 3]], 6)) for row in movie.centroids} - places(plain)
    labels = {int(row[1]) for row in movie.centroids if tuple(np.round(row[[0, 2, 3]], 6)) in extra}
    spans = span_of(movie)
    assert len(labels) >= 10
    for label in labels:
        begin, end, parent = spans[label]
        assert end - begin <= 1 and parent == 0  # one or two frames, no lineage
        y, x = centre_of(movie, begin, label)
        assert min(y, x, 159 - y, 159 - x) <= 0.4 * 9.0 + 0.5 + 3 * 0.15 * 9.0  # at the border
    # Objects that return come back within two frames as a new track close by.
    returned = [
        (a, b)
        for a in labels
        for b in labels
        if 2 <= spans[b][0] - spans[a][1] <= 3
        and np.hypot(*(centre_of(movie, spans[a][1], a) - centre_of(movie, spans[b][0], b))) < 9.0
    ]
    assert returned


def test_daughter_jitter_breaks_the_symmetry_of_divisions() -> None:
    settings = {"frames": 20, "nuclei": 12, "division_probability": 0.2, "min_cycle": 0, "seed": 3}
    for jitter, low, high in ((0.0, 0.0, 1e-6), (0.3, 0.05, 10.0)):
        movie = generate_movie(**settings, daughter_jitter=jitter)
        assert_ctc_valid(movie)
        spans = span_of(movie)
        offsets = []
        for mother in {p for _, _, p in spans.values() if p}:
            kids = [label for label, (_, _, p) in spans.items() if p == mother]
            a, b = (centre_of(movie, spans[k][0], k) for k in kids)
            origin = centre_of(movie, spans[mother][1], mother)
            offsets.append(np.hypot(*(0.5 * (a + b) - origin)) / np.hypot(*(a - b)))
        assert offsets and low <= np.median(offsets) <= high


def test_hard_movies_are_dense_or_transient_or_sparse() -> None:
    dense = hard_movie("dense", frames=2)
    assert min(len(np.unique(frame)) - 1 for frame in dense.labels) > 300
    assert_ctc_valid(hard_movie("sparse", frames=8))
    with pytest.raises(ValueError, match="unknown hard movie kind"):
        hard_movie("crowded")


def test_deaths_end_tracks_inside_the_field() -> None:
    movie = generate_movie(
        frames=12,
        height=128,
        width=128,
        nuclei=10,
        border_margin=30.0,
        death_probability=0.15,
        division_probability=0.0,
        entry_rate=0.0,
        speed=0.5,
        seed=2,
    )
    assert_ctc_valid(movie)
    ended = [(label, end) for label, _, end, _ in movie.tracks if end < 11]
    assert ended
    for label, end in ended:
        y, x = centre_of(movie, end, label)
        assert min(y, x, 127 - y, 127 - x) > 15.0


def test_markers_are_small_central_discs() -> None:
    movie = static_nuclei(n=4, frames=2)
    for label, _, _, _ in movie.tracks:
        mask = movie.labels[0] == label
        marker = movie.markers[0] == label
        assert 0.05 < marker.sum() / mask.sum() < 0.2
        marker_centre = np.argwhere(marker).mean(axis=0)
        assert np.hypot(*(marker_centre - centre_of(movie, 0, label))) < 1.0


def test_no_nuclei_gives_empty_tables() -> None:
    movie = generate_movie(frames=3, height=32, width=32, nuclei=0, entry_rate=0.0, radius_mean=5.0)
    assert movie.tracks.shape == (0, 4) and movie.centroids.shape == (0, 4)
    assert not movie.labels.any() and not movie.markers.any()


def test_noise_models() -> None:
    quiet = static_nuclei(n=1, frames=2, **QUIET)
    assert (quiet.images[quiet.labels == 0] == quiet.config.background).all()
    shot = static_nuclei(n=1, frames=2, noise_std=0.0, blur_sigma=0.0)
    background = shot.images[shot.labels == 0].astype(float)
    assert background.var() == pytest.approx(shot.config.background, rel=0.2)


def test_photobleaching_dims_the_signal_exponentially() -> None:
    rate = 0.1
    movie = static_nuclei(n=3, frames=6, **{**QUIET, "bleaching_rate": rate})
    signal = movie.images.astype(float) - movie.config.background
    totals = signal.reshape(6, -1).sum(axis=1)
    np.testing.assert_allclose(totals / totals[0], np.exp(-rate * np.arange(6)), rtol=0.02)


def test_two_crossing_nuclei_fool_nearest_neighbour_linking() -> None:
    speed = 10.0
    movie = two_crossing_nuclei(frames=10, speed=speed)
    assert_ctc_valid(movie)
    np.testing.assert_array_equal(movie.tracks, [[1, 0, 9, 0], [2, 0, 9, 0]])
    paths = {label: np.array([centre_of(movie, t, label) for t in range(10)]) for label in (1, 2)}
    simultaneous = np.hypot(*(paths[1] - paths[2]).T)
    assert simultaneous.min() > 0.8 * speed
    # Nearest-neighbour linking prefers the other nucleus at the crossing step.
    swaps = [
        t
        for t in range(9)
        if np.hypot(*(paths[1][t + 1] - paths[2][t])) < np.hypot(*(paths[1][t + 1] - paths[1][t]))
        and np.hypot(*(paths[2][t + 1] - paths[1][t])) < np.hypot(*(paths[2][t + 1] - paths[2][t]))
    ]
    assert swaps
    across = np.hypot(*(paths[1][:, None, :] - paths[2][None, :, :]).transpose(2, 0, 1))
    assert across.min() < 4.0
    # Clearly different appearance: size, brightness and texture.
    image, labels = movie.images[0].astype(float), movie.labels[0]
    big, small = labels == 1, labels == 2
    assert big.sum() > 1.5 * small.sum()
    assert image[small].mean() > 1.5 * image[big].mean()
    core_big = ndi.binary_erosion(big, iterations=3)
    core_small = ndi.binary_erosion(small, iterations=2)
    assert image[core_big].std() / image[core_big].mean() > image[core_small].std() / image[core_small].mean()


def test_dividing_nucleus_scene() -> None:
    movie = dividing_nucleus(frames=9, division_frame=4, mitosis_frames=2)
    assert_ctc_valid(movie)
    np.testing.assert_array_equal(movie.tracks, [[1, 0, 3, 0], [2, 4, 8, 1], [3, 4, 8, 1]])
    mother = centre_of(movie, 3, 1)
    first, second = centre_of(movie, 4, 2), centre_of(movie, 4, 3)
    np.testing.assert_allclose((first + second) / 2, mother, atol=1e-9)
    offset = movie.config.daughter_offset
    assert 1.6 * offset < np.hypot(*(first - second)) < 2.4 * offset
    brightness = [movie.images[t][movie.labels[t] == 1].mean() for t in range(4)]
    assert brightness[3] > brightness[0] * 1.3
    with pytest.raises(ValueError, match="division_frame"):
        dividing_nucleus(frames=5, division_frame=5)


def test_static_nuclei_do_not_move_or_touch() -> None:
    movie = static_nuclei(n=5, frames=4)
    assert_ctc_valid(movie)
    assert len(movie.tracks) == 5 and (movie.tracks[:, 1] == 0).all() and (movie.tracks[:, 2] == 3).all()
    for frame in range(1, 4):
        np.testing.assert_array_equal(movie.labels[frame], movie.labels[0])
    assert not touching_pairs(movie.labels[0])
    assert not np.array_equal(movie.images[0], movie.images[1]), "frames differ by noise"


def test_drifting_nuclei_move_by_the_velocity() -> None:
    velocity = (1.5, -2.0)
    movie = drifting_nuclei(velocity=velocity, n=4, frames=6)
    assert_ctc_valid(movie)
    for label, begin, end, _ in movie.tracks:
        for frame in range(begin, end):
            step = centre_of(movie, frame + 1, label) - centre_of(movie, frame, label)
            np.testing.assert_allclose(step, velocity, atol=1e-9)


@pytest.mark.parametrize(
    "bad",
    [
        {"frames": 0},
        {"height": -5},
        {"width": 8},
        {"nuclei": -1},
        {"radius_mean": -3.0},
        {"radius_mean": 40.0, "height": 64, "width": 64},
        {"eccentricity": (0.6, 0.2)},
        {"eccentricity": (0.2, 1.0)},
        {"division_probability": 1.5},
        {"noise_std": -1.0},
        {"dtype": "float32"},
        {"seed": -1},
        {"unknown_field": 1},
    ],
)
def test_invalid_config_raises_value_error(bad: dict) -> None:
    with pytest.raises(ValueError):
        SyntheticConfig(**bad)
    with pytest.raises(ValidationError):
        generate_movie(SyntheticConfig(frames=3), **bad)


def test_config_type_is_checked() -> None:
    with pytest.raises(TypeError, match="SyntheticConfig"):
        generate_movie({"frames": 3})  # type: ignore[arg-type]


def test_overrides_replace_config_fields() -> None:
    movie = generate_movie(SyntheticConfig(**SMALL), frames=3)
    assert movie.config.frames == 3 and movie.images.shape[0] == 3
    assert math.isclose(movie.config.radius_mean, 9.0)
