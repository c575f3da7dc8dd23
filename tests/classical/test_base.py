"""The classical-model contract: learned state of any size saved as safetensors and loaded whole."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ninshiki.classical.base import ClassicalDetector, ClassicalModel
from ninshiki.io import save_safetensors
from ninshiki.models.weights import read_state_dict
from ninshiki.structures import Detections


def test_state_of_any_size_round_trips_through_a_weights_file(tmp_path) -> None:
    model = ClassicalModel()
    assert not model.fitted
    model.set_state("codebook", np.arange(12, dtype=np.float32).reshape(4, 3))
    model.set_state("bias", torch.tensor([0.5]))
    save_safetensors(model.state_dict(), tmp_path / "w.safetensors")
    fresh = ClassicalModel()
    fresh.set_state("codebook", torch.zeros(1, 1))            # another size: replaced whole, not copied into
    fresh.load_state(read_state_dict(tmp_path / "w.safetensors"))
    assert fresh.fitted and set(fresh.state_dict()) == {"codebook", "bias"}
    assert torch.equal(fresh.state("codebook"), torch.arange(12, dtype=torch.float32).view(4, 3))


def test_unfitted_state_and_nested_keys_are_clear_errors() -> None:
    model = ClassicalModel()
    with pytest.raises(RuntimeError, match="not fitted"):
        model.state("codebook")
    with pytest.raises(ValueError, match="nested keys"):
        model.load_state({"head.weight": torch.zeros(1)})


def test_detector_postprocess_thresholds_caps_and_clips() -> None:
    detector = ClassicalDetector()
    detector.score_threshold, detector.max_detections = 0.5, 1
    raw = [Detections(torch.tensor([[-5.0, 2.0, 50.0, 30.0], [0.0, 0.0, 4.0, 4.0]]), torch.tensor([0.9, 0.2]),
                      torch.tensor([0, 0]))]
    (kept,) = detector.postprocess(raw, sizes=[(20, 40)])
    assert len(kept) == 1 and kept.boxes.tolist() == [[0.0, 2.0, 40.0, 20.0]]
    with pytest.raises(TypeError, match="fit, not trained"):
        detector.loss(raw, [])
