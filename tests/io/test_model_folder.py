"""Model folders: round trips and one-line errors for broken folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from celltrack.io.model_folder import (
    CONFIG_FILENAME,
    WEIGHTS_FILENAME,
    load_model_folder,
    load_state_checked,
    read_model_config,
    save_model_folder,
)
from celltrack.models import SegNet, SegNetConfig

torch.set_num_threads(1)


def _segnet(**config: object) -> SegNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SegNet(SegNetConfig(**config)).eval()


def _frame() -> np.ndarray:
    return np.random.default_rng(0).integers(33000, 34500, (41, 53)).astype(np.uint16)


def test_generic_round_trip_casts_float16_back(tmp_path: Path) -> None:
    state = {"w": torch.randn(3, 4), "steps": torch.tensor([7])}
    config = {"hyperparameters": {"n": 3}}
    folder = save_model_folder(tmp_path / "m", "toy", config, state, weights_dtype="float16")
    loaded = load_model_folder(folder, architecture="toy")
    assert loaded.architecture == "toy"
    assert loaded.config["hyperparameters"] == {"n": 3}
    assert loaded.state_dict["w"].dtype == torch.float32
    torch.testing.assert_close(loaded.state_dict["w"], state["w"], atol=2e-3, rtol=1e-3)
    assert loaded.state_dict["steps"].dtype == torch.int64


def test_segnet_reloads_with_identical_outputs(tmp_path: Path) -> None:
    model = _segnet(n_members=2)
    model.training_info = {"note": "test"}
    model.save(tmp_path / "exact", weights_dtype="float32")
    reloaded = SegNet.load(tmp_path / "exact")
    np.testing.assert_array_equal(reloaded.predict_frame(_frame()), model.predict_frame(_frame()))
    assert reloaded.training_info == {"note": "test"}
    assert reloaded.config == model.config
    model.save(tmp_path / "half")
    half = SegNet.load(tmp_path / "half")
    np.testing.assert_allclose(half.predict_frame(_frame()), model.predict_frame(_frame()), atol=5e-3)
    config = json.loads((tmp_path / "half" / CONFIG_FILENAME).read_text())
    assert config["architecture"] == "segnet" and config["weights_dtype"] == "float16"
    assert config["normalisation"]["high_percentile"] == 99.8


def test_existing_folder_needs_overwrite(tmp_path: Path) -> None:
    model = _segnet(n_members=1)
    model.save(tmp_path / "m")
    with pytest.raises(ValueError, match="overwrite"):
        model.save(tmp_path / "m")
    model.save(tmp_path / "m", overwrite=True)


def _assert_one_line(excinfo: pytest.ExceptionInfo[ValueError], *needles: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as excinfo:
        SegNet.load(tmp_path / "nowhere")
    _assert_one_line(excinfo, str(tmp_path / "nowhere"), "does not exist")
    _segnet(n_members=1).save(tmp_path / "m")
    (tmp_path / "m" / WEIGHTS_FILENAME).unlink()
    with pytest.raises(ValueError) as excinfo:
        SegNet.load(tmp_path / "m")
    _assert_one_line(excinfo, WEIGHTS_FILENAME, "missing", "re-train")
    (tmp_path / "m" / CONFIG_FILENAME).unlink()
    with pytest.raises(ValueError) as excinfo:
        SegNet.load(tmp_path / "m")
    _assert_one_line(excinfo, CONFIG_FILENAME, "missing")


def test_corrupted_weights_and_config(tmp_path: Path) -> None:
    _segnet(n_members=1).save(tmp_path / "m")
    weights = tmp_path / "m" / WEIGHTS_FILENAME
    weights.write_bytes(weights.read_bytes()[: 200])
    with pytest.raises(ValueError) as excinfo:
        SegNet.load(tmp_path / "m")
    _assert_one_line(excinfo, str(weights), "corrupted")
    (tmp_path / "m" / CONFIG_FILENAME).write_text("{not json")
    with pytest.raises(ValueError) as excinfo:
        SegNet.load(tmp_path / "m")
    _assert_one_line(excinfo, CONFIG_FILENAME, "unreadable")


def test_pickled_object_is_refused(tmp_path: Path) -> None:
    _segnet(n_members=1).save(tmp_path / "m")
    torch.save({"evil": object()}, tmp_path / "m" / WEIGHTS_FILENAME)
    with pytest.raises(ValueError, match="corrupted or not a PyTorch state dict"):
        SegNet.load(tmp_path / "m")


def test_wrong_architecture_and_mismatched_shapes(tmp_path: Path) -> None:
    save_model_folder(tmp_path / "rec", "recognet", {"hyperparameters": {}}, {"w": torch.zeros(2)})
    with pytest.raises(ValueError) as excinfo:
        SegNet.load(tmp_path / "rec")
    _assert_one_line(excinfo, "recognet", "segnet", str(tmp_path / "rec"))
    _segnet(n_members=1).save(tmp_path / "m")
    config_path = tmp_path / "m" / CONFIG_FILENAME
    config = json.loads(config_path.read_text())
    config["hyperparameters"]["channels"] = [8, 8, 8, 8, 8]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError) as excinfo:
        SegNet.load(tmp_path / "m")
    _assert_one_line(excinfo, "shape mismatch", str(tmp_path / "m"))
    config["hyperparameters"]["n_members"] = 3
    config["hyperparameters"]["channels"] = [16] * 5
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="missing"):
        SegNet.load(tmp_path / "m")
    config["hyperparameters"]["kernel_size"] = 4
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="invalid hyperparameters"):
        SegNet.load(tmp_path / "m")


def test_reserved_keys_and_newer_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        save_model_folder(tmp_path / "a", "toy", {"architecture": "x"}, {})
    save_model_folder(tmp_path / "b", "toy", {}, {"w": torch.zeros(1)})
    config_path = tmp_path / "b" / CONFIG_FILENAME
    config = json.loads(config_path.read_text())
    config["format_version"] = 99
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="upgrade celltrack"):
        read_model_config(tmp_path / "b")


def test_load_state_checked_reports_keys(tmp_path: Path) -> None:
    module = torch.nn.Linear(2, 3)
    with pytest.raises(ValueError, match="unexpected extra"):
        load_state_checked(module, {**module.state_dict(), "extra": torch.zeros(1)}, tmp_path)
    load_state_checked(module, module.state_dict(), tmp_path)
