"""Shapes of every module's outputs, at two image sizes; one adapter per Hiera block; sam2's key names
kept."""

from __future__ import annotations

import pytest
import torch

from backend.model.factory import build_model
from backend.model.presets import get_preset
from backend.model.sam2_loading import build_sam2_model


@pytest.mark.parametrize("image_size", [128, 192])
def test_module_output_shapes(image_size):
    torch.manual_seed(0)
    config = get_preset("test").replace(image_size=image_size)
    model = build_model(config).eval()
    grid = config.clip_image_size // 16  # CLIP patch grid (7 at 112 px)
    sam = torch.randn(3, 3, image_size, image_size)
    clip = torch.randn(3, 3, config.clip_image_size, config.clip_image_size)
    phrases = ["the red roof", "a long river through the whole picture", "trees"]
    tokens = model.tokenize(phrases)
    width, prompt_dim = config.union_width, model.sam.hidden_dim
    with torch.no_grad():
        union = model.union(clip, tokens)
        assert union.cls.shape == (3, 1, width)
        assert union.patches.shape == (3, grid, grid, width)
        assert union.text.shape == (3, tokens.ids.shape[1], width)

        embedding, high_res = model.sam.encode_image(sam)
        assert embedding.shape == (3, prompt_dim, image_size // 16, image_size // 16)
        assert [tuple(f.shape[-2:]) for f in high_res] == [(image_size // 4,) * 2, (image_size // 8,) * 2]

        pseudo = model.mpg(union.cls, union.patches)
        assert pseudo.shape == (3, 1, grid, grid)
        gated = model.text_gate(
            embedding, model.sam.sam_prompt_encoder.get_dense_pe(), model.text_proj(union.text), ~tokens.valid
        )
        assert gated.shape == embedding.shape

        out = model(sam, clip, tokens)
    assert out.logits.shape == (3, 1, image_size, image_size)
    assert out.low_res_logits.shape == (3, 1, image_size // 4, image_size // 4)
    assert out.pseudo_mask_logits.shape == (3, 1, grid, grid)
    assert out.boundary_logit.shape == out.boundary_weight.shape == (3,)
    low, high = config.boundary_weight_min, config.boundary_weight_max
    assert bool(((out.boundary_weight > low) & (out.boundary_weight < high)).all())
    assert torch.isfinite(out.logits).all()


def test_one_adapter_per_hiera_block_and_sam2_key_names_are_kept(test_model):
    trunk = test_model.sam.image_encoder.trunk
    assert len(test_model.adapters) == len(trunk.blocks) == 5
    for block, adapter in zip(trunk.blocks, test_model.adapters):
        assert adapter.fusion.up.out_features == block.dim_out  # sized to the block's width
        assert adapter.mlp.up.out_features == block.dim_out
    # Only the last block's adapter has no text-update weights (its text state is discarded).
    assert [a.fusion.updates_text for a in test_model.adapters] == [True] * 4 + [False]

    reference = build_sam2_model(test_model.config)
    sam_keys = set(test_model.sam.state_dict())
    official = {
        k
        for k in reference.state_dict()
        if k.split(".")[0] in ("image_encoder", "sam_prompt_encoder", "sam_mask_decoder", "no_mem_embed")
    }
    assert sam_keys == official  # adapters add no keys inside SAM 2


def test_adapters_act_only_when_text_is_given(test_model):
    """Without a text state the hooked encoder is plain SAM 2; with it, the adapters change the features."""
    torch.manual_seed(1)
    model = test_model.eval()
    sam = torch.randn(1, 3, 128, 128)
    plain = build_sam2_model(model.config)
    plain.load_state_dict({**plain.state_dict(), **{k: v for k, v in model.sam.state_dict().items()}})
    with torch.no_grad():
        hooked_plain = model.sam.image_encoder(sam)["backbone_fpn"][-1]
        reference = plain.image_encoder(sam)["backbone_fpn"][-1]
        assert torch.equal(hooked_plain, reference)
        text = torch.randn(1, 4, model.sam.hidden_dim)
        model._text_state.text, model._text_state.padding = text, torch.zeros(1, 4, dtype=torch.bool)
        try:
            fused = model.sam.image_encoder(sam)["backbone_fpn"][-1]
        finally:
            model._text_state.text = model._text_state.padding = None
    assert not torch.allclose(fused, reference)
