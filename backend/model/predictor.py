"""RS2SAM2Predictor: the PhraseSegmenter (backend.model.api) on an RS2-SAM 2 model.

Like sam2's SAM2ImagePredictor, `set_image` does the text-independent work once (both resizes and the
CLIP vision tower) and `predict` runs everything that depends on the phrases, in chunks of phrases
sized to memory (backend/model/batching.py); inside a forward SAM 2's patch embedding runs once for the
image and is shared by the phrases (`RS2SAM2.forward`). The union encoder's joint layers mix image and
text, so only its vision tower can be shared.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from backend.errors import UserError
from backend.model.api import PhrasePrediction
from backend.model.batching import chunks, per_phrase_bytes, phrase_chunk_size
from backend.model.precision import Precision, apply_precision, training_precision
from backend.model.preprocess import image_to_tensor, preprocess_batch
from backend.model.rs2sam2 import RS2SAM2


class RS2SAM2Predictor:
    def __init__(
        self,
        model: RS2SAM2,
        model_id: str,
        max_batch: int | None = None,
        precision: Precision | None = None,
    ):
        """`precision` (backend.model.precision.resolve_precision): the predictor prepares the model for it
        in place (bf16 or int8 weights of its heavy parts). By default training's (bf16 autocast on CUDA,
        fp32 on the CPU), which never changes the weights, so a predictor can wrap a model in training."""
        self.model = model
        self._model_id = model_id
        if precision is not None:
            apply_precision(model.low_precision_parts(), precision)
        self.precision = precision or training_precision(model.device)
        if max_batch is None:  # phrases per forward: bounds memory for long phrase lists
            width = model.sam.image_encoder.trunk.blocks[0].dim_out
            element = 2 if self.precision.name == "bf16" else 4
            max_batch = phrase_chunk_size(model.device, per_phrase_bytes(self.input_size, width, element))
        self.max_batch = max_batch
        self._image_size: tuple[int, int] | None = None
        self._sam_image: torch.Tensor | None = None
        self._clip_tokens: torch.Tensor | None = None

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def input_size(self) -> int:
        return self.model.config.image_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        """Preprocess an (H,W,3) uint8 RGB image and encode its CLIP vision tokens (cached)."""
        tensor = image_to_tensor(image).to(self.device)
        sam, clip = preprocess_batch(tensor, self.model.config)
        with self.precision.autocast(), _eval_mode(self.model):
            self._clip_tokens = self.model.union.encode_image(clip)
        self._sam_image = sam
        self._image_size = (int(image.shape[0]), int(image.shape[1]))

    @torch.inference_mode()
    def predict_phrases(self, phrases: Sequence[str]) -> list[PhrasePrediction]:
        """Predictions for the image given to `set_image`, one per phrase, in order."""
        if self._sam_image is None:
            raise RuntimeError("call set_image() before predict_phrases()")
        phrases = list(phrases)
        results: list[PhrasePrediction] = []
        for chunk in chunks(phrases, self.max_batch):
            tokens = self.model.tokenize(chunk)
            with self.precision.autocast(), _eval_mode(self.model):
                out = self.model(self._sam_image, None, tokens, clip_image_tokens=self._clip_tokens)
            logits = F.interpolate(
                out.low_res_logits.float(), size=self._image_size, mode="bilinear", align_corners=False
            )
            probabilities = torch.sigmoid(logits[:, 0]).cpu().numpy().astype(np.float32)
            results.extend(PhrasePrediction(probability=p, score=_mask_score(p)) for p in probabilities)
        return results

    def predict(self, image: np.ndarray, phrases: Sequence[str]) -> list[PhrasePrediction]:
        if isinstance(phrases, str) or len(phrases) == 0:
            raise UserError("Give a list of at least one phrase.")
        self.set_image(image)
        return self.predict_phrases(phrases)


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    """Eval mode for the call, then the caller's mode back (training can evaluate mid-run)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _mask_score(probability: np.ndarray) -> float:
    """Mean probability inside the predicted mask: how sure the model is of what it found (0 if nothing)."""
    inside = probability > 0.5
    return float(probability[inside].mean()) if inside.any() else 0.0
