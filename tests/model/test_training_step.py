"""After one training step every trainable parameter got a gradient and frozen ones are bit-for-bit
unchanged."""

from __future__ import annotations

import pytest
import torch

from backend.model.factory import build_model
from backend.model.losses import LossConfig, RS2SAM2Loss, text_boundary_loss
from backend.model.presets import get_preset


def _masks(batch: int, size: int) -> torch.Tensor:
    masks = torch.zeros(batch, 1, size, size)
    masks[0, :, 10:60, 20:70] = 1
    masks[1, :, 70:120, 5:40] = 1
    return masks


@pytest.mark.parametrize("freeze_backbones", [True, False])
def test_one_step_updates_exactly_the_trainable_parameters(freeze_backbones, batch_inputs):
    torch.manual_seed(0)
    config = get_preset("test").replace(freeze_sam_backbone=freeze_backbones, freeze_clip=freeze_backbones)
    model = build_model(config).train()
    sam, clip = batch_inputs
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    frozen = set(before) - trainable
    # What is frozen: always the parts outside the data flow; the backbones only when asked.
    assert any(name.startswith("sam.sam_mask_decoder.iou_prediction_head") for name in frozen)
    assert any(name.startswith("sam.image_encoder.trunk") for name in frozen) == freeze_backbones
    assert any(name.startswith("union.clip.transformer") for name in frozen) == freeze_backbones
    assert all(not name.startswith(("adapters", "mpg", "text_gate", "union.joint")) for name in frozen)

    optimizer = torch.optim.AdamW(model.param_groups(lr_new=1e-3, lr_rest=5e-4))
    grouped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    loss = RS2SAM2Loss(LossConfig(aux_weight=0.5))(
        model(sam, clip, ["a red roof", "the river"]), _masks(2, 128)
    )
    optimizer.zero_grad()
    loss["total"].backward()

    no_grad = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert no_grad == []
    optimizer.step()
    after = dict(model.named_parameters())
    assert all(torch.equal(before[name], after[name]) for name in frozen)
    changed = [name for name in trainable if not torch.equal(before[name], after[name])]
    assert sorted(changed) == sorted(trainable)


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
