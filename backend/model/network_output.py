"""What both families' networks return from a forward pass (the project's RS2SAM2,
backend/model/project/rs2sam2.py, and the paper's PaperRS2SAM2, backend/model/paper/model.py), which the
losses and the training loop read, and the bounded boundary weight both compute the same way."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.model.presets import ModelConfig


@dataclass
class RS2SAM2Output:
    logits: torch.Tensor  # (B,1,S,S) mask logits at SAM input size; σ > 0.5 = object
    low_res_logits: torch.Tensor  # (B,1,S/4,S/4) the decoder's own output
    pseudo_mask_logits: torch.Tensor  # (B,1,g,g) MPG logits on the CLIP patch grid
    boundary_logit: torch.Tensor  # (B,) raw text boundary weight (the reference uses it unbounded)
    boundary_weight: torch.Tensor  # (B,) w in (w_min, w_max): see ModelConfig.boundary_weight_min


def bounded_boundary_weight(config: ModelConfig, boundary_logit: torch.Tensor) -> torch.Tensor:
    """The TBL weight w in (w_min, w_max) from the text's raw logit (see ModelConfig.boundary_weight_min)."""
    low, high = config.boundary_weight_min, config.boundary_weight_max
    return low + (high - low) * torch.sigmoid(boundary_logit)
