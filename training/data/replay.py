"""Replay: a share of every epoch's training samples drawn from the starting model's own training data,
so fine-tuning on a few labels does not make it forget the kinds those labels leave out."""

from __future__ import annotations

import numpy as np

from training.data.sample import ReferringDataset, ReferringSample


class ReplayMix:
    """`main`'s samples plus, each epoch, a fresh seeded draw from `replay` making up `share` of it."""

    def __init__(self, main: ReferringDataset, replay: ReferringDataset, share: float, seed: int) -> None:
        if not 0 < share < 1:
            raise ValueError("the replay share must be in (0, 1)")
        self.main, self.replay, self.share, self.seed = main, replay, share, seed
        self.name = f"{main.name}+replay({replay.name})"
        self.split = main.split
        self.replayed = max(1, round(len(main) * share / (1 - share))) if len(replay) else 0
        self.parts = list(getattr(main, "parts", [main]))  # what the recipe counts as labelled phrases
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for part in (self.main, self.replay):
            if hasattr(part, "set_epoch"):
                part.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.main) + self.replayed

    def __getitem__(self, index: int) -> ReferringSample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index < len(self.main):
            return self.main[index]
        return self.replay[int(self._draw(self.epoch)[index - len(self.main)])]

    def _draw(self, epoch: int) -> np.ndarray:
        if getattr(self, "_drawn_epoch", None) != epoch:
            rng = np.random.default_rng([self.seed, epoch, 7])
            self._drawn = rng.choice(len(self.replay), self.replayed)
            self._drawn_epoch = epoch
        return self._drawn
