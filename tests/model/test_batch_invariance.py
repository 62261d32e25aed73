"""A phrase's output does not depend on the other phrases of its batch (key-padding masks everywhere)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.model.factory import load_predictor
from backend.model.project.tokenizer import tokenize
from backend.model.text import PhraseTruncatedWarning, TextTokens

from .conftest import random_image


def test_phrase_alone_equals_phrase_batched_with_a_longer_one(device):
    """On each device: a GPU batches up to 16 phrases per forward (the CPU one), so this is where the
    padding masks matter most. Tolerances as tests/model/test_phrase_chunks.py's (float rounding only)."""
    from tests.gpu_support import strict_fp32

    from .test_phrase_chunks import CHUNK_TOLERANCE

    torch.manual_seed(0)
    predictor = load_predictor(preset="test", device=device)
    predictor.max_batch = 3
    image = random_image(128, 128, seed=5)
    short = "the red roof"
    longer = "the long grey road that runs from the top left corner to the river in the bottom right"
    with strict_fp32():
        alone = predictor.predict(image, [short])[0].probability
        batched = predictor.predict(image, [longer, short, "water"])
    assert np.abs(batched[1].probability - alone).max() < CHUNK_TOLERANCE[device]
    assert not np.allclose(batched[0].probability, alone, atol=1e-3)  # the longer phrase gives its own answer


def test_training_forward_is_batch_invariant_too(test_model, batch_inputs):
    sam, clip = batch_inputs
    model = test_model.train()
    solo = model(sam[:1], clip[:1], ["a small boat"]).logits
    pair = model(
        sam[[0, 0]], clip[[0, 0]], ["a small boat", "a much longer phrase about a harbour with many boats"]
    )
    assert torch.allclose(pair.logits[0], solo[0], atol=1e-5)


def test_long_phrase_is_truncated_with_a_warning():
    long_phrase = " ".join(["building"] * 40)
    with pytest.warns(PhraseTruncatedWarning, match="truncated"):
        tokens = tokenize([long_phrase, "a tree"], context_length=32)
    assert tokens.ids.shape == (2, 32)
    assert tokens.valid[0].all() and tokens.valid[1].sum() == 4  # start, "a", "tree", end
    assert tokens.ids[0, -1] == tokens.ids[1, 3]  # both end with the end-of-text token


def test_token_batches_concatenate_with_padding():
    a, b = tokenize(["a tree"], 32), tokenize(["the big red roof near the road"], 32)
    joined = TextTokens.cat([a, b])
    assert joined.ids.shape == (2, b.ids.shape[1])
    assert (
        torch.equal(joined.ids[0, : a.ids.shape[1]], a.ids[0]) and not joined.valid[0, a.ids.shape[1] :].any()
    )


def test_one_image_is_broadcast_over_the_phrases_and_other_counts_are_refused(test_model, batch_inputs):
    sam, clip = batch_inputs
    model = test_model.eval()
    phrases = ["a small boat", "the harbour"]
    with torch.no_grad():
        broadcast = model(sam[:1], clip[:1], phrases).logits
        explicit = model(sam[[0, 0]], clip[[0, 0]], phrases).logits
        assert torch.allclose(broadcast, explicit, atol=1e-5)
        with pytest.raises(ValueError, match="2 images for 3 phrases"):
            model(sam, clip, [*phrases, "water"])
