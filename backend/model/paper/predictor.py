"""`PaperPredictor`: the PhraseSegmenter (backend.model.api) on a paper-family model.

Preprocessing is the reference's (`test.py`, `transforms.py`; `preprocess.reference_preprocess`):
the RGB image resized with PIL's bilinear filter, ignoring the aspect ratio, to S×S for SAM 2 and to U×U for
BEiT-3, both then scaled to [0, 1] and normalised with ImageNet's mean and std. BEiT-3 encodes
image and phrase jointly (a multiway transformer over both) and the Hiera adapters read the text, so
what phrases share is this preprocessing and SAM 2's patch embedding (`PaperHiera.forward`); phrases go
through the network in chunks sized to memory (backend/model/batching.py). Runs in fp32 (the reference's
inference precision) unless a precision mode is given (backend/model/precision.py).

The probability is σ(2z − 1) (see model.py), so the model's default threshold 0.5 gives the reference's
masks; at a 1024×1024 input they are the reference's masks exactly (other sizes: the logits are resized
to the image instead of to 1024).
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
from backend.model.paper.model import PaperRS2SAM2
from backend.model.precision import Precision, apply_precision
from backend.model.preprocess import reference_preprocess


class PaperPredictor:
    def __init__(
        self,
        model: PaperRS2SAM2,
        model_id: str,
        max_batch: int | None = None,
        precision: Precision | None = None,
    ):
        """`precision`: prepares the model for it in place; default fp32 (the reference's)."""
        if model.tokenizer is None:
            raise UserError("This paper model has no tokenizer; load it from its published files.")
        self.model = model.float().eval()
        self.precision = precision or Precision("fp32", model.device.type, "fp32")
        apply_precision(model.low_precision_parts(), self.precision)
        self._model_id = model_id
        if max_batch is None:  # phrases per forward (each runs the whole network)
            width = model.visual_model.image_encoder.trunk.blocks[0].dim_out
            element = 2 if self.precision.name == "bf16" else 4
            max_batch = phrase_chunk_size(model.device, per_phrase_bytes(self.input_size, width, element))
        self.max_batch = max_batch
        self._image_size: tuple[int, int] | None = None
        self._inputs: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def input_size(self) -> int:
        return self.model.config.image_size

    @property
    def default_threshold(self) -> float:
        """The probability threshold that gives the reference's masks (see the module's docstring)."""
        return self.model.config.default_threshold

    @property
    def device(self) -> torch.device:
        return self.model.device

    def set_image(self, image: np.ndarray) -> None:
        config = self.model.config
        sam = reference_preprocess(image, config.image_size).to(self.device)
        union = reference_preprocess(image, config.beit3_image_size).to(self.device)
        self._inputs = (sam, union)
        self._image_size = (int(image.shape[0]), int(image.shape[1]))

    @torch.inference_mode()
    def predict_phrases(self, phrases: Sequence[str]) -> list[PhrasePrediction]:
        if self._inputs is None:
            raise RuntimeError("call set_image() before predict_phrases()")
        phrases = list(phrases)
        results: list[PhrasePrediction] = []
        for chunk in chunks(phrases, self.max_batch):
            tokens = self.model.tokenize(chunk)
            with self.precision.autocast(), _eval_mode(self.model):
                out = self.model(*self._inputs, tokens)
            logits = F.interpolate(
                out.low_res_logits.float(), size=self._image_size, mode="bilinear", align_corners=False
            )
            probabilities = torch.sigmoid(logits[:, 0]).cpu().numpy().astype(np.float32)
            results.extend(
                PhrasePrediction(probability=p, score=_mask_score(p, self.default_threshold))
                for p in probabilities
            )
        return results

    def predict(self, image: np.ndarray, phrases: Sequence[str]) -> list[PhrasePrediction]:
        if isinstance(phrases, str) or len(phrases) == 0:
            raise UserError("Give a list of at least one phrase.")
        self.set_image(image)
        return self.predict_phrases(phrases)


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _mask_score(probability: np.ndarray, threshold: float) -> float:
    """Mean probability inside the predicted mask (0 when nothing is above the threshold)."""
    inside = probability > threshold
    return float(probability[inside].mean()) if inside.any() else 0.0
