"""Window centres: validation shared by the tensor and the numpy form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from celltrack.cf import as_centres, centres_array


@pytest.mark.parametrize("convert", [np.asarray, torch.as_tensor, lambda a: a.tolist()])
def test_centres_in_every_form_give_the_same_float64_positions(convert) -> None:
    centres = np.array([[1.5, 2.25], [300.0, 4.0]], np.float32)
    array = centres_array(convert(centres))
    tensor = as_centres(convert(centres))
    assert array.dtype == np.float64 and tensor.dtype == torch.float64
    np.testing.assert_array_equal(array, centres.astype(np.float64))
    np.testing.assert_array_equal(tensor.numpy(), array)
    assert centres_array([]).shape == (0, 2) and as_centres([]).shape == (0, 2)


@pytest.mark.parametrize("convert", [np.asarray, torch.as_tensor])
@pytest.mark.parametrize(
    ("bad", "message"), [(np.zeros((3, 3)), r"shape \(N, 2\)"), (np.array([[1.0, np.nan]]), "NaN or inf")]
)
def test_bad_centres_are_refused_alike(convert, bad: np.ndarray, message: str) -> None:
    for validate in (as_centres, centres_array):
        with pytest.raises(ValueError, match=message):
            validate(convert(bad))
