"""On-disk cache of per-frame feature maps (zarr, float16, one chunk per frame and layer)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class FeatureCache:
    """A zarr store of feature maps keyed by a digest of the frame's pixels.

    Keys are content digests, so a cache is shared safely across runs and movies: a changed frame
    simply misses. Maps are stored as float16 (half the memory of float32; the filters standardise
    every window, so the precision lost does not matter), one compressed chunk per frame and layer.

    Parameters
    ----------
    path : str or pathlib.Path
        The zarr folder (created if missing).
    namespace : str
        Separates caches of different extractors/models in one store (e.g. the model checksum).
    """

    def __init__(self, path: str | Path, namespace: str = "default") -> None:
        import zarr

        self.path = Path(path)
        try:
            self._root = zarr.open_group(str(self.path), mode="a")
        except Exception as err:  # zarr raises many types for a store that is not a group
            raise ValueError(
                f"{self.path}: not a usable feature cache ({err}); pass an empty or cache folder"
            ) from err
        self._group = self._root.require_group(namespace)
        self.hits = 0
        self.misses = 0
        self.bytes_written = 0

    @staticmethod
    def key(frame: np.ndarray) -> str:
        data = np.ascontiguousarray(frame)
        digest = hashlib.blake2b(data.tobytes(), digest_size=16)
        digest.update(f"{data.shape}{data.dtype}".encode())
        return digest.hexdigest()

    def __call__(
        self, frame: np.ndarray, compute: Callable[[np.ndarray], list[np.ndarray]]
    ) -> list[np.ndarray]:
        """The maps of ``frame``: read from the store, or computed and stored."""
        key = self.key(frame)
        if key in self._group:
            entry = self._group[key]
            n_layers = int(entry.attrs["layers"])
            self.hits += 1
            return [np.asarray(entry[str(i)][...], np.float32) for i in range(n_layers)]
        maps = compute(frame)
        entry = self._group.require_group(key)
        for i, layer in enumerate(maps):
            layer = np.asarray(layer, np.float16)
            array = entry.create_array(
                str(i), shape=layer.shape, dtype="float16", chunks=layer.shape, overwrite=True
            )
            array[...] = layer
            self.bytes_written += layer.nbytes
        entry.attrs["layers"] = len(maps)
        self.misses += 1
        return [np.asarray(m, np.float32) for m in maps]

    def megabytes_per_frame(self) -> float:
        """Uncompressed float16 size of one frame's maps (what the study needed ~1 GB for)."""
        return self.bytes_written / max(self.misses, 1) / 1e6
