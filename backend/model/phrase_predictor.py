"""What both model families' predictors share (backend/model/project/predictor.py,
backend/model/paper/predictor.py): the phrase loop in chunks sized to memory, probabilities at the image's
size, the mask score, and the PhraseSegmenter's `predict`. A family says how an image is prepared
(`set_image`) and how one chunk of phrases runs through its network (`_forward`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from backend.errors import UserError
from backend.model.api import PhrasePrediction
from backend.model.batching import chunks, per_phrase_bytes, phrase_chunk_size
from backend.model.precision import Precision


class PhrasePredictor:
    """A PhraseSegmenter (backend.model.api) over a model with a `config.image_size`, a `device` and a
    `tokenize`. Subclasses set `self._image_size` in `set_image` and implement `_forward`."""

    def __init__(self, model: torch.nn.Module, model_id: str, precision: Precision, max_batch: int | None):
        self.model = model
        self._model_id = model_id
        self.precision = precision
        self.max_batch = max_batch or self._memory_bounded_batch()
        self._image_size: tuple[int, int] | None = None

    def _memory_bounded_batch(self) -> int:
        """Phrases per forward (each runs the phrase-conditioned network): bounds memory for long lists."""
        width = self.image_trunk().blocks[0].dim_out
        element = 2 if self.precision.name == "bf16" else 4
        return phrase_chunk_size(self.device, per_phrase_bytes(self.input_size, width, element))

    def image_trunk(self) -> torch.nn.Module:
        raise NotImplementedError

    def _forward(self, tokens) -> torch.Tensor:
        """Low-resolution mask logits (N, 1, h, w) of one chunk of tokenised phrases."""
        raise NotImplementedError

    def set_image(self, image: np.ndarray) -> None:
        raise NotImplementedError

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def input_size(self) -> int:
        return self.model.config.image_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def default_threshold(self) -> float:
        """The model's own threshold (its configuration's; for the paper family the one that gives the
        reference's masks): the engine's when the person sets none, and the mask score's."""
        return self.model.config.default_threshold

    @torch.inference_mode()
    def predict_phrases(self, phrases: Sequence[str]) -> list[PhrasePrediction]:
        """Predictions for the image given to `set_image`, one per phrase, in order."""
        if self._image_size is None:
            raise RuntimeError("call set_image() before predict_phrases()")
        results: list[PhrasePrediction] = []
        for chunk in chunks(list(phrases), self.max_batch):
            tokens = self.model.tokenize(chunk)
            with self.precision.autocast(), eval_mode(self.model):
                low_res = self._forward(tokens)
            logits = F.interpolate(
                low_res.float(), size=self._image_size, mode="bilinear", align_corners=False
            )
            probabilities = torch.sigmoid(logits[:, 0]).cpu().numpy().astype(np.float32)
            results.extend(
                PhrasePrediction(probability=p, score=mask_score(p, self.default_threshold))
                for p in probabilities
            )
        return results

    def predict(self, image: np.ndarray, phrases: Sequence[str]) -> list[PhrasePrediction]:
        if isinstance(phrases, str) or len(phrases) == 0:
            raise UserError("Give a list of at least one phrase.")
        self.set_image(image)
        return self.predict_phrases(phrases)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode for the call, then the caller's mode back (training can evaluate mid-run)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def mask_score(probability: np.ndarray, threshold: float) -> float:
    """Mean probability inside the predicted mask: how sure the model is of what it found (0 if nothing)."""
    inside = probability > threshold
    return float(probability[inside].mean()) if inside.any() else 0.0
