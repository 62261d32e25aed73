"""One forward pass of the full-size paper model (935 M parameters, fp32) at 1024 on the CPU.

Built once (random weights; ~3.7 GB), one phrase: about half a minute on one thread. Speed and memory are
measured in `rs2sam2 bench paper` (docs/benchmarks.md), not here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.model.factory import make_predictor
from backend.model.paper.build import build_paper_model
from backend.model.paper.tokenizer import PaperTokenizer
from backend.model.presets import get_preset


@pytest.mark.slow
def test_full_model_segments_a_1024_tile_on_the_cpu(spm_file):
    config = get_preset("paper-rrsisd")
    torch.manual_seed(0)
    model = build_paper_model(config)
    model.tokenizer = PaperTokenizer(spm_file, config.text_context_length)
    # The reference's 934.8 M less SAM 2's video modules (7.5 M), which the image model does not hold.
    assert 927.0e6 < model.parameter_counts()["total"] < 927.6e6
    predictor = make_predictor(model, "paper-rrsisd-random")
    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    predictor.set_image(image)
    with torch.inference_mode():
        out = model(*predictor._inputs, model.tokenize(["the large white building next to the river"]))
    assert out.logits.shape == (1, 1, 1024, 1024) and out.low_res_logits.shape == (1, 1, 256, 256)
    assert torch.isfinite(out.logits).all()
    mask = torch.sigmoid(out.logits) > predictor.default_threshold
    assert mask.shape == (1, 1, 1024, 1024)
