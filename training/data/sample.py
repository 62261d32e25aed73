"""The one sample type every reader yields, and the small dataset protocol the trainer relies on.

Readers are plain Python sequences (no torch import), so they can be used from scripts, the demo and
tests without the model stack; the trainer wraps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass
class ReferringSample:
    """One image–phrase–mask triplet (one sentence of a benchmark, one phrase of a region feature)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) bool: the object the phrase refers to
    phrase: str
    image_id: str  # samples sharing an image_id share the image (evaluation batches phrases per image)
    sample_id: str  # unique within its dataset
    # (H, W) bool or None: pixels whose target is unknown — another object the same phrase names (a
    # person's labels repeat phrases); training leaves them out of the loss
    ignore: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {self.image.shape} {self.image.dtype}")
        if self.mask.shape != self.image.shape[:2]:
            raise ValueError(f"mask {self.mask.shape} does not match image {self.image.shape[:2]}")
        if self.ignore is not None and self.ignore.shape != self.mask.shape:
            raise ValueError(f"ignore {self.ignore.shape} does not match mask {self.mask.shape}")


@runtime_checkable
class ReferringDataset(Protocol):
    """A split of a data set: an indexable sequence of samples, ordered so that samples of one image
    are adjacent."""

    name: str
    split: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> ReferringSample: ...


class ConcatReferringDataset:
    """Several datasets read as one (e.g. `--data` given more than once)."""

    def __init__(self, parts: Sequence[ReferringDataset], name: str | None = None) -> None:
        self.parts = list(parts)
        self.name = name or "+".join(part.name for part in self.parts)
        self.split = "+".join(sorted({part.split for part in self.parts}))
        self._offsets = np.cumsum([0] + [len(part) for part in self.parts])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> ReferringSample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return self.parts[part][index - int(self._offsets[part])]

    def set_epoch(self, epoch: int) -> None:
        """Datasets whose samples are randomised (chip jitter) draw from a seed keyed on the epoch, so a
        resumed run sees exactly the samples an uninterrupted one would."""
        for part in self.parts:
            if hasattr(part, "set_epoch"):
                part.set_epoch(epoch)
