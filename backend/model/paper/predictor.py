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

import numpy as np
import torch

from backend.errors import UserError
from backend.model.paper.model import PaperRS2SAM2
from backend.model.phrase_predictor import PhrasePredictor
from backend.model.precision import Precision, prepare_for_inference
from backend.model.preprocess import reference_preprocess


class PaperPredictor(PhrasePredictor):
    # The reference resizes the whole image to its input whatever its size (test.py): the engine gives a
    # whole image smaller than the input as it is, rather than padded (backend/engine/predict.py).
    resizes_input = True

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
        model = model.float().eval()
        precision = precision or Precision("fp32", model.device.type, "fp32")
        precision = prepare_for_inference(model, precision)
        super().__init__(model, model_id, precision, max_batch)
        self._inputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def image_trunk(self) -> torch.nn.Module:
        return self.model.visual_model.image_encoder.trunk

    def set_image(self, image: np.ndarray) -> None:
        config = self.model.config
        sam = reference_preprocess(image, config.image_size).to(self.device)
        union = reference_preprocess(image, config.beit3_image_size).to(self.device)
        self._inputs = (sam, union)
        self._image_size = (int(image.shape[0]), int(image.shape[1]))

    def _forward(self, tokens) -> torch.Tensor:
        return self.model(*self._inputs, tokens).low_res_logits
