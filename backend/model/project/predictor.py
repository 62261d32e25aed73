"""RS2SAM2Predictor: the PhraseSegmenter (backend.model.api) on an RS2-SAM 2 model.

Like sam2's SAM2ImagePredictor, `set_image` does the text-independent work once (both resizes and the
CLIP vision tower) and `predict` runs everything that depends on the phrases, in chunks of phrases
sized to memory (backend/model/batching.py); inside a forward SAM 2's patch embedding runs once for the
image and is shared by the phrases (`RS2SAM2.forward`). The union encoder's joint layers mix image and
text, so only its vision tower can be shared.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.model.phrase_predictor import PhrasePredictor, eval_mode
from backend.model.precision import Precision, prepare_for_inference, training_precision
from backend.model.preprocess import image_to_tensor, preprocess_batch
from backend.model.project.rs2sam2 import RS2SAM2


class RS2SAM2Predictor(PhrasePredictor):
    def __init__(
        self,
        model: RS2SAM2,
        model_id: str,
        max_batch: int | None = None,
        precision: Precision | None = None,
    ):
        """`precision` (backend.model.precision.resolve_precision): the predictor prepares the model for it
        in place (`prepare_for_inference`: bf16 or int8 weights of its heavy parts, or an OpenVINO
        image encoder). By default training's (bf16 autocast on CUDA,
        fp32 on the CPU), which never changes the weights, so a predictor can wrap a model in training."""
        if precision is not None:
            precision = prepare_for_inference(model, precision)
        super().__init__(model, model_id, precision or training_precision(model.device), max_batch)
        self._sam_image: torch.Tensor | None = None
        self._clip_tokens: torch.Tensor | None = None

    def image_trunk(self) -> torch.nn.Module:
        return self.model.sam.image_encoder.trunk

    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        """Preprocess an (H,W,3) uint8 RGB image and encode its CLIP vision tokens (cached)."""
        tensor = image_to_tensor(image).to(self.device)
        sam, clip = preprocess_batch(tensor, self.model.config)
        with self.precision.autocast(), eval_mode(self.model):
            self._clip_tokens = self.model.union.encode_image(clip)
        self._sam_image = sam
        self._image_size = (int(image.shape[0]), int(image.shape[1]))

    def _forward(self, tokens) -> torch.Tensor:
        return self.model(self._sam_image, None, tokens, clip_image_tokens=self._clip_tokens).low_res_logits
