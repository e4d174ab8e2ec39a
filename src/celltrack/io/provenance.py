"""The run record ``celltrack.json`` written beside every result: what ran, on what, how long."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celltrack import __version__
from celltrack.io.atomic import final_path

RECORD_NAME = "celltrack.json"


def file_checksum(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"{algorithm}:{digest.hexdigest()}"


def array_checksum(array: Any) -> str:
    """Checksum of an array's bytes, shape and dtype (for inputs that are not files, e.g. zarr frames)."""
    import numpy as np

    data = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{data.shape}{data.dtype}".encode())
    digest.update(data.tobytes())
    return f"sha256:{digest.hexdigest()}"


@dataclass
class StageTimer:
    """Wall-clock seconds per named stage."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def run_record(
    command: str,
    config: Mapping[str, Any],
    inputs: Mapping[str, Any],
    timings: Mapping[str, float] | None = None,
    models: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-ready provenance of one run.

    Parameters
    ----------
    command : str
        The command that ran (``track``, ``cf-track``, ``demo`` ...).
    config : mapping
        The full effective configuration.
    inputs : mapping
        Input paths and checksums (see :func:`sequence_fingerprint`).
    timings : mapping, optional
        Seconds per stage.
    models : mapping, optional
        Model name to weights checksum.
    extra : mapping, optional
        Anything else worth keeping (counts, metrics).
    """
    return {
        "celltrack_version": __version__,
        "command": command,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "config": dict(config),
        "inputs": dict(inputs),
        "models": dict(models or {}),
        "timings_seconds": {k: round(v, 3) for k, v in (timings or {}).items()},
        **dict(extra or {}),
    }


def sequence_fingerprint(sequence: Any) -> dict[str, Any]:
    """Path, shape and checksums of the first and last frame of an :class:`ImageSequence`.

    The path is the movie's final one, also for a movie written into a temporary output folder.
    """
    info: dict[str, Any] = {
        "path": str(final_path(Path(sequence.source).absolute())),
        "shape": list(sequence.shape),
        "dtype": str(sequence.dtype),
    }
    if len(sequence) == 0:
        return info
    if sequence.paths:
        info["first_frame"] = {"file": sequence.paths[0].name, "checksum": file_checksum(sequence.paths[0])}
        info["last_frame"] = {"file": sequence.paths[-1].name, "checksum": file_checksum(sequence.paths[-1])}
    else:
        info["first_frame"] = {"index": 0, "checksum": array_checksum(sequence[0])}
        info["last_frame"] = {
            "index": len(sequence) - 1,
            "checksum": array_checksum(sequence[len(sequence) - 1]),
        }
    return info


def dumps_record(record: Mapping[str, Any]) -> bytes:
    """Stable JSON bytes (sorted keys) so that identical runs give identical records up to timings."""
    return (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
