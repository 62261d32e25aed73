"""Fidelity to the method and the reference: each test fails on the defect it is named after
(QuickGELU for OpenAI's CLIP, a TBL weight that switches itself off, a union encoder that can never
train, Dice at half its weight, heads at the wrong learning rate)."""

from __future__ import annotations

import torch
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file

from backend.model.factory import build_model
from backend.model.losses import LossConfig, RS2SAM2Loss, text_boundary_loss
from backend.model.presets import PRESETS, clip_model_config, get_preset
from backend.model.project.clip_loading import build_clip
from backend.weights.registry import PRESET_WEIGHTS
from backend.weights.resolve import with_cached_weights


def test_presets_with_openai_clip_weights_use_quickgelu(tmp_path):
    for name, files in PRESET_WEIGHTS.items():
        config = PRESETS[name]
        clip_file = next(f for f in files if f.kind == "clip")
        assert clip_file.architecture == config.clip_model, name  # the weights go where they were trained
        assert clip_model_config(config).get("quick_gelu") is True, name
    # The real tower (random weights): its MLPs use QuickGELU, not GELU.
    tower = build_clip(get_preset("tiny"))
    activations = {type(block.mlp.gelu) for block in tower.visual.transformer.resblocks}
    assert activations == {QuickGELU}
    # A cached OpenAI file is found for the preset (the registry and the preset agree on the model).
    clip_file = next(f for f in PRESET_WEIGHTS["tiny"] if f.kind == "clip")
    (tmp_path / clip_file.name).write_bytes(b"placeholder: only its presence is looked up here")
    resolved, _ = with_cached_weights(get_preset("tiny"), cache=tmp_path)
    assert resolved.clip_pretrained == str(tmp_path / clip_file.name)


def _train_boundary_weight(config, steps: int = 3000, lr: float = 1e-2) -> float:
    """Train only the text → w head on TBL against a fixed imperfect prediction; the smallest w left."""
    torch.manual_seed(0)
    model = build_model(config)
    text = torch.randn(4, model.boundary_head.in_features)
    logits = torch.zeros(4, 1, 16, 16)
    logits[:, :, 4:12, 4:12] = 3.0
    target = torch.zeros_like(logits)
    target[:, :, 3:10, 5:13] = 1.0
    optimizer = torch.optim.AdamW(model.boundary_head.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        w = model.boundary_weight(model.boundary_head(text).squeeze(-1))
        loss = text_boundary_loss(logits, target, w)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float(model.boundary_weight(model.boundary_head(text).squeeze(-1)).min())


def test_the_boundary_weight_stays_away_from_zero_over_a_long_run():
    config = get_preset("test")
    assert _train_boundary_weight(config) >= config.boundary_weight_min - 1e-6 >= 0.99
    # Without the floor the same run drives w to ~0: the boundary loss would switch itself off.
    assert _train_boundary_weight(config.replace(boundary_weight_min=0.0)) < 0.05


def test_the_union_encoder_can_be_fine_tuned_at_the_lower_rate(tmp_path, batch_inputs):
    config = get_preset("test")
    torch.manual_seed(1)
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in build_clip(config).state_dict().items()}, weights)
    model = build_model(config.replace(clip_pretrained=str(weights)))
    tower = dict(model.union.clip.named_parameters())
    assert not any(p.requires_grad for p in tower.values())  # pretrained towers: frozen by default

    model.unfreeze_union_encoder()
    unused = {id(p) for p in model.union.unused_clip_parameters()}
    used = [p for p in tower.values() if id(p) not in unused]
    assert all(p.requires_grad for p in used) and not any(
        p.requires_grad for p in tower.values() if id(p) in unused
    )
    assert any(p.requires_grad is False for p in model.sam.unused_parameters())  # other rules still hold
    groups = {g["name"]: g for g in model.param_groups(lr_new=1e-4, lr_rest=5e-5)}
    assert {id(p) for p in used} <= {id(p) for p in groups["rest"]["params"]}
    assert groups["rest"]["lr"] == 5e-5
    sam, clip = batch_inputs
    masks = torch.zeros(2, 1, config.image_size, config.image_size)
    masks[:, :, 20:60, 30:90] = 1
    RS2SAM2Loss(LossConfig())(model(sam, clip, ["a roof", "the river"]), masks)["total"].backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in model.union.clip.transformer.parameters()
    )


def test_heads_on_the_union_encoder_train_at_the_lower_rate_and_fusion_at_the_higher():
    model = build_model("test")
    groups = {g["name"]: {id(p) for p in g["params"]} for g in model.param_groups(lr_new=1e-4, lr_rest=5e-5)}
    for head in (model.text_proj, model.sparse_proj, model.boundary_head):
        assert {id(p) for p in head.parameters()} <= groups["rest"]
    for new in (model.adapters, model.mpg, model.text_gate, model.union.joint):
        assert {id(p) for p in new.parameters()} <= groups["new"]
