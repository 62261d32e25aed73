"""The prediction contract between the model and everything that runs it.

The inference engine, the service, training's evaluation and the benchmarks only rely on this:
a model that takes one RGB image and a list of phrases and returns one probability map per phrase
at the image's size, with a score. Test doubles (e.g. a colour-matching stand-in) implement the same
protocol, so the engine's geometry is tested without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from backend.contract import DEFAULT_THRESHOLD


@dataclass(frozen=True)
class PhrasePrediction:
    """The model's answer for one phrase on one image."""

    probability: np.ndarray  # (H, W) float32 in [0, 1], at the input image's size
    score: float  # the model's confidence that the phrase's object is in the image, in [0, 1]


@runtime_checkable
class PhraseSegmenter(Protocol):
    """Anything that segments an image by phrases."""

    @property
    def model_id(self) -> str:
        """A short id recorded with every result (preset or checkpoint name)."""

    @property
    def input_size(self) -> int:
        """The square side the model works at; the engine's default tile size."""

    def predict(self, image: np.ndarray, phrases: Sequence[str]) -> list[PhrasePrediction]:
        """`image` is (H, W, 3) uint8 RGB; returns one prediction per phrase, in order.

        Batched over phrases in one forward pass; a phrase's result does not depend on the others.
        """


def default_threshold_of(model: PhraseSegmenter) -> float:
    """The probability threshold a model's masks are cut at when the person set none: the model's own
    (`default_threshold`, from its configuration: the paper family's reproduces its reference's masks)
    where it states one, else the contract's generic DEFAULT_THRESHOLD (test doubles state none)."""
    return float(getattr(model, "default_threshold", DEFAULT_THRESHOLD))
