"""Annotated images for segmentation training: images/+labels/ folders and CTC SEG truth, read alike."""

import numpy as np
import pytest
import tifffile

from celltrack.io import write_ctc_dataset
from celltrack.io.annotations import read_annotations, read_image_folder
from celltrack.synthetic import generate_movie


@pytest.fixture(scope="module")
def movie():
    return generate_movie(frames=3, height=48, width=64, nuclei=5, seed=2)


@pytest.fixture
def image_folder(tmp_path, movie):
    root = tmp_path / "my-nuclei"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for t in range(3):
        tifffile.imwrite(root / "images" / f"img{t}.tif", movie.images[t])
        tifffile.imwrite(root / "labels" / f"img{t}.tif", movie.labels[t].astype(np.uint16))
    (root / "manifest.csv").write_text(
        "name,median_diameter_px,source_split\nimg0,18.5,train\nimg1,,train\nimg2,,test\n"
    )
    return root


def test_both_layouts_read_into_the_same_records(tmp_path, movie, image_folder):
    write_ctc_dataset(movie.images, movie.labels, movie.markers, movie.tracks, tmp_path / "ctc")
    images = read_annotations([image_folder, tmp_path / "ctc" / "01"])
    sources = [i.source for i in images]
    assert sources.count("my-nuclei") == 3 and sources.count("ctc/01") == 3
    for item in images:
        assert item.image.shape == item.mask.shape == (48, 64)
        assert item.mask.dtype == np.int32 and item.mask.max() > 0
    assert images[0].diameter == pytest.approx(18.5) and np.isnan(images[1].diameter)
    # A CTC dataset folder expands into its sequences.
    assert [i.source for i in read_annotations([tmp_path / "ctc"])] == ["ctc/01"] * 3


def test_manifest_splits_can_be_left_out(image_folder):
    kept = read_image_folder(image_folder, exclude_splits=["test"])
    assert [i.name for i in kept] == ["my-nuclei/img0", "my-nuclei/img1"]


def test_image_without_labels_is_rejected_with_its_name(image_folder):
    (image_folder / "labels" / "img1.tif").unlink()
    with pytest.raises(ValueError, match=r"img1\.tif: no label image labels/img1\.tif") as info:
        read_annotations([image_folder])
    assert "\n" not in str(info.value)


def test_mismatched_or_foreign_inputs_are_rejected(tmp_path, image_folder):
    tifffile.imwrite(image_folder / "labels" / "img0.tif", np.zeros((5, 5), np.uint16))
    with pytest.raises(ValueError, match="do not match"):
        read_image_folder(image_folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither an images/"):
        read_annotations([tmp_path / "empty"])
    with pytest.raises(ValueError, match="does not exist"):
        read_annotations([tmp_path / "missing"])


def test_train_command_reports_a_missing_label_in_one_line(image_folder, tmp_path, capsys):
    from celltrack.cli.main import main

    (image_folder / "labels" / "img2.tif").unlink()
    out = tmp_path / "m"
    code = main(["train", "segnet", "--data", str(image_folder), "--out", str(out), "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "img2.tif" in err[0]
    assert not (tmp_path / "m").exists()
