"""The napari plugin (npe2 manifest ``celltrack/napari.yaml``): open result folders, track the open movie.

Everything napari shows is prepared by plain functions (napari *LayerData* tuples), usable and
tested without napari; only the dock widget needs napari and Qt (``pip install "celltrack[napari]"``).
"""

from celltrack.napari_plugin.reader import napari_get_reader, read_result_folder
from celltrack.napari_plugin.widget import TrackOptions, track_movie

__all__ = ["TrackOptions", "napari_get_reader", "read_result_folder", "track_movie"]
