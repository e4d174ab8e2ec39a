"""The study's 5-layer SegNet ships on as its own model and gives the same outputs as before."""

from pathlib import Path

import numpy as np

from celltrack.models import SegNet
from celltrack.models.registry import load_segmentation_model

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "study_segnet_reference.npz"


def test_study_model_outputs_are_unchanged():
    # Recorded with celltrack before the default model changed (commit a7d4776's code and weights).
    reference = np.load(REFERENCE)
    model = load_segmentation_model("study")
    assert isinstance(model, SegNet)
    probabilities = model.predict_frame(reference["image"], nucleus_diameter=20.0)
    np.testing.assert_allclose(probabilities, reference["probabilities"], atol=1e-5)
    features = model.frame_features(reference["image"], nucleus_diameter=20.0)
    np.testing.assert_allclose(features[0][:4], reference["feature0"], atol=1e-5)
