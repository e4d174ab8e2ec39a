"""RecogNet: shapes, crops, crop datasets from synthetic movies, training, model folders, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from celltrack.models.recognet import (
    DEFAULT_RECOGNET_PATH,
    RecogNet,
    RecogNetConfig,
    RecogNetTrainer,
    RecogNetTrainingConfig,
    evaluate_recognet,
    retrieval_counts,
    supervised_contrastive_loss,
    train_recognet,
)
from celltrack.models.recognet_data import (
    INTERPHASE,
    MITOSIS,
    OTHER,
    TEST,
    TRAIN,
    VALIDATION,
    CropDatasetConfig,
    assign_identities,
    build_crop_dataset,
    concat_datasets,
    crop_nuclei,
    frame_splits,
    mitosis_frames,
    normalise_frame,
)
from celltrack.synthetic import generate_movie

torch.set_num_threads(1)

TINY = RecogNetConfig(channels=(4, 4, 8, 8, 8, 8), fc_width=32, n_identities=8, embedding_size=8)


@pytest.fixture(scope="module")
def movie():
    return generate_movie(
        frames=16,
        height=96,
        width=96,
        nuclei=8,
        seed=3,
        division_probability=0.08,
        min_cycle=2,
        death_probability=0.0,
        entry_rate=0.0,
    )


@pytest.fixture(scope="module")
def dataset(movie):
    config = CropDatasetConfig(split_block_frames=2, other_per_frame=2, other_min_distance=12.0)
    return assign_identities(build_crop_dataset(movie.images, movie.markers, movie.tracks, config), 8)


def test_shapes_logits_embedding_and_state() -> None:
    torch.manual_seed(0)
    net = RecogNet().eval()
    out = net(torch.rand(3, 1, 40, 40))
    assert out.identity.shape == (3, 256)
    assert out.embedding.shape == (3, 64)
    assert out.state.shape == (3, 3)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(3))
    assert [m.shape[-1] for m in net.conv_maps(torch.rand(1, 1, 40, 40))] == [40, 40, 20, 20, 10, 10]
    with pytest.raises(ValueError, match=r"\(N, 1, 40, 40\)"):
        net(torch.rand(3, 1, 32, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        net(np.zeros((1, 1, 40, 40)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiple of 8"):
        RecogNetConfig(crop_size=36)
    with pytest.raises(ValueError, match="six conv layers"):
        RecogNetConfig(channels=(8, 8, 8))


def test_batch_apis_embed_and_cell_state() -> None:
    torch.manual_seed(1)
    net = RecogNet(TINY)
    crops = np.random.default_rng(0).random((5, 40, 40)).astype(np.float32)
    embedding = net.embed(crops)
    assert embedding.shape == (5, 8)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(5))
    states = net.cell_state(crops)
    assert states.shape == (5, 3)
    torch.testing.assert_close(states.sum(1), torch.ones(5))
    assert bool((states >= 0).all())
    torch.testing.assert_close(net.embed(torch.from_numpy(crops)[:, None]), embedding)
    assert net.identity_logits(crops).shape == (5, 8)
    assert net.embed(np.zeros((0, 40, 40), np.float32)).shape == (0, 8)
    assert net.training  # the batch APIs restore the mode they found


def test_normalise_frame_removes_camera_offset() -> None:
    rng = np.random.default_rng(0)
    frame = rng.normal(0, 5, (64, 64))
    frame[20:30, 20:30] += 500
    raw = (frame + 33000).astype(np.uint16)
    low = normalise_frame((frame * 2 + 100).astype(np.float32))
    high = normalise_frame(raw)
    np.testing.assert_allclose(high, low, atol=0.02)
    assert abs(float(np.median(high))) < 1e-6 and high[25, 25] > 0.8
    np.testing.assert_array_equal(normalise_frame(np.full((8, 8), 7, np.uint16)), 0)
    with pytest.raises(ValueError, match="2-D"):
        normalise_frame(np.zeros((2, 8, 8)))


def test_crops_at_image_borders_are_padded_not_dropped() -> None:
    frame = np.arange(30 * 50, dtype=np.float32).reshape(30, 50)
    centres = np.array([[15.0, 25.0], [0.0, 0.0], [29.4, 49.6], [-100.0, 10.0]])
    crops = crop_nuclei(frame, centres, 10, normalised=True)
    assert crops.shape == (4, 10, 10) and crops.dtype == np.float32
    np.testing.assert_array_equal(crops[0], frame[10:20, 20:30])
    # centre (0, 0): rows/cols -5..4, the top-left 5x5 is outside
    np.testing.assert_array_equal(crops[1, :5], 0)
    np.testing.assert_array_equal(crops[1, :, :5], 0)
    np.testing.assert_array_equal(crops[1, 5:, 5:], frame[:5, :5])
    # (29.4, 49.6) rounds to (29, 50): the right half of the window lies outside
    np.testing.assert_array_equal(crops[2, :6, :5], frame[24:30, 45:50])
    np.testing.assert_array_equal(crops[2, 6:], 0)
    np.testing.assert_array_equal(crops[3], 0)
    table = pd.DataFrame({"y": centres[:, 0], "x": centres[:, 1]})
    np.testing.assert_array_equal(crop_nuclei(frame, table, 10, normalised=True), crops)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        crop_nuclei(frame, np.zeros((3, 3)), 10)
    with pytest.raises(ValueError, match="NaN"):
        crop_nuclei(frame, np.array([[np.nan, 1.0]]), 10)
    with pytest.raises(ValueError, match="missing"):
        crop_nuclei(frame, pd.DataFrame({"y": [1.0]}), 10)


def test_model_crop_normalises_raw_frames() -> None:
    net = RecogNet(TINY)
    frame = np.full((60, 60), 33000, np.uint16)
    frame[25:35, 25:35] = 34000
    crops = net.crop(frame, np.array([[30.0, 30.0], [0.0, 59.0]]))
    assert crops.shape == (2, 40, 40)
    assert crops[0, 20, 20] == pytest.approx(1.0, abs=1e-3) and crops[0, 0, 0] == pytest.approx(0.0, abs=1e-6)
    assert crops[1, :20].max() == 0.0  # above the image: padded with background


def test_mitosis_labels_and_frame_splits() -> None:
    tracks = pd.DataFrame(
        {"label": [1, 2, 3, 4], "begin": [0, 10, 10, 3], "end": [9, 20, 12, 8], "parent": [0, 1, 1, 0]}
    )
    config = CropDatasetConfig(mitosis_parent_frames=3, mitosis_daughter_frames=2)
    pairs = mitosis_frames(tracks, config)
    assert pairs == {(1, 7), (1, 8), (1, 9), (2, 10), (2, 11), (3, 10), (3, 11)}
    splits = frame_splits(
        100, CropDatasetConfig(split_block_frames=5, test_fraction=0.2, validation_fraction=0.1)
    )
    assert splits.shape == (100,)
    blocks = splits.reshape(20, 5)
    assert np.all(blocks == blocks[:, :1])  # whole blocks go to one split
    assert (blocks[:, 0] == TEST).sum() == 4 and (blocks[:, 0] == VALIDATION).sum() == 2


def test_crop_dataset_from_a_synthetic_movie(movie, dataset) -> None:
    summary = dataset.summary()
    n_nuclei = int((movie.markers.reshape(len(movie.markers), -1) > 0).any(1).sum())
    assert n_nuclei > 0
    nuclei = dataset.state != OTHER
    assert nuclei.sum() == len(movie.centroids)
    assert dataset.crops.shape[1:] == (48, 48) and dataset.crops.dtype == np.float16
    assert set(np.unique(dataset.split)) == {TRAIN, VALIDATION, TEST}
    assert summary["identities"] == 8
    # 'other' crops are far from every nucleus centre of their frame
    for i in np.flatnonzero(~nuclei):
        here = movie.centroids[movie.centroids[:, 0] == dataset.frame[i]]
        assert np.hypot(here[:, 2] - dataset.y[i], here[:, 3] - dataset.x[i]).min() >= 12.0 - 3.0
    # identity classes only for nucleus crops; mitosis labels follow the track table
    assert np.all(dataset.identity[~nuclei] == -1)
    expected = mitosis_frames(movie.tracks, dataset.config)
    got = {
        (int(v), int(t))
        for v, t, s in zip(dataset.label, dataset.frame, dataset.state, strict=True)
        if s == MITOSIS
    }
    assert got == expected
    assert (dataset.state == MITOSIS).sum() > 0 and (dataset.state == INTERPHASE).sum() > 0
    both = concat_datasets([dataset, dataset])
    assert len(both) == 2 * len(dataset) and both.movies == ("movie", "movie") and set(both.movie) == {0, 1}
    with pytest.raises(ValueError, match="identities were asked"):
        assign_identities(dataset, 10_000)


def test_supervised_contrastive_loss_prefers_close_positives() -> None:
    track = torch.tensor([0, 0, 1, 1, 2])
    frame = torch.tensor([0, 1, 0, 1, 0])
    good = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1], [-1, 0]]), dim=1)
    bad = good[[0, 2, 1, 3, 4]]
    assert supervised_contrastive_loss(good, track, frame, 1, 0.1) < supervised_contrastive_loss(
        bad, track, frame, 1, 0.1
    )
    # same track far apart in time: neither positive nor negative -> no anchors
    far = torch.tensor([0, 10, 0, 10, 0])
    assert float(supervised_contrastive_loss(good, track, far, 1, 0.1)) == 0.0


def test_a_few_training_steps_lower_the_loss(dataset) -> None:
    config = RecogNetTrainingConfig(
        network=TINY.model_copy(update={"dropout": 0.0}),
        epochs=6,
        steps_per_epoch=6,
        anchors_per_batch=8,
        crops_per_anchor=3,
        mitosis_per_batch=4,
        other_per_batch=4,
        learning_rate=1e-2,
        n_validation_batches=2,
        progress=False,
        seed=1,
    )
    trainer = RecogNetTrainer(config)
    model = trainer.fit(dataset)
    losses = [h.train_loss for h in trainer.history]
    assert len(losses) == 6
    assert np.mean(losses[-2:]) < losses[0] - 0.5
    assert trainer.history[-1].best_validation_loss < trainer.history[0].validation_loss - 0.5
    assert model.training_info["best_epoch"] >= 1 and not model.training
    assert model.config.input_scale > 0 and model.config.input_mean != 0.0
    scores = evaluate_recognet(model, dataset, TEST)
    assert 0 <= scores["identity_accuracy"] <= 1 and scores["retrieval_pairs"] > 0


def test_training_is_seeded_and_takes_arrays(movie) -> None:
    config = RecogNetTrainingConfig(
        network=TINY,
        epochs=1,
        steps_per_epoch=2,
        anchors_per_batch=4,
        crops_per_anchor=2,
        mitosis_per_batch=2,
        other_per_batch=2,
        n_validation_batches=1,
        progress=False,
    )
    logs = []
    data = [(movie.images, movie.markers, movie.tracks)]
    first = train_recognet(data, config, logs.append)
    second = train_recognet(data, config)
    assert len(logs) == 1
    for key, value in first.state_dict().items():
        torch.testing.assert_close(value, second.state_dict()[key], rtol=0, atol=0)
    with pytest.raises(TypeError, match="datasets\\[0\\]"):
        train_recognet([42], config)  # type: ignore[list-item]


def test_saved_model_reloads_identically(tmp_path) -> None:
    torch.manual_seed(2)
    net = RecogNet(TINY.model_copy(update={"input_mean": 0.2, "input_scale": 1.7})).eval()
    net.training_info = {"note": "test"}
    crops = torch.rand(4, 1, 40, 40)
    net.save(tmp_path / "m32", weights_dtype="float32")
    again = RecogNet.load(tmp_path / "m32")
    assert again.config == net.config and again.training_info == {"note": "test"} and not again.training
    for a, b in zip(net(crops).__dict__.values(), again(crops).__dict__.values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    net.save(tmp_path / "m16")
    half = RecogNet.load(tmp_path / "m16")
    torch.testing.assert_close(half(crops).embedding, net(crops).embedding, rtol=0, atol=2e-2)
    for a, b in zip(
        half(crops).__dict__.values(), RecogNet.load(tmp_path / "m16")(crops).__dict__.values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not exist"):
        RecogNet.load(tmp_path / "missing")


def test_shipped_model_is_small_and_documented() -> None:
    files = list(DEFAULT_RECOGNET_PATH.iterdir())
    assert sum(f.stat().st_size for f in files) < 5.5e6
    config = json.loads((DEFAULT_RECOGNET_PATH / "config.json").read_text())
    assert config["architecture"] == "recognet" and config["weights_dtype"] == "float16"
    training = config["training"]
    # reproducible: an epoch-based run (no wall-time stop) of the documented command, on one thread
    assert training["data"]["command"] == "celltrack train recognet" and training["torch_threads"] == 1
    assert training["config"]["max_seconds"] is None and training["stopped"] != "time"
    net = RecogNet.load()
    assert net.config.n_identities == 256 and net.config.crop_size == 40


def test_retrieval_counts_on_a_known_case() -> None:
    config = CropDatasetConfig()
    n = 6
    from celltrack.models.recognet_data import CropDataset

    data = CropDataset(
        crops=np.zeros((n, 48, 48), np.float16),
        movie=np.zeros(n, np.int16),
        label=np.array([1, 2, 1, 2, 3, 0], np.int32),
        frame=np.array([0, 0, 1, 1, 1, 1], np.int32),
        y=np.zeros(n, np.float32),
        x=np.zeros(n, np.float32),
        state=np.array([0, 0, 0, 0, 0, OTHER], np.int8),
        split=np.zeros(n, np.int8),
        identity=np.full(n, -1, np.int32),
        movies=("m",),
        config=config,
    )
    features = np.array([[1, -0.5], [0, 1], [1, -0.1], [1, 0.2], [0, 1], [0, 1]], np.float64)
    # label 1 finds itself; label 2's nearest in frame 1 is label 3 (wrong); 'other' crops are ignored
    assert retrieval_counts(features, data) == (1, 2)


def test_mitosis_scores_follow_the_detection_rows(movie) -> None:
    from celltrack.graph import measure_detections
    from celltrack.models.recognet import mitosis_scores

    torch.manual_seed(4)
    net = RecogNet(TINY).eval()
    table = pd.concat([measure_detections(movie.markers[t], t) for t in (0, 3, 7)], ignore_index=True)
    shuffled = table.sample(frac=1.0, random_state=2).reset_index(drop=True)
    scores = mitosis_scores(net, movie.images, shuffled)
    assert scores.shape == (len(shuffled),) and np.all((scores >= 0) & (scores <= 1))
    for t in (0, 7):
        rows = np.flatnonzero(shuffled["frame"].to_numpy() == t)
        crops = net.crop(movie.images[t], shuffled.iloc[rows])
        expected = net.cell_state(crops)[:, MITOSIS].double().numpy()
        np.testing.assert_allclose(scores[rows], expected, rtol=1e-6, atol=1e-7)
    assert mitosis_scores(net, movie.images, table.iloc[:0]).shape == (0,)
    with pytest.raises(ValueError, match="missing"):
        mitosis_scores(net, movie.images, table.drop(columns="frame"))
    with pytest.raises(ValueError, match="frames"):
        mitosis_scores(net, movie.images[:2], table)
    with pytest.raises(TypeError, match="DataFrame"):
        mitosis_scores(net, movie.images, table.to_numpy())  # type: ignore[arg-type]


def neighbour_margins(model: RecogNet, data) -> np.ndarray:
    """For every nucleus of frame t also in t+1: similarity to itself at t+1 minus the best similarity to its
    two nearest neighbours at t+1 (positive: the track is nearer than its neighbours)."""
    from scipy.spatial import cKDTree

    nucleus = data.state != OTHER
    embedding = model.embed(data.centre_crops()).numpy()
    margins = []
    for t in np.unique(data.frame):
        now = np.flatnonzero(nucleus & (data.frame == t))
        later = np.flatnonzero(nucleus & (data.frame == t + 1))
        if len(later) < 3:
            continue
        tree = cKDTree(np.stack([data.y[later], data.x[later]], 1))
        for i in now:
            same = later[data.label[later] == data.label[i]]
            if not len(same):
                continue
            _, near = tree.query([data.y[same[0]], data.x[same[0]]], k=3)
            others = [j for j in later[near] if j != same[0]][:2]
            margins.append(embedding[i] @ embedding[same[0]] - max(embedding[i] @ embedding[others].T))
    return np.array(margins)


def test_fine_tuning_puts_a_track_nearer_to_itself_than_to_its_neighbours() -> None:
    settings = {"frames": 14, "height": 112, "width": 112, "nuclei": 14, "speed": 2.5, "entry_rate": 0.0}
    config = CropDatasetConfig(split_block_frames=2, other_per_frame=2, other_min_distance=12.0)
    train = generate_movie(seed=21, **settings)
    unseen = generate_movie(seed=22, **settings)
    data = assign_identities(build_crop_dataset(train.images, train.markers, train.tracks, config), 8)
    test = build_crop_dataset(unseen.images, unseen.markers, unseen.tracks, config)
    training = RecogNetTrainingConfig(
        network=TINY.model_copy(update={"dropout": 0.0}),
        epochs=8,
        steps_per_epoch=6,
        anchors_per_batch=9,
        crops_per_anchor=3,
        anchor_neighbours=2,
        positive_frames=2,
        learning_rate=1e-2,
        n_validation_batches=1,
        progress=False,
        seed=4,
    )
    model = RecogNetTrainer(training).fit(data)
    torch.manual_seed(0)
    untrained = RecogNet(model.config).eval()
    before, after = neighbour_margins(untrained, test), neighbour_margins(model, test)
    assert len(after) > 50
    assert (after > 0).mean() >= 0.8, (after > 0).mean()
    assert np.median(after) > np.median(before) + 0.05


def test_neighbour_anchors_fill_batches_with_nuclei_of_one_frame(dataset) -> None:
    from celltrack.models.recognet import _BatchSampler

    config = RecogNetTrainingConfig(network=TINY, anchors_per_batch=6, anchor_neighbours=2, progress=False)
    sampler = _BatchSampler(dataset, TRAIN, config)
    anchors = sampler.indices(np.random.default_rng(0))[:6]
    for group in anchors.reshape(2, 3):
        assert len(set(dataset.frame[group])) == 1 and len(set(dataset.label[group])) == 3
        seed = group[0]
        same_frame = np.flatnonzero(
            (dataset.frame == dataset.frame[seed]) & (dataset.state != OTHER) & (dataset.split == TRAIN)
        )
        distance = np.hypot(dataset.y[same_frame] - dataset.y[seed], dataset.x[same_frame] - dataset.x[seed])
        chosen = np.hypot(dataset.y[group] - dataset.y[seed], dataset.x[group] - dataset.x[seed])
        np.testing.assert_allclose(np.sort(chosen), np.sort(distance)[:3])


class _StopError(Exception):
    pass


def test_fine_tuning_from_a_pretrained_model_resumes_to_the_same_weights(dataset, tmp_path) -> None:
    torch.manual_seed(5)
    start = RecogNet(TINY.model_copy(update={"input_mean": 0.1, "input_scale": 1.5})).eval()
    config = RecogNetTrainingConfig(
        network=TINY,
        epochs=3,
        steps_per_epoch=2,
        anchors_per_batch=4,
        crops_per_anchor=2,
        n_validation_batches=1,
        progress=False,
    )
    whole = RecogNetTrainer(config).fit(dataset, initial=start)
    # the trunk starts from the given weights, the input scaling is kept
    assert whole.config.input_scale == 1.5 and "pretraining" in whole.training_info

    def stop_after_epoch_2(log) -> None:
        if log.epoch == 2:
            raise _StopError

    path = tmp_path / "finetune.pt"
    with pytest.raises(_StopError):
        RecogNetTrainer(config).fit(dataset, initial=start, checkpoint=path, callback=stop_after_epoch_2)
    resumed = RecogNetTrainer(config).fit(dataset, initial=start, checkpoint=path)
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    assert [h["epoch"] for h in resumed.training_info["history"]] == [1, 2, 3]


def test_study_identity_head_still_loads_and_runs(movie) -> None:
    study = RecogNet.load(DEFAULT_RECOGNET_PATH)
    assert study.config.n_identities == 256 and study.config.nucleus_diameter is None
    crops = study.crop(movie.images[0], movie.centroids[movie.centroids[:, 0] == 0][:, 2:])
    logits = study.identity_logits(crops)
    assert logits.shape == (len(crops), 256) and bool(torch.isfinite(logits).all())
    assert study.cell_state(crops).shape == (len(crops), 3)


def test_movies_are_cut_at_the_model_diameter(movie) -> None:
    native = build_crop_dataset(movie.images, movie.markers, movie.tracks, CropDatasetConfig())
    halved = build_crop_dataset(
        movie.images,
        movie.markers,
        movie.tracks,
        CropDatasetConfig(model_diameter=8.0),
        nucleus_diameter=16.0,
    )
    nuclei = native.state != OTHER
    assert (native.label[nuclei] == halved.label[halved.state != OTHER]).all()
    np.testing.assert_allclose(halved.y[halved.state != OTHER], (native.y[nuclei] + 0.5) / 2 - 0.5, atol=1e-4)
    # within 5 % of the model diameter a movie keeps its native scale
    close = build_crop_dataset(
        movie.images,
        movie.markers,
        movie.tracks,
        CropDatasetConfig(model_diameter=10.2),
        nucleus_diameter=10.0,
    )
    np.testing.assert_array_equal(close.crops, native.crops)


def test_shipped_tracking_model_is_small_pretrained_and_documented() -> None:
    from celltrack.models.recognet import TRACKING_RECOGNET_PATH

    assert sum(f.stat().st_size for f in TRACKING_RECOGNET_PATH.iterdir()) < 1.5e6
    config = json.loads((TRACKING_RECOGNET_PATH / "config.json").read_text())
    training = config["training"]
    assert "--pretrain" in training["data"]["command"] and training["torch_threads"] == 1
    pretraining = training["pretraining"]
    assert pretraining["crops"]["nuclei"] > 30_000 and pretraining["torch_threads"] == 1
    assert training["config"]["max_seconds"] is None and training["stopped"] != "time"
    net = RecogNet.load(TRACKING_RECOGNET_PATH)
    assert net.config.nucleus_diameter == 16.0 and net.config.n_identities == 256
    assert net.identity_logits(np.zeros((2, net.config.crop_size, net.config.crop_size))).shape == (2, 256)
