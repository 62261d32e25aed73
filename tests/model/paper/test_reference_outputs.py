"""The paper model computes what the reference computes: same weights (chosen by key name), same inputs,
outputs compared with the reference's own, recorded once in a scratch environment (data/README.md).

The reference hard-codes BEiT-3 large's width and a 1024 input, so the comparison model keeps those and
shrinks only depth (Hiera stages [1,1,2,1], 2 BEiT-3 layers, vocabulary 1000): ~100 M parameters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.model.paper.build import build_paper_model
from backend.model.presets import get_preset
from backend.model.text import TextTokens
from tests.model.paper.fill import fill_deterministic, seeded_inputs

REFERENCE = Path(__file__).parent / "data" / "reference_reduced_outputs.npz"


@pytest.mark.slow
def test_reduced_model_reproduces_the_reference_outputs():
    config = get_preset("paper-rrsisd").replace(
        sam2_overrides=(
            "++model.image_encoder.trunk.stages=[1,1,2,1]",
            "++model.image_encoder.trunk.global_att_blocks=[3]",
        ),
        beit3_layers=2,
        beit3_vocab=1000,
    )
    model = build_paper_model(config)
    fill_deterministic(model)
    reference = np.load(REFERENCE)
    ids = torch.from_numpy(reference["ids"])  # contains an <unk> (3): masked in BEiT-3 only, as there
    tokens = TextTokens(ids, torch.ones_like(ids, dtype=torch.bool), pad_id=3)
    sam, union = seeded_inputs(1024, 224)
    captured = {}
    model.mask_product.register_forward_hook(lambda m, a, out: captured.__setitem__("pseudo", out))
    model.text_hidden_fcs[0].register_forward_hook(lambda m, a, out: captured.__setitem__("sparse", out))
    with torch.no_grad():
        out = model(sam, union, tokens)

    z = (out.low_res_logits + 1) / 2  # the decoder's logit (the model reports 2z − 1)
    expected = torch.from_numpy(reference["low_res_logits"])
    assert z.shape == expected.shape == (1, 1, 256, 256)
    assert torch.allclose(z, expected, atol=1e-4, rtol=1e-4), (z - expected).abs().max()
    assert torch.equal(z > 0.5, expected > 0.5)  # the reference's argmax mask, pixel for pixel
    assert torch.allclose(captured["pseudo"], torch.from_numpy(reference["pseudo_mask_logits"]), atol=1e-5)
    assert torch.allclose(captured["sparse"], torch.from_numpy(reference["sparse"]), atol=1e-5)
    assert torch.allclose(out.boundary_logit, torch.from_numpy(reference["boundary"]).reshape(1), atol=1e-5)
    assert out.logits.shape == (1, 1, 1024, 1024)
