"""The losses' weights and switches (a plain dataclass, without torch: the training configuration and the
`rs2sam2 train` flags read it before any model is built). The losses themselves are in losses.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class LossConfig:
    ce_weight: float = 0.9  # λ_ce (reference code; the paper says 1)
    dice_weight: float = 0.1
    # "both": Dice summed over the object and background classes, as the reference. "foreground": Dice of
    # the object only — its gradient does not fade when objects are small, which lets a model trained
    # from scratch leave the all-background start sooner (measured in training/README.md).
    dice_classes: Literal["both", "foreground"] = "both"
    tbl_weight: float = 0.2
    background_weight: float = 0.9  # CE class weights
    foreground_weight: float = 1.1
    # "soft": boundary of σ(z) with the bounded per-sample weight — gradient reaches the mask.
    # "reference": boundary of the hard prediction (z > 0) with the raw weight, as published: the
    # mask gets no gradient from TBL and w is pushed toward 0. Kept for comparison.
    tbl_mode: Literal["soft", "reference"] = "soft"
    # BCE on the MPG pseudo-mask. Off by default, as in the reference: measured on synthetic scenes it
    # changes neither how fast the masks are learnt nor held-out mIoU; it only makes the pseudo-mask an
    # interpretable localisation map (backend/model/README.md, "Auxiliary loss").
    aux_weight: float = 0.0
    smooth: float = 1.0  # Dice smoothing
