"""RS2-SAM 2 losses: weighted cross-entropy, Dice, the text-guided boundary loss (TBL), optional aux.

Logits z are ordinary mask logits (σ(z) > 0.5 = object) in training and inference alike; the
two-class CE with class weights (bg 0.9, fg 1.1) is the weighted BCE on z.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.model.loss_config import LossConfig
from backend.model.network_output import RS2SAM2Output

__all__ = ["LossConfig", "RS2SAM2Loss", "boundary_map", "dice_loss", "text_boundary_loss", "weighted_bce"]


def weighted_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    background: float,
    foreground: float,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class-weighted cross-entropy (normalised by the weights, as torch's weighted CE); pixels where
    `valid` is 0 weigh nothing."""
    weights = torch.where(target > 0.5, foreground, background).to(logits.dtype)
    if valid is not None:
        weights = weights * valid
    losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (weights * losses).sum() / weights.sum().clamp_min(1e-6)


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    smooth: float = 1.0,
    classes: str = "both",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """1 − Dice, averaged over the batch and summed over the two classes (object and background: the
    reference sums them, so Dice weighs twice a per-class mean) or of the object alone; pixels where
    `valid` is 0 count for neither class."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    pairs = [(prob, target), (1 - prob, 1 - target)]
    if valid is not None:
        keep = valid.flatten(1).to(prob.dtype)
        pairs = [(p * keep, g * keep) for p, g in pairs]
    if classes == "foreground":
        pairs = pairs[:1]
    elif classes != "both":
        raise ValueError(f"unknown Dice classes {classes!r}")
    losses = []
    for p, g in pairs:
        intersection = (p * g).sum(1)
        losses.append(1 - (2 * intersection + smooth) / (p.sum(1) + g.sum(1) + smooth))
    return torch.stack(losses).mean(dim=1).sum()


def boundary_map(mask: torch.Tensor) -> torch.Tensor:
    """|M(i,j) − M(i−1,j)| + |M(i,j) − M(i,j−1)| with zero padding; mask (B,1,H,W)."""
    up = F.pad(mask, (0, 0, 1, 0))[..., :-1, :]
    left = F.pad(mask, (1, 0, 0, 0))[..., :, :-1]
    return (mask - up).abs() + (mask - left).abs()


def text_boundary_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    mode: str = "soft",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """mean((w·∇M − w·∇G)²), w one scalar per sample (B,); pixels where `valid` is 0 (and their
    edges) add nothing."""
    if mode == "soft":
        prediction = torch.sigmoid(logits)
    elif mode == "reference":
        prediction = (logits > 0).to(logits.dtype)  # hard: no gradient reaches the logits
    else:
        raise ValueError(f"unknown TBL mode {mode!r}")
    w = weight.reshape(-1, 1, 1, 1).to(logits.dtype)
    squared = (w * boundary_map(prediction) - w * boundary_map(target)) ** 2
    if valid is not None:  # an edge touching an ignored pixel is not known either
        squared = squared * (1 - boundary_map(1 - valid).clamp(max=1)) * valid
    return squared.mean()


class RS2SAM2Loss(nn.Module):
    def __init__(self, config: LossConfig | None = None):
        super().__init__()
        self.config = config or LossConfig()

    def forward(
        self, output: RS2SAM2Output, masks: torch.Tensor, ignore: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """masks (B,1,S,S) float {0,1} at the model's input size; `ignore` (same shape, optional): 1
        where the target is unknown (another object the phrase also names), left out of every term →
        {"total" (with grad), "ce", "dice", "tbl", "aux"}."""
        cfg = self.config
        logits = output.logits.float()
        masks = masks.to(logits.dtype)
        valid = None if ignore is None else 1 - ignore.to(logits.dtype)
        ce = weighted_bce(logits, masks, cfg.background_weight, cfg.foreground_weight, valid)
        dice = dice_loss(logits, masks, cfg.smooth, cfg.dice_classes, valid)
        weight = output.boundary_weight if cfg.tbl_mode == "soft" else output.boundary_logit
        tbl = text_boundary_loss(logits, masks, weight.float(), cfg.tbl_mode, valid)
        total = cfg.ce_weight * ce + cfg.dice_weight * dice + cfg.tbl_weight * tbl
        aux = torch.zeros((), device=logits.device)
        if cfg.aux_weight > 0:
            grid = output.pseudo_mask_logits.shape[-2:]
            soft_target = F.adaptive_avg_pool2d(masks, grid)  # share of object pixels in each patch
            aux = F.binary_cross_entropy_with_logits(output.pseudo_mask_logits.float(), soft_target)
            total = total + cfg.aux_weight * aux
        return {
            "total": total,
            "ce": ce.detach(),
            "dice": dice.detach(),
            "tbl": tbl.detach(),
            "aux": aux.detach(),
        }
