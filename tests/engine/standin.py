"""A deterministic stand-in for the model: it marks pixels of a colour named in the phrase.

Per-pixel, so it is exactly translation-consistent: tiling must not change its result at all. Used
to check the engine's geometry exactly; the end-to-end tests run the real `test`-preset model.
"""

from __future__ import annotations

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
