"""Phrase-blind baselines: what a model that ignores the phrase scores on a split. A trained model has
to beat these to show it reads the phrase (or at least the image) at all."""

from __future__ import annotations

import numpy as np

from training.data.sample import ReferringDataset
from training.metrics import SegmentationMetrics

PRIOR_THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3)


def mean_training_mask(train_data: ReferringDataset, max_samples: int = 400) -> np.ndarray:
    """Per-pixel share of training masks covering each pixel (all masks must share one size)."""
    stride = max(1, len(train_data) // max_samples)
    return np.mean([train_data[i].mask for i in range(0, len(train_data), stride)], axis=0)


def phrase_blind_baselines(train_data: ReferringDataset, eval_data: ReferringDataset,
                           count: int | None = None) -> dict[str, float]:
    """mIoU on the first `count` samples of eval_data of: predicting everything, and the mean training
    mask at several thresholds (the "most common object" guess, with the threshold chosen on the very
    samples it is scored on — generous on purpose)."""
    prior = mean_training_mask(train_data)
    count = len(eval_data) if count is None else min(count, len(eval_data))
    targets = [eval_data[i].mask for i in range(count)]
    candidates = {"everything": np.ones_like(prior, bool)}
    candidates.update({f"mean training mask > {t:g}": prior > t for t in PRIOR_THRESHOLDS})
    scores = {}
    for name, prediction in candidates.items():
        metrics = SegmentationMetrics()
        for target in targets:
            metrics.add(prediction, target)
        scores[name] = metrics.summary()["mIoU"]
    return scores
