"""The PhraseSegmenter contract on the `test` preset, through the real sam2/open_clip model code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.errors import UserError
from backend.model.api import PhraseSegmenter
from backend.model.factory import load_predictor, resolve_device


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return load_predictor(preset="test", device="cpu")


@pytest.fixture
def device_predictor(device):
    torch.manual_seed(0)
    return load_predictor(preset="test", device=device)


def test_predict_returns_one_probability_map_per_phrase_at_image_size(device_predictor, device):
    predictor = device_predictor
    image = np.random.default_rng(1).integers(0, 256, (150, 97, 3), dtype=np.uint8)
    predictions = predictor.predict(image, ["the red roof", "a road", "water"])
    assert isinstance(predictor, PhraseSegmenter)
    assert predictor.device.type == device and next(predictor.model.parameters()).device.type == device
    assert predictor.input_size == 128
    assert len(predictions) == 3
    for prediction in predictions:
        assert prediction.probability.shape == (150, 97)
        assert prediction.probability.dtype == np.float32
        assert 0.0 <= prediction.probability.min() <= prediction.probability.max() <= 1.0
        assert 0.0 <= prediction.score <= 1.0
    # Different phrases give different maps (the text reaches the output).
    assert not np.allclose(predictions[0].probability, predictions[1].probability)


def test_bad_inputs_are_refused_in_one_sentence(predictor):
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    with pytest.raises(UserError, match="uint8"):
        predictor.predict(image.astype(np.float32), ["a"])
    with pytest.raises(UserError, match="H×W×3"):
        predictor.predict(np.zeros((32, 32), dtype=np.uint8), ["a"])
    with pytest.raises(UserError, match="empty"):
        predictor.predict(image, ["  "])
    with pytest.raises(UserError, match="at least one phrase"):
        predictor.predict(image, [])


def test_cuda_without_a_gpu_is_refused(monkeypatch):
    # The GPU's absence is simulated, so that a machine with one checks the refusal too.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="no CUDA"):
        load_predictor(preset="test", device="cuda:0")
    with pytest.raises(UserError, match="Unknown device"):
        resolve_device("tpu")
    assert resolve_device("auto").type == "cpu"


def test_auto_and_cuda_take_the_gpu_exactly_when_there_is_one():
    """The real machine, both ways: without a GPU `auto` is the CPU (and `cuda` is refused, above); with
    one `auto` and `cuda[:N]` are that GPU."""
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        return
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("CUDA") == torch.device("cuda")


def test_predicting_mid_training_leaves_the_model_in_training_mode(test_model):
    from backend.model.project.predictor import RS2SAM2Predictor

    test_model.train()
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    RS2SAM2Predictor(test_model, "mid-training").predict(image, ["a roof"])
    assert test_model.training and test_model.union.joint.training
    test_model.eval()
    RS2SAM2Predictor(test_model, "eval").predict(image, ["a roof"])
    assert not test_model.training
