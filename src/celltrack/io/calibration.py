"""Physical calibration of a movie: pixel size and frame interval, from its TIFF metadata when it has any.

celltrack measures in pixels and frames. Exports that other tools open in physical units (TrackMate,
Mastodon, GEFF readers) take the calibration from the movie's ImageJ or OME-TIFF metadata; a movie
without it (CTC data sets, most plain TIFFs) stays in pixels and frames, with a scale of 1.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

import tifffile

from celltrack.io.sequence import TIFF_SUFFIXES, list_frame_files

logger = logging.getLogger(__name__)

#: Spellings of micrometres in ImageJ and OME metadata.
_MICROMETRE = {"um", "µm", "μm", "micron", "microns", "micrometer", "micrometre", "\\u00b5m"}
#: Time units as OME-NGFF names them, by the spellings ImageJ and OME use.
_TIME_UNITS = {
    "s": "second",
    "sec": "second",
    "second": "second",
    "seconds": "second",
    "ms": "millisecond",
    "min": "minute",
    "minute": "minute",
    "minutes": "minute",
    "h": "hour",
    "hr": "hour",
    "hour": "hour",
    "hours": "hour",
}


@dataclass(frozen=True)
class Calibration:
    """Size of a pixel and time between frames.

    Attributes
    ----------
    pixel_size : float
        Length of a pixel side in ``space_unit`` (square pixels).
    space_unit : str
        ``"micrometer"`` when known, else ``"pixel"`` (and ``pixel_size`` 1).
    frame_interval : float
        Time between frames in ``time_unit``.
    time_unit : str
        An OME-NGFF time unit (``"second"``, ``"minute"`` …) when known, else ``"frame"``.
    """

    pixel_size: float = 1.0
    space_unit: str = "pixel"
    frame_interval: float = 1.0
    time_unit: str = "frame"

    def __post_init__(self) -> None:
        for name in ("pixel_size", "frame_interval"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")

    @property
    def space_known(self) -> bool:
        return self.space_unit != "pixel"

    @property
    def time_known(self) -> bool:
        return self.time_unit != "frame"

    def with_overrides(
        self, pixel_size: float | None = None, frame_interval: float | None = None
    ) -> Calibration:
        """The same calibration with a pixel size in micrometres and/or a frame interval in seconds."""
        calibration = self
        if pixel_size is not None:
            calibration = replace(calibration, pixel_size=float(pixel_size), space_unit="micrometer")
        if frame_interval is not None:
            calibration = replace(calibration, frame_interval=float(frame_interval), time_unit="second")
        return calibration


def read_calibration(movie: str | Path) -> Calibration:
    """The calibration a movie's TIFF metadata declares (ImageJ hyperstack or OME-TIFF).

    Parameters
    ----------
    movie : str or pathlib.Path
        A (T, Y, X) TIFF, or a CTC folder (its first frame's metadata is read).

    Returns
    -------
    Calibration
        Pixels and frames (scale 1) for whatever is not declared, e.g. zarr arrays, unreadable
        files and TIFFs whose only resolution is a display DPI.
    """
    path = Path(movie)
    if path.is_dir():
        try:
            _, files = list_frame_files(path)
        except ValueError:
            return Calibration()
        path = files[min(files)]
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
        return Calibration()
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                return _from_ome(tif.ome_metadata)
            if tif.is_imagej and tif.imagej_metadata:
                return _from_imagej(tif.imagej_metadata, tif.pages[0].tags)
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError) as err:
        logger.debug("%s: no calibration read (%s)", path, err)
    return Calibration()


def _from_imagej(metadata: dict, tags: tifffile.TiffTags) -> Calibration:
    pixel_size, space_unit = 1.0, "pixel"
    resolution = tags.get("XResolution")
    if str(metadata.get("unit", "")).strip().lower() in _MICROMETRE and resolution is not None:
        numerator, denominator = resolution.value
        if numerator > 0 and denominator > 0:
            pixel_size, space_unit = denominator / numerator, "micrometer"
    interval, time_unit = 1.0, "frame"
    finterval = metadata.get("finterval")
    if isinstance(finterval, int | float) and finterval > 0:
        # ImageJ's default time unit is the second
        interval = float(finterval)
        time_unit = _TIME_UNITS.get(str(metadata.get("tunit", "s")).strip().lower(), "second")
    return Calibration(pixel_size, space_unit, interval, time_unit)


def _from_ome(xml: str) -> Calibration:
    pixels = re.search(r"<(?:\w+:)?Pixels\b([^>]*)>", xml)
    if pixels is None:
        return Calibration()
    attributes = dict(re.findall(r'(\w+)="([^"]*)"', pixels.group(1)))
    pixel_size, space_unit = 1.0, "pixel"
    size = _positive(attributes.get("PhysicalSizeX"))
    if size is not None and attributes.get("PhysicalSizeXUnit", "µm").strip().lower() in _MICROMETRE:
        pixel_size, space_unit = size, "micrometer"
    interval, time_unit = 1.0, "frame"
    increment = _positive(attributes.get("TimeIncrement"))
    unit = _TIME_UNITS.get(attributes.get("TimeIncrementUnit", "s").strip().lower())
    if increment is not None and unit is not None:
        interval, time_unit = increment, unit
    return Calibration(pixel_size, space_unit, interval, time_unit)


def _positive(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None
