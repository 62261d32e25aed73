"""RS2-SAM 2 checkpoints: one file with config + weights; identical predictions after a round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.errors import UserError
from backend.model.checkpoint import read_checkpoint, save_checkpoint
from backend.model.factory import build_model, load_checkpoint, load_predictor
from backend.model.presets import get_preset
from backend.model.project.predictor import RS2SAM2Predictor

from .conftest import random_image


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(4)
    model = build_model(get_preset("test").replace(freeze_clip=True)).eval()
    path = save_checkpoint(tmp_path / "demo.safetensors", model, metadata={"epoch": 7, "miou": 0.5})
    return model, path


def test_round_trip_gives_identical_predictions(saved):
    model, path = saved
    image = random_image(90, 140, seed=2)
    phrases = ["the red roof", "a road"]
    before = RS2SAM2Predictor(model, "x").predict(image, phrases)
    predictor = load_predictor(checkpoint=path, device="cpu")
    after = predictor.predict(image, phrases)
    assert predictor.model_id == "demo"
    for a, b in zip(before, after):
        assert np.array_equal(a.probability, b.probability) and a.score == b.score
    reloaded, metadata = load_checkpoint(path)
    assert metadata == {"epoch": 7, "miou": 0.5}
    assert reloaded.config.clip_frozen  # the file carries the configuration, freezing included
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))


def test_truncated_or_foreign_files_fail_clearly(saved, tmp_path):
    _, path = saved
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_predictor(checkpoint=truncated, device="cpu")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="corrupt or truncated"):
        read_checkpoint(garbage)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(UserError, match="not an RS2-SAM 2 checkpoint"):
        read_checkpoint(foreign)


def test_a_checkpoint_of_another_architecture_is_refused(saved):
    _, path = saved
    with pytest.raises(UserError, match=r"made for preset 'test', not 'tiny'.*image_size"):
        load_predictor(preset="tiny", checkpoint=path, device="cpu")


def test_saving_never_overwrites_and_leaves_no_partial_file(saved, tmp_path):
    model, path = saved
    original = path.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        save_checkpoint(path, model)
    assert path.read_bytes() == original
    save_checkpoint(path, model, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.safetensors"]  # no temp files left behind
