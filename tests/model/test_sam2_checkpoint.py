"""Official-layout SAM 2 checkpoints (`{"model": state_dict}`), written by the test with the sam2 package."""

from __future__ import annotations

import pytest
import torch

from backend.errors import UserError
from backend.model.factory import build_model
from backend.model.presets import get_preset
from backend.model.sam2_loading import build_sam2_model


def _official_file(tmp_path, config, name="sam2_official.pt", seed=11):
    torch.manual_seed(seed)
    sam = build_sam2_model(config)  # the sam2 package's own model for this config, random weights
    path = tmp_path / name
    torch.save({"model": sam.state_dict()}, path)
    return path, sam.state_dict()


def test_official_checkpoint_loads_into_the_backbone_exactly(tmp_path):
    config = get_preset("test")
    path, official = _official_file(tmp_path, config)
    model = build_model(config.replace(sam2_checkpoint=str(path)))
    loaded = model.sam.state_dict()
    assert loaded.keys() <= official.keys()
    assert all(torch.equal(loaded[key], official[key]) for key in loaded)
    # Pretrained backbone → frozen as in the method (trunk + neck), decoder still trains.
    assert not any(p.requires_grad for p in model.sam.image_encoder.parameters())
    assert model.sam.sam_mask_decoder.transformer.layers[0].self_attn.q_proj.weight.requires_grad


def test_a_checkpoint_for_another_config_is_refused_naming_the_keys(tmp_path):
    # A full-size Hiera-T file does not fit the shrunken test preset.
    path, _ = _official_file(tmp_path, get_preset("tiny").replace(image_size=256), "sam2.1_hiera_tiny.pt")
    with pytest.raises(UserError) as info:
        build_model(get_preset("test").replace(sam2_checkpoint=str(path)))
    message = str(info.value)
    assert "does not match" in message and "sam2.1_hiera_tiny.pt" in message
    assert "image_encoder.trunk" in message  # names the offending keys
    assert "\n" not in message


def test_missing_and_unexpected_keys_are_named(tmp_path):
    config = get_preset("test")
    _, state = _official_file(tmp_path, config)
    state = dict(state)
    del state["sam_mask_decoder.iou_token.weight"]
    state["extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pt"
    torch.save({"model": state}, path)
    with pytest.raises(
        UserError,
        match=r"missing keys sam_mask_decoder\.iou_token\.weight.*unexpected keys extra_head\.weight",
    ):
        build_model(config.replace(sam2_checkpoint=str(path)))


def test_wrong_layout_and_corrupt_files_fail_clearly(tmp_path):
    config = get_preset("test")
    path, state = _official_file(tmp_path, config)
    bare = tmp_path / "bare.pt"
    torch.save(state, bare)  # a state dict without the {"model": …} wrapper
    with pytest.raises(UserError, match="official layout"):
        build_model(config.replace(sam2_checkpoint=str(bare)))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        build_model(config.replace(sam2_checkpoint=str(truncated)))
    with pytest.raises(UserError, match="does not exist"):
        build_model(config.replace(sam2_checkpoint=str(tmp_path / "nope.pt")))
