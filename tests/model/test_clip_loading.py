"""open_clip weights from a local file (the offline path) and clear errors for tags and bad files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from backend.errors import UserError
from backend.model.factory import build_model
from backend.model.presets import get_preset
from backend.model.project.clip_loading import build_clip


def test_local_clip_weights_are_loaded_and_freeze_the_towers(tmp_path):
    config = get_preset("test")
    torch.manual_seed(21)
    source = build_clip(config)
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, path)
    model = build_model(config.replace(clip_pretrained=str(path)))
    for key, value in source.state_dict().items():
        assert torch.equal(model.union.clip.state_dict()[key], value)
    assert not any(p.requires_grad for p in model.union.clip.parameters())
    assert all(p.requires_grad for p in model.union.joint.parameters())  # joint layers always train

    wrapped = tmp_path / "clip_training_ckpt.pt"  # open_clip's training checkpoints: DDP-prefixed state_dict
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, wrapped)
    assert torch.equal(
        build_clip(config.replace(clip_pretrained=str(wrapped))).token_embedding.weight,
        source.token_embedding.weight,
    )


def test_unknown_tag_and_mismatched_file_fail_clearly(tmp_path):
    config = get_preset("test")
    with pytest.raises(UserError, match="neither a weights file nor an open_clip tag"):
        build_clip(
            config.replace(clip_model="ViT-B-16", clip_model_config=None, clip_pretrained="no-such-tag")
        )
    path = tmp_path / "other.pt"
    torch.save({"visual.conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="missing keys .*unexpected|wrongly shaped"):
        build_clip(config.replace(clip_pretrained=str(path)))


def test_a_hub_tag_that_cannot_be_fetched_fails_with_advice(monkeypatch):
    """The hub layer is replaced by one that fails as it does offline (a real attempt takes ~45 s of
    retries)."""
    import open_clip

    real_create = open_clip.create_model
    calls = []

    def offline_create(name, pretrained=None, **kwargs):
        if pretrained is None:
            return real_create(name, pretrained=None, **kwargs)
        calls.append((name, pretrained))
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(open_clip, "create_model", offline_create)
    config = get_preset("test").replace(
        clip_model="ViT-B-16", clip_pretrained="openai"
    )  # small towers, real tag
    with pytest.raises(UserError, match="Could not fetch CLIP weights ViT-B-16/openai.*local weights file"):
        build_clip(config)
    assert calls == [("ViT-B-16", "openai")]
