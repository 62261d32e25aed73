"""Many phrases on one image: chunks sized to memory, the same probabilities however the phrases are
chunked, and SAM 2's patch embedding computed once per image (the phrase enters from the first block)."""

from __future__ import annotations

import numpy as np
import torch

from backend.model.batching import CPU_MAX_PHRASES, chunks, per_phrase_bytes, phrase_chunk_size
from backend.model.factory import load_predictor
from tests.gpu_support import strict_fp32

from .conftest import random_image

PHRASES = [
    "the red roof",
    "the long grey road that runs from the top left corner to the river",
    "water",
    "a small field of wheat",
    "the dark lake",
]


# How far a phrase's probabilities may move with its chunk: float rounding only. On the CPU the kernels
# are the same for any batch (measured: below 1e-5). cuBLAS and cuDNN may choose other kernels for
# another batch size, which sum in another order: a relative change of one fp32 ulp in every weight moves
# the demo model's probabilities by 3.3e-6 at most (measured on the CPU), and summation order is worth
# a few tens of ulps; 1e-4 still catches any real mixing of phrases (bf16 alone moves them by 4e-2).
CHUNK_TOLERANCE = {"cpu": 1e-5, "cuda": 1e-4}


def test_chunks_give_the_same_probabilities_as_one_phrase_at_a_time(device):
    torch.manual_seed(0)
    predictor = load_predictor(preset="test", device=device)
    image = random_image(128, 128, seed=4)
    with strict_fp32():
        predictor.max_batch = 1
        one_by_one = predictor.predict(image, PHRASES)
        predictor.max_batch = 3
        chunked = predictor.predict(image, PHRASES)
    for a, b in zip(one_by_one, chunked):
        assert np.abs(a.probability - b.probability).max() < CHUNK_TOLERANCE[device]


def test_the_patch_embedding_runs_once_per_image(device):
    torch.manual_seed(0)
    predictor = load_predictor(preset="test", device=device)
    predictor.max_batch = 8
    batches = []
    trunk = predictor.model.sam.image_encoder.trunk
    handle = trunk.patch_embed.register_forward_hook(lambda _m, args, _o: batches.append(args[0].shape[0]))
    try:
        predictions = predictor.predict(random_image(128, 128, seed=6), PHRASES[:3])
    finally:
        handle.remove()
    assert batches == [1] and len(predictions) == 3


def test_chunk_size_follows_memory_and_the_device():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    phrase = per_phrase_bytes(1024, 96)  # tiny at 1024 px: Hiera-T's first stage, fp32
    assert phrase == 256 * 256 * 96 * 4 * 16
    assert phrase_chunk_size(cpu, phrase, available=64 * 2**30) == CPU_MAX_PHRASES
    assert phrase_chunk_size(gpu, phrase, available=64 * 2**30) == 16
    assert phrase_chunk_size(gpu, phrase, available=4 * phrase) == 2  # half of what is free
    assert phrase_chunk_size(cpu, phrase, available=phrase // 2) == 1  # never fewer than one
    assert phrase_chunk_size(cpu, phrase, available=None) >= 1
    assert chunks(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]


def test_a_deep_copy_runs_its_own_adapters(test_model, batch_inputs):
    """The adapters act through hooks; a copy of the model (e.g. one per precision mode) must use its own."""
    import copy

    sam, clip = batch_inputs
    model = test_model.eval()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        before = twin(sam[:1], clip[:1], ["a roof"]).logits
        for parameter in model.adapters.parameters():
            parameter.add_(0.5)  # changes the original only
        after = twin(sam[:1], clip[:1], ["a roof"]).logits
        changed = model(sam[:1], clip[:1], ["a roof"]).logits
    assert torch.equal(before, after) and not torch.allclose(changed, before, atol=1e-4)
