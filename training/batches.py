"""Which samples each rank trains on, in which order, and how they become tensors.

The order of an epoch is a seeded permutation; global micro-batch k is the k-th slice of
`batch_size` samples, and rank r takes every world-th sample of it. So one process with batch B and
two processes with B/2 each see exactly the same samples per step, and "micro-batch k of epoch e" is
all a resumed run needs to know to continue where it stopped. Augmentations draw from a generator
keyed on (seed, epoch, sample), so they do not depend on workers, ranks or resumption either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.errors import UserError
from backend.model.preprocess import preprocess_image, preprocess_mask
from backend.model.presets import ModelConfig
from training.augment import AugmentConfig, augment
from training.data.sample import ReferringDataset


@dataclass(frozen=True)
class EpochPlan:
    dataset_size: int
    batch_size: int  # global
    grad_accum: int
    world_size: int
    seed: int

    def __post_init__(self) -> None:
        if self.batch_size % self.world_size:
            raise UserError(
                f"--batch-size {self.batch_size} must be divisible by the {self.world_size} processes"
            )
        if self.micro_batches_per_epoch < 1:
            raise UserError(
                f"the training data has {self.dataset_size} samples, fewer than one step of "
                f"{self.batch_size * self.grad_accum}"
            )

    @property
    def micro_batches_per_epoch(self) -> int:
        # Whole optimizer steps only: an accumulation never spans two epochs.
        steps = self.dataset_size // (self.batch_size * self.grad_accum)
        return steps * self.grad_accum

    @property
    def steps_per_epoch(self) -> int:
        return self.micro_batches_per_epoch // self.grad_accum

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.dataset_size)

    def micro_batch(self, epoch: int, index: int, rank: int) -> list[int]:
        start = index * self.batch_size
        return [int(i) for i in self.order(epoch)[start : start + self.batch_size][rank :: self.world_size]]


class MicroBatches(torch.utils.data.Dataset):
    """Item k = rank's share of micro-batch k of one epoch, preprocessed and stacked."""

    def __init__(
        self,
        dataset: ReferringDataset,
        plan: EpochPlan,
        epoch: int,
        rank: int,
        model_config: ModelConfig,
        augment_config: AugmentConfig | None,
    ) -> None:
        self.dataset, self.plan, self.epoch, self.rank = dataset, plan, epoch, rank
        self.model_config, self.augment_config = model_config, augment_config
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.plan.micro_batches_per_epoch

    def __getitem__(self, index: int) -> dict:
        sams, clips, masks, ignores, phrases = [], [], [], [], []
        for sample_index in self.plan.micro_batch(self.epoch, index, self.rank):
            sample = self.dataset[sample_index]
            image, phrase = sample.image, sample.phrase
            # object 1, ignored 2: one array, so a flip or rotation moves both alike
            labels = sample.mask.astype(np.uint8)
            if sample.ignore is not None:
                labels[sample.ignore & ~sample.mask] = 2
            if self.augment_config is not None:
                rng = np.random.default_rng([self.plan.seed, self.epoch, sample_index, 1])
                image, labels, phrase = augment(image, labels, phrase, rng, self.augment_config)
            inputs = preprocess_image(image, self.model_config)
            sams.append(inputs.sam)
            clips.append(inputs.clip)
            masks.append(preprocess_mask(labels == 1, self.model_config))
            # most samples ignore nothing: no second resize for them
            if sample.ignore is None:
                ignores.append(torch.zeros_like(masks[-1]))
            else:
                ignores.append(preprocess_mask(labels == 2, self.model_config))
            phrases.append(phrase)
        return {
            "sam": torch.stack(sams),
            "clip": torch.stack(clips),
            "masks": torch.stack(masks),
            "ignore": torch.stack(ignores),
            "phrases": phrases,
        }
