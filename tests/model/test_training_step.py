"""After one training step every trainable parameter got a real gradient and moved, the parameters whose
gradient is zero by construction got none, and frozen ones are bit-for-bit unchanged."""

from __future__ import annotations

import math
import re

import pytest
import torch

from backend.model.factory import build_model
from backend.model.losses import LossConfig, RS2SAM2Loss, text_boundary_loss
from backend.model.presets import get_preset
from tests.gpu_support import strict_fp32

# Zero gradient by construction: the key biases of the SAM mask decoder's attentions (2 two-way layers
# × 3 attentions + the final one). A key bias adds q·b_k to every key's score of a query — the same
# shift for all keys — and softmax ignores a shared shift. What backward leaves there is float noise
# (measured 2e-11…8e-10 of the gradient's global norm).
ZERO_BY_CONSTRUCTION = re.compile(r"sam\.sam_mask_decoder\.transformer\..*k_proj\.bias")
ZERO_BY_CONSTRUCTION_COUNT = 7
# A gradient at most this share of the global norm is noise. The smallest real one here, through the
# adapters' text path (outputs initialised at 1e-3), is 1.2e-7 of it; the noise above is 8e-10 at most.
NOISE_SHARE = 1e-8
# AdamW's first step moves an element by lr·g/(|g|+eps) (eps 1e-8) besides weight decay. A parameter
# counts as moved when some element moved by a quarter of its lr: that takes |g| ≥ eps/3, while float
# noise (≤ 1e-9 per element) moves an element by at most lr/10.
MOVED_SHARE_OF_LR = 0.25


def _masks(batch: int, size: int) -> torch.Tensor:
    masks = torch.zeros(batch, 1, size, size)
    masks[0, :, 10:60, 20:70] = 1
    masks[1, :, 70:120, 5:40] = 1
    return masks


@pytest.mark.parametrize("freeze_backbones", [True, False])
def test_one_step_updates_exactly_the_trainable_parameters(freeze_backbones, batch_inputs, device):
    """On each device, in plain fp32 (strict_fp32: no TF32 in CUDA's convolutions), so that the noise
    bounds above, measured in fp32, hold on the GPU too; training's bf16 autocast on the GPU is
    tests/model/test_gpu_training.py."""
    torch.manual_seed(0)
    config = get_preset("test").replace(freeze_sam_backbone=freeze_backbones, freeze_clip=freeze_backbones)
    model = build_model(config, device=device).train()
    sam, clip = (tensor.to(device) for tensor in batch_inputs)
    with strict_fp32():
        _one_step_updates_exactly_the_trainable_parameters(model, sam, clip, freeze_backbones)


def _one_step_updates_exactly_the_trainable_parameters(model, sam, clip, freeze_backbones):
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    frozen = set(before) - trainable
    # What is frozen: always the parts outside the data flow; the backbones only when asked.
    assert any(name.startswith("sam.sam_mask_decoder.iou_prediction_head") for name in frozen)
    assert any(name.startswith("sam.image_encoder.trunk") for name in frozen) == freeze_backbones
    assert any(name.startswith("union.clip.transformer") for name in frozen) == freeze_backbones
    assert all(not name.startswith(("adapters", "mpg", "text_gate", "union.joint")) for name in frozen)
    zero = {name for name in trainable if ZERO_BY_CONSTRUCTION.fullmatch(name)}
    assert len(zero) == ZERO_BY_CONSTRUCTION_COUNT, sorted(zero)

    optimizer = torch.optim.AdamW(model.param_groups(lr_new=1e-3, lr_rest=5e-4))
    grouped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    loss = RS2SAM2Loss(LossConfig(aux_weight=0.5))(
        model(sam, clip, ["a red roof", "the river"]), _masks(2, 128).to(sam.device)
    )
    optimizer.zero_grad()
    loss["total"].backward()

    params = dict(model.named_parameters())
    assert all(params[name].grad is not None for name in trainable)
    grads = {name: params[name].grad.detach().clone() for name in trainable}
    scale = math.sqrt(sum(float(g.double().norm()) ** 2 for g in grads.values()))
    share = {name: float(g.norm()) / scale for name, g in grads.items()}
    assert {name for name in zero if share[name] > NOISE_SHARE} == set()
    assert sorted(name for name in trainable - zero if not share[name] > NOISE_SHARE) == []

    optimizer.step()
    assert all(torch.equal(before[name], params[name]) for name in frozen)
    moved = {}
    for name in trainable:
        group = group_of[id(params[name])]
        decayed = before[name] * (1 - group["lr"] * group["weight_decay"])  # AdamW's decoupled decay
        moved[name] = float((params[name].detach() - decayed).abs().max()) / group["lr"]
    assert sorted(name for name in trainable - zero if not moved[name] >= MOVED_SHARE_OF_LR) == []
    assert {name: moved[name] for name in zero if moved[name] >= MOVED_SHARE_OF_LR} == {}


def test_boundary_loss_alone_sends_gradient_to_the_mask_logits():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 32, 32, requires_grad=True)
    target = torch.zeros(2, 1, 32, 32)
    target[:, :, 8:20, 8:20] = 1
    weight_logit = torch.zeros(2, requires_grad=True)
    soft = text_boundary_loss(logits, target, 2.0 * torch.sigmoid(weight_logit), mode="soft")
    soft.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert weight_logit.grad is not None and (weight_logit.grad != 0).all()  # one weight per sample

    logits.grad = None
    reference = text_boundary_loss(logits, target, weight_logit, mode="reference")
    reference.backward()
    assert (
        logits.grad is None or logits.grad.abs().sum() == 0
    )  # the published version: nothing reaches the mask


def test_boundary_loss_through_the_model_reaches_the_decoder(test_model, batch_inputs):
    sam, clip = batch_inputs
    out = test_model.train()(sam, clip, ["a red roof", "the river"])
    out.logits.retain_grad()
    tbl = text_boundary_loss(out.logits, _masks(2, 128), out.boundary_weight)
    tbl.backward()
    assert out.logits.grad.abs().sum() > 0
    assert test_model.boundary_head.weight.grad.abs().sum() > 0
    assert test_model.sam.sam_mask_decoder.output_upscaling[0].weight.grad.abs().sum() > 0
