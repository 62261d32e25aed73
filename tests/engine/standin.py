"""A deterministic stand-in for the model: it marks pixels of a colour named in the phrase.

Per-pixel, so it is exactly translation-consistent: tiling must not change its result at all. Used
to check the engine's geometry exactly, and behind the real service app in the plugin's tests; the
end-to-end tests run the real `test`-preset model. `HeldModel` is the same model holding every call
until the test releases it, so that a job is "running" for as long as a test needs it to be.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from backend.model.api import PhrasePrediction

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "white": (255, 255, 255),
    "yellow": (255, 255, 0),
    "black": (0, 0, 0),
}


class ColourModel:
    """Probability 1 on the named colour, falling linearly to 0 at a channel distance of 128."""

    def __init__(self, input_size: int = 64, model_id: str = "colour-standin"):
        self._input_size = input_size
        self._model_id = model_id
        self.calls = 0
        self.shapes: list[tuple[int, ...]] = []

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def input_size(self) -> int:
        return self._input_size

    def predict(self, image: np.ndarray, phrases: Sequence[str]) -> list[PhrasePrediction]:
        self.calls += 1
        self.shapes.append(image.shape)
        out = []
        for phrase in phrases:
            colour = next((COLOURS[w] for w in phrase.lower().split() if w in COLOURS), None)
            if colour is None:
                probability = np.zeros(image.shape[:2], np.float32)
            else:
                distance = np.abs(image.astype(np.int16) - np.array(colour, np.int16)).max(axis=2)
                probability = np.clip(1.0 - distance / 128.0, 0.0, 1.0).astype(np.float32)
            out.append(PhrasePrediction(probability, float(probability.max())))
        return out


class HeldModel(ColourModel):
    """The colour model, but every `predict` waits until the test calls `release()`.

    `entered` is set once a call has started: from then on the job is running and stays so, whatever
    the speed of the machine. After `release()` every call (this one and later ones) goes through.
    """

    HOLD_LIMIT_S = 120.0  # a test that forgets to release fails instead of hanging

    def __init__(self, input_size: int = 64, model_id: str = "held-standin"):
        super().__init__(input_size, model_id)
        self.entered = threading.Event()
        self.started = 0  # predict calls begun (ColourModel.calls counts those that went through)
        self._released = threading.Event()

    def predict(self, image: np.ndarray, phrases: Sequence[str]) -> list[PhrasePrediction]:
        self.started += 1
        self.entered.set()
        if not self._released.wait(self.HOLD_LIMIT_S):
            raise TimeoutError("the test never released the held model")
        return super().predict(image, phrases)

    def release(self) -> None:
        self._released.set()


def components(mask: np.ndarray) -> np.ndarray:
    """(h, w) int labels of the 4-connected regions of `mask` (0 outside), numbered in scan order."""
    from rasterio.features import rasterize, shapes

    outlines = [outline for outline, _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=4)]
    if not outlines:
        return np.zeros(mask.shape, np.int32)
    return rasterize(list(zip(outlines, range(1, len(outlines) + 1))), out_shape=mask.shape, dtype="int32")


class ContextModel(ColourModel):
    """Like `ColourModel`, but a phrase with "largest" or "leftmost" names one object: of the regions
    of the named colour *in the image it is given*, the one with the most pixels, or the one whose
    left edge is furthest left. Only an image of the whole area holds the whole answer; a tile answers
    for itself. The probability keeps the colour's per-pixel detail at whatever scale it sees.
    """

    def __init__(self, input_size: int = 64, model_id: str = "context-standin"):
        super().__init__(input_size, model_id)

    def predict(self, image: np.ndarray, phrases: Sequence[str]) -> list[PhrasePrediction]:
        answers = super().predict(image, phrases)
        out = []
        for phrase, answer in zip(phrases, answers):
            words = phrase.lower().split()
            probability = answer.probability
            labels = components(probability > 0.5)
            if labels.max() > 0 and ("largest" in words or "leftmost" in words):
                ids = np.arange(1, labels.max() + 1)
                if "largest" in words:
                    chosen = ids[np.argmax([(labels == i).sum() for i in ids])]
                else:
                    chosen = ids[np.argmin([np.nonzero((labels == i).any(axis=0))[0][0] for i in ids])]
                probability = np.where(labels == chosen, probability, 0.0).astype(np.float32)
            out.append(PhrasePrediction(probability, float(probability.max())))
        return out
