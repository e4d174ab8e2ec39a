"""Model folders: ``config.json`` (architecture, hyper-parameters, provenance) + ``weights.pt``.

A model folder is how a trained network travels: ``config.json`` says which architecture it is
(``"architecture"`` key, e.g. ``"segnet"`` or ``"recognet"``), which format version wrote it, how
the weights are stored and everything the network needs to be rebuilt; ``weights.pt`` holds the
``state_dict`` and is read with ``torch.load(..., weights_only=True)`` so that opening a model
never runs pickled code.

Every failure to load (missing folder or file, unreadable JSON, corrupted weights, another
architecture, tensors that do not fit the network) is a :class:`ValueError` with one line that
names the path and the fix.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celltrack.io.atomic import atomic_output_dir

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

CONFIG_FILENAME = "config.json"
WEIGHTS_FILENAME = "weights.pt"
FORMAT_VERSION = 1
_RESERVED_KEYS = ("architecture", "format_version", "weights_dtype", "saved_at", "torch_version")
_WEIGHT_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class ModelFolder:
    """What a model folder holds once read and checked.

    Attributes
    ----------
    path : pathlib.Path
        The folder.
    config : dict
        Parsed ``config.json`` (includes ``architecture`` and ``format_version``).
    state_dict : dict of str to torch.Tensor
        Weights; floating tensors are float32 whatever the storage dtype.
    """

    path: Path
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor] = field(repr=False)

    @property
    def architecture(self) -> str:
        """Architecture name from ``config.json``."""
        return str(self.config["architecture"])


def save_model_folder(
    path: str | Path,
    architecture: str,
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    *,
    weights_dtype: str = "float32",
    overwrite: bool = False,
) -> Path:
    """Write a model folder atomically (an interrupted save leaves any older folder intact).

    Parameters
    ----------
    path : str or pathlib.Path
        Folder to create.
    architecture : str
        Architecture name, checked again at load time (e.g. ``"segnet"``).
    config : mapping
        JSON-serialisable description of the model (hyper-parameters, normalisation, training
        provenance, ...). Must not use the reserved keys ``architecture``, ``format_version``,
        ``weights_dtype``, ``saved_at``, ``torch_version``.
    state_dict : mapping of str to torch.Tensor
        The network weights.
    weights_dtype : {"float32", "float16"}
        Storage dtype of floating tensors; float16 halves the file size and is cast back to
        float32 when loaded.
    overwrite : bool
        Replace an existing folder.

    Returns
    -------
    pathlib.Path
        The folder written.
    """
    import torch

    path = Path(path)
    if not architecture or not isinstance(architecture, str):
        raise ValueError(f"save_model_folder: architecture must be a non-empty string, got {architecture!r}")
    if weights_dtype not in _WEIGHT_DTYPES:
        raise ValueError(
            f"save_model_folder: weights_dtype must be one of {_WEIGHT_DTYPES}, got {weights_dtype!r}"
        )
    clash = [key for key in _RESERVED_KEYS if key in config]
    if clash:
        raise ValueError(f"save_model_folder: config uses reserved keys {clash}; rename them")
    storage = torch.float16 if weights_dtype == "float16" else torch.float32
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"save_model_folder: state_dict[{name!r}] is {type(tensor).__name__}, not a tensor"
            )
        tensor = tensor.detach().cpu()
        tensors[name] = tensor.to(storage) if tensor.is_floating_point() else tensor.clone()
    document = {
        "architecture": architecture,
        "format_version": FORMAT_VERSION,
        "weights_dtype": weights_dtype,
        "saved_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        **dict(config),
    }
    try:
        text = json.dumps(document, indent=2, sort_keys=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save_model_folder: config is not JSON-serialisable ({exc})") from exc
    with atomic_output_dir(path, overwrite=overwrite) as tmp:
        # The temporary folder is created private (0700); a model is meant to be shared and shipped.
        tmp.chmod(0o755)
        (tmp / CONFIG_FILENAME).write_text(text + "\n", encoding="utf-8")
        torch.save(tensors, tmp / WEIGHTS_FILENAME)
    logger.info("saved %s model folder %s", architecture, path)
    return path


def read_model_config(path: str | Path, architecture: str | None = None) -> dict[str, Any]:
    """Read and check ``config.json`` of a model folder, without touching the weights.

    Parameters
    ----------
    path : str or pathlib.Path
        The model folder.
    architecture : str, optional
        Required architecture name; another one raises.

    Returns
    -------
    dict
        The parsed configuration.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(
            f"{path}: model folder does not exist; pass the folder that holds {CONFIG_FILENAME} and "
            f"{WEIGHTS_FILENAME} (as written by `celltrack train`)"
        )
    if not path.is_dir():
        raise ValueError(
            f"{path}: a model is a folder with {CONFIG_FILENAME} and {WEIGHTS_FILENAME}, not a file; "
            "pass the folder"
        )
    config_path = path / CONFIG_FILENAME
    if not config_path.is_file():
        raise ValueError(
            f"{config_path}: missing; this is not a model folder (re-save or re-train the model)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{config_path}: unreadable ({_one_line(exc)}); re-save or re-train the model"
        ) from exc
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise ValueError(f"{config_path}: no 'architecture' entry; re-save or re-train the model")
    found = config["architecture"]
    if architecture is not None and found != architecture:
        raise ValueError(
            f"{path}: holds a '{found}' model but a '{architecture}' model is needed; pass a {architecture} "
            "model folder"
        )
    version = config.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{config_path}: bad 'format_version' {version!r}; re-save or re-train the model")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: format version {version} is newer than this celltrack understands "
            f"({FORMAT_VERSION}); upgrade celltrack"
        )
    return config


def load_model_folder(path: str | Path, architecture: str | None = None) -> ModelFolder:
    """Read a model folder written by :func:`save_model_folder`.

    Parameters
    ----------
    path : str or pathlib.Path
        The model folder.
    architecture : str, optional
        Required architecture name; another one raises.

    Returns
    -------
    ModelFolder
        Configuration and float32 weights (on the CPU).

    Raises
    ------
    ValueError
        One line naming the path and the fix, for any missing, unreadable or foreign content.
    """
    import torch

    path = Path(path)
    config = read_model_config(path, architecture)
    weights_path = path / WEIGHTS_FILENAME
    if not weights_path.is_file():
        raise ValueError(f"{weights_path}: missing; copy the complete model folder or re-train the model")
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (RuntimeError, UnpicklingError, EOFError, ...)
        raise ValueError(
            f"{weights_path}: corrupted or not a PyTorch state dict ({_one_line(exc)}); re-copy or re-train "
            "the model"
        ) from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{weights_path}: not a state dict of named tensors; re-save or re-train the model")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    return ModelFolder(path=path, config=config, state_dict=state)


def load_state_checked(
    module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | Path
) -> None:
    """Load ``state_dict`` into ``module``, turning any key or shape mismatch into one clear line.

    Parameters
    ----------
    module : torch.nn.Module
        Network built from the folder's ``config.json``.
    state_dict : mapping of str to torch.Tensor
        Weights read from the folder.
    path : str or pathlib.Path
        The model folder, named in the message.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"missing {_short(missing)}")
        if unexpected:
            details.append(f"unexpected {_short(unexpected)}")
        if mismatched:
            details.append(f"shape mismatch {_short(mismatched)}")
        raise ValueError(
            f"{path}: {WEIGHTS_FILENAME} does not fit the network described by {CONFIG_FILENAME} "
            f"({'; '.join(details)}); the two files come from different models, re-save or re-train the model"
        )
    module.load_state_dict(dict(state_dict), strict=True)


def _short(items: list[str], limit: int = 3) -> str:
    head = ", ".join(items[:limit])
    return head + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_network(
    path: str | Path,
    architecture: str,
    version: object,
    config_class: type,
    build: Callable[[Any], Any],
) -> Any:
    """Read a model folder into a fresh network: check architecture and version, build, load weights.

    Parameters
    ----------
    path : str or pathlib.Path
        The model folder.
    architecture : str
        Expected ``architecture`` (e.g. ``"segnet"``).
    version : object
        Expected ``architecture_version``.
    config_class : type
        Pydantic model validating ``hyperparameters``.
    build : callable
        ``build(config) -> torch.nn.Module``.

    Returns
    -------
    torch.nn.Module
        In eval mode on the CPU, with ``training_info`` from the folder.
    """
    from pydantic import ValidationError

    folder = load_model_folder(path, architecture=architecture)
    found = folder.config.get("architecture_version")
    if found != version:
        raise ValueError(
            f"{path}: {architecture} architecture version {found!r} is not supported (this celltrack reads "
            f"{version}); re-train the model or use a matching celltrack"
        )
    try:
        config = config_class(**folder.config.get("hyperparameters", {}))
    except (ValidationError, TypeError) as exc:
        first = str(exc).splitlines()
        raise ValueError(
            f"{path}: invalid hyperparameters in config.json ({first[0] if first else exc}); "
            "re-save the model"
        ) from exc
    model = build(config)
    load_state_checked(model, folder.state_dict, path)
    model.training_info = dict(folder.config.get("training") or {})
    return model.eval()
