"""Learning-rate multipliers: linear warm-up, then constant, cosine to zero, or step drops by epoch."""

from __future__ import annotations

import math
from collections.abc import Callable


def lr_multiplier(
    schedule: str,
    total_steps: int,
    warmup_steps: int,
    steps_per_epoch: int,
    drop_epochs: tuple[int, ...] = (),
    drop_factor: float = 0.1,
) -> Callable[[int], float]:
    """f(step) for torch's LambdaLR; `step` counts optimizer steps from 0."""

    def multiplier(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "cosine":
            span = max(1, total_steps - warmup_steps)
            progress = min(1.0, (step - warmup_steps) / span)
            return 0.5 * (1 + math.cos(math.pi * progress))
        if schedule == "step":
            epoch = step // max(1, steps_per_epoch)
            return drop_factor ** sum(epoch >= e for e in drop_epochs)
        return 1.0

    return multiplier
