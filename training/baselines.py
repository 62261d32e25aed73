"""Phrase-blind baselines: what a model that ignores the phrase scores on a split. A trained model has
to beat these to show it reads the phrase (or at least the image) at all; `learning_check` trains and
compares in one go (the learning test and `rs2sam2 bench training`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.config import TrainConfig
from training.data.sample import ReferringDataset
from training.metrics import SegmentationMetrics

PRIOR_THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3)


def mean_training_mask(train_data: ReferringDataset, max_samples: int = 400) -> np.ndarray:
    """Per-pixel share of training masks covering each pixel (all masks must share one size)."""
    stride = max(1, len(train_data) // max_samples)
    return np.mean([train_data[i].mask for i in range(0, len(train_data), stride)], axis=0)


def phrase_blind_baselines(
    train_data: ReferringDataset, eval_data: ReferringDataset, count: int | None = None
) -> dict[str, float]:
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


@dataclass
class LearningCheck:
    val_history: list[dict]  # {"step", "mIoU", "oIoU", "Pr@0.5", …} per validation
    baselines: dict[str, float]  # phrase-blind baseline → val mIoU on the same val samples
    minutes: float  # wall time of the training run
    train_samples: int
    val_samples: int

    @property
    def best_baseline(self) -> tuple[str, float]:
        name = max(self.baselines, key=self.baselines.get)
        return name, self.baselines[name]


def learning_check(config: TrainConfig) -> LearningCheck:
    """Train (one data spec, a fresh run in `config.out`), then score the phrase-blind baselines on the
    very val samples the run validated on."""
    from training.loop import DATA_CACHE, model_config_for, open_train_and_val, train

    start = time.perf_counter()
    result = train(config)
    minutes = (time.perf_counter() - start) / 60
    chip = config.chip_size or model_config_for(config).image_size
    cache = Path(config.out) / DATA_CACHE
    train_data, val_data = open_train_and_val(config, chip, cache)
    val_count = len(val_data) if config.val_limit is None else min(config.val_limit, len(val_data))
    return LearningCheck(
        result.val_history,
        phrase_blind_baselines(train_data, val_data, val_count),
        minutes,
        len(train_data),
        val_count,
    )
