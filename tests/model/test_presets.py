"""The presets: all compose from the packages' shipped configs; `tiny` runs end to end at a small size."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose

from backend.errors import UserError
from backend.model.factory import build_model
from backend.model.presets import PRESETS, ModelConfig, clip_model_config, get_preset
from backend.model.sam2_loading import sam2_overrides


@pytest.mark.parametrize(
    "name", ["test", "tiny", "base", "large", "paper-rrsisd", "paper-refsegrs", "paper-test"]
)
def test_every_preset_composes(name):
    from backend.model.paper.build import paper_sam2_overrides

    config = get_preset(name)
    overrides = paper_sam2_overrides(config) if config.family == "paper" else sam2_overrides(config)
    sam_cfg = compose(config_name=config.sam2_config, overrides=overrides)
    assert sam_cfg.model.image_size == config.image_size
    if config.family == "paper":
        assert config.union_encoder == "beit3" and config.clip_image_size == config.beit3_image_size
        assert sam_cfg.model.image_encoder.trunk._target_.endswith("PaperHiera")
    else:
        assert config.union_encoder == "clip"
        assert clip_model_config(config)["vision_cfg"]["image_size"] == config.clip_image_size
    assert ModelConfig.from_json(config.to_json()) == config  # survives the checkpoint header


def test_preset_choice_is_validated():
    with pytest.raises(UserError, match="Unknown model preset 'huge'.*test, tiny, base, large, paper-rrsisd"):
        get_preset("huge")
    with pytest.raises(UserError, match="multiple of 32"):
        build_model(get_preset("test").replace(image_size=100))
    assert sorted(PRESETS) == [
        "base",
        "large",
        "paper-refsegrs",
        "paper-rrsisd",
        "paper-test",
        "test",
        "tiny",
    ]
    with pytest.raises(UserError, match="unknown family"):
        ModelConfig.from_json(get_preset("tiny").replace(family="other").to_json())
    assert json.loads(get_preset("tiny").to_json())["clip_model"] == "ViT-B-16-quickgelu"


@pytest.mark.slow
def test_tiny_preset_runs_end_to_end_at_256():
    """The real SAM 2.1 Hiera-T + CLIP ViT-B-16 architecture (random weights), at a non-1024 size."""
    torch.manual_seed(0)
    model = build_model(get_preset("tiny").replace(image_size=256)).eval()
    assert len(model.adapters) == len(model.sam.image_encoder.trunk.blocks) == 12
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 256, 256), torch.randn(1, 3, 224, 224), ["the red roof", "a road"])
    assert out.logits.shape == (2, 1, 256, 256) and out.pseudo_mask_logits.shape == (2, 1, 14, 14)
    assert torch.isfinite(out.logits).all()
