"""``celltrack train``: CTC folders to a model folder that reloads and segments."""

import numpy as np
import pytest

from celltrack.cli.main import main
from celltrack.io import write_ctc_dataset
from celltrack.io.annotations import merge_gold_into_silver
from celltrack.models import SegNet
from celltrack.pipeline.train import segmentation_pairs
from celltrack.synthetic import generate_movie


@pytest.fixture(scope="module")
def movie_dir(tmp_path_factory):
    movie = generate_movie(frames=4, height=64, width=64, nuclei=5, seed=2)
    root = tmp_path_factory.mktemp("train") / "movie"
    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, root)
    return root


def test_gold_replaces_silver_where_it_exists():
    silver = np.zeros((10, 10), np.int32)
    silver[0:4, 0:4] = 1
    silver[6:9, 6:9] = 2
    gold = np.zeros_like(silver)
    gold[0:5, 0:5] = 7  # a better outline of nucleus 1
    merged = merge_gold_into_silver(silver, gold)
    assert len(np.unique(merged)) == 3  # background + the gold nucleus + the silver-only nucleus
    assert merged[4, 4] > 0 and merged[7, 7] > 0 and merged[4, 4] != merged[7, 7]


def test_pairs_from_ctc_folders_hold_out_first_frames(movie_dir):
    data = segmentation_pairs([movie_dir / "01"], hold_out_frames=1)
    assert len(data.pairs) == 3 and data.names[0].endswith("t001")
    assert data.held_out["movie/01"] == [0]
    image, mask = data.pairs[0]
    assert image.shape == mask.shape == (64, 64) and mask.max() > 0


def test_pairs_need_seg_masks(tmp_path, movie_dir):
    import shutil

    shutil.copytree(movie_dir / "01", tmp_path / "01")
    with pytest.raises(ValueError, match="no SEG masks"):
        segmentation_pairs([tmp_path / "01"])


def test_train_segnet_cli_writes_a_loadable_model(movie_dir, tmp_path):
    out = tmp_path / "model"
    code = main(
        [
            "train",
            "segnet",
            "--architecture",
            "study",
            "--data",
            str(movie_dir / "01"),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--members",
            "1",
            "--contact-weight",
            "3",
            "-q",
        ]
    )
    assert code == 0
    model = SegNet.load(out)
    assert model.training_info["config"]["contact_weight"] == 3.0
    provenance = model.training_info["data"]
    assert provenance["n_pairs"] == 4 and provenance["command"] == "celltrack train segnet"
    probabilities = model.predict_frame(np.zeros((33, 47), np.uint16))
    assert probabilities.shape == (3, 33, 47)
    assert main(["train", "segnet", "--data", str(movie_dir / "01"), "--out", str(out)]) == 2  # exists


def test_train_default_segnet_cli_writes_a_loadable_model_and_resumes(movie_dir, tmp_path):
    from celltrack.models.panoptic import PanopticSegNet

    out = tmp_path / "panoptic"
    args = ["train", "segnet", "--data", str(movie_dir / "01"), "--out", str(out), "--steps", "4",
            "--steps-per-epoch", "2", "--batch-size", "2", "-q"]
    assert main(args) == 0
    model = PanopticSegNet.load(out)
    provenance = model.training_info["data"]
    assert provenance["sources"] == {"movie/01": 4}
    assert provenance["command"].startswith("celltrack train segnet --data")
    assert (tmp_path / "panoptic.checkpoint" / "checkpoint.pt").is_file()
    # The finished run resumes to its end at once; the options that only the study network has are refused.
    assert main([*args, "--overwrite", "--resume"]) == 0
    assert main([*args, "--overwrite", "--epochs", "3"]) == 2


def test_train_recognet_cli_writes_a_loadable_model(movie_dir, tmp_path):
    from celltrack.models.recognet import RecogNet

    out = tmp_path / "recognet"
    code = main(
        [
            "train",
            "recognet",
            "--data",
            str(movie_dir / "01"),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--identities",
            "4",
            "-q",
        ]
    )
    assert code == 0
    model = RecogNet.load(out)
    crops = np.zeros((2, 1, 40, 40), np.float32)
    assert model.embed(crops).shape[0] == 2 and model.cell_state(crops).shape == (2, 3)


def _train_recognet_cli(movie_dir, out, seed):
    args = ["train", "recognet", "--data", str(movie_dir / "01"), "--out", str(out), "--epochs", "2"]
    return main([*args, "--steps-per-epoch", "2", "--identities", "4", "--seed", str(seed), "-q"])


def test_train_recognet_cli_is_reproducible(movie_dir, tmp_path):
    import hashlib
    import json

    import torch

    from celltrack.models.recognet import RecogNet

    assert _train_recognet_cli(movie_dir, tmp_path / "a", 5) == 0
    assert _train_recognet_cli(movie_dir, tmp_path / "b", 5) == 0
    assert _train_recognet_cli(movie_dir, tmp_path / "c", 6) == 0

    def digest(name):
        return hashlib.sha256((tmp_path / name / "weights.pt").read_bytes()).hexdigest()

    assert digest("a") == digest("b")  # bit for bit, as the README promises for the shipped weights
    assert digest("a") != digest("c")  # the seed matters
    info = json.loads((tmp_path / "a" / "config.json").read_text())["training"]
    assert info["config"]["epochs"] == 2 and info["steps_per_epoch"] == 2 and info["epochs"] == 2
    assert info["config"]["max_seconds"] is None and info["torch_threads"] == torch.get_num_threads()
    assert info["data"]["command"].startswith("celltrack train recognet --data ")  # the whole command line
    assert "--seed 5" in info["data"]["command"]
    assert RecogNet.load(tmp_path / "a").config.n_identities == 4
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's setting is restored
    args = ["train", "recognet", "--data", str(movie_dir / "01"), "--out", str(tmp_path / "d")]
    assert main([*args, "--members", "2", "-q"]) == 2  # --members is SegNet's
