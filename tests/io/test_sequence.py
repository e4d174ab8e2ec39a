from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from celltrack.io import open_sequence


def write_frames(folder, frames, prefix="t", digits=3):
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        photometric = "rgb" if frame.ndim == 3 and frame.shape[-1] == 3 else "minisblack"
        tifffile.imwrite(folder / f"{prefix}{t:0{digits}d}.tif", frame, photometric=photometric)
    return folder


@pytest.fixture
def movie():
    return np.random.default_rng(0).integers(0, 1000, (5, 12, 17), dtype=np.uint16)


@pytest.mark.parametrize("digits", [3, 4])
def test_ctc_folder_is_read_lazily_frame_by_frame(tmp_path, movie, digits):
    seq = open_sequence(write_frames(tmp_path / "01", movie, digits=digits))
    assert seq.shape == (5, 12, 17) and seq.dtype == np.uint16 and len(seq.paths) == 5
    np.testing.assert_array_equal(seq[3], movie[3])
    np.testing.assert_array_equal(np.stack(list(seq)), movie)
    assert seq[-1].shape == (12, 17)


def test_multipage_tiff_and_single_frame(tmp_path, movie):
    tifffile.imwrite(tmp_path / "movie.tif", movie)
    seq = open_sequence(tmp_path / "movie.tif")
    assert seq.shape == movie.shape
    np.testing.assert_array_equal(seq[2], movie[2])
    tifffile.imwrite(tmp_path / "one.tif", movie[0])
    assert open_sequence(tmp_path / "one.tif").shape == (1, 12, 17)


def test_zarr_array(tmp_path, movie):
    array = zarr.open_array(
        str(tmp_path / "movie.zarr"), mode="w", shape=movie.shape, dtype=movie.dtype, chunks=(1, 12, 17)
    )
    array[:] = movie
    seq = open_sequence(tmp_path / "movie.zarr")
    np.testing.assert_array_equal(seq[4], movie[4])


def test_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="no such file or folder"):
        open_sequence(tmp_path / "nope")


def test_folder_without_tiffs(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no CTC frame files"):
        open_sequence(tmp_path)


def test_non_tiff_file(tmp_path):
    (tmp_path / "movie.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="not a TIFF"):
        open_sequence(tmp_path / "movie.png")


def test_gap_in_numbering(tmp_path, movie):
    folder = write_frames(tmp_path / "01", movie)
    (folder / "t002.tif").unlink()
    with pytest.raises(ValueError, match=r"gaps .*\[2\]"):
        open_sequence(folder)


def test_mixed_shapes_and_dtypes(tmp_path, movie):
    folder = write_frames(tmp_path / "01", movie)
    tifffile.imwrite(folder / "t003.tif", movie[3, :10])
    with pytest.raises(ValueError, match="t003.tif: shape/dtype"):
        open_sequence(folder)
    tifffile.imwrite(folder / "t003.tif", movie[3].astype(np.float32))
    with pytest.raises(ValueError, match="t003.tif: shape/dtype"):
        open_sequence(folder)


def test_corrupt_tiff_names_the_file(tmp_path, movie):
    folder = write_frames(tmp_path / "01", movie)
    data = (folder / "t001.tif").read_bytes()
    (folder / "t001.tif").write_bytes(data[:20])
    with pytest.raises(ValueError, match="t001.tif"):
        open_sequence(folder)


@pytest.mark.parametrize("shape", [(8, 9, 3), (4, 8, 9)])
def test_rgb_or_3d_frames_rejected(tmp_path, shape):
    folder = write_frames(tmp_path / "01", [np.zeros(shape, np.uint8)] * 2)
    with pytest.raises(ValueError, match="2-D single-channel"):
        open_sequence(folder)


def test_all_nan_frame_rejected_partial_nan_repaired(tmp_path):
    frames = np.ones((3, 6, 6), np.float32)
    frames[1] = np.nan
    frames[2, 0, 0] = np.nan
    seq = open_sequence(write_frames(tmp_path / "01", frames))
    with pytest.raises(ValueError, match="t001.tif: the frame is all NaN"):
        seq[1]
    assert np.isfinite(seq[2]).all()


def test_index_out_of_range(tmp_path, movie):
    seq = open_sequence(write_frames(tmp_path / "01", movie))
    with pytest.raises(IndexError):
        seq[5]


def test_real_hela_is_lazy(hela_dir):
    seq = open_sequence(hela_dir / "01")
    assert seq.shape == (92, 700, 1100)
    frame = seq[91]
    assert frame.dtype == np.uint16 and frame.mean() > 30000  # camera offset


def test_cached_sequence_decodes_each_kept_frame_once_within_its_budget(tmp_path, movie):
    seq = open_sequence(write_frames(tmp_path / "01", movie))
    reads = []
    original = seq._reader
    seq._reader = lambda t: reads.append(t) or original(t)
    frame_bytes = movie[0].nbytes
    cached = seq.cached(2 * frame_bytes + 1)  # room for two frames
    for _ in range(2):  # two passes in frame order, as segmentation and linking make
        for t in range(len(cached)):
            np.testing.assert_array_equal(cached[t], movie[t])
    # the first two frames were decoded once; the others on every pass
    assert reads == [0, 1, *range(2, len(movie)), *range(2, len(movie))]
    assert cached.shape == seq.shape and cached.paths == seq.paths
    with pytest.raises(ValueError, match="read-only"):
        cached[0][0, 0] = 1
    with pytest.raises(ValueError, match="max_bytes"):
        seq.cached(-1)


def test_a_ctc_dataset_opens_as_its_only_sequence_and_names_its_sequences_otherwise(tmp_path, caplog):
    from celltrack.io import dataset_sequences, write_ctc_dataset
    from celltrack.synthetic import generate_movie

    movie = generate_movie(frames=3, height=48, width=48, nuclei=2, seed=0)
    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, tmp_path / "pos1")
    assert dataset_sequences(tmp_path / "pos1") == [tmp_path / "pos1" / "01"]
    assert dataset_sequences(tmp_path / "pos1" / "01") == []  # a sequence is no data set
    with caplog.at_level("INFO", logger="celltrack"):
        sequence = open_sequence(tmp_path / "pos1")
    assert Path(sequence.source) == tmp_path / "pos1" / "01" and len(sequence) == 3
    assert "CTC data set" in caplog.text and "01" in caplog.text

    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, tmp_path / "other", "02")
    (tmp_path / "other" / "02").rename(tmp_path / "pos1" / "02")
    with pytest.raises(ValueError, match=r"2 sequences \(01, 02\).*celltrack batch"):
        open_sequence(tmp_path / "pos1")
