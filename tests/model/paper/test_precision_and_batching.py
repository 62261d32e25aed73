"""The paper family in the precision modes and in phrase chunks: its masks agree with fp32's, a phrase's
result does not depend on how the phrases are chunked or what they are batched with, and SAM 2's patch
embedding runs once per image however many phrases there are."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from backend.model.paper.predictor import PaperPredictor
from backend.model.precision import AGREEMENT_IOU, Precision

IMAGE = np.random.default_rng(3).integers(0, 256, (128, 128, 3), dtype=np.uint8)
PHRASES = [
    "the large white building next to the river",
    "a small pond",
    "two tennis courts beside the parking lot",
    "the harbour with many boats",
    "a red roof near the bridge",
]
MODES = {
    "bf16": Precision("bf16", "cpu", "bf16", convert_weights=True),  # built directly: any CPU runs it
    "int8": Precision("int8", "cpu", "int8"),
}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


@pytest.mark.parametrize("mode", sorted(MODES))
def test_masks_agree_with_fp32(mode, paper_test_model):
    reference = PaperPredictor(copy.deepcopy(paper_test_model), "fp32").predict(IMAGE, PHRASES[:2])
    predictor = PaperPredictor(copy.deepcopy(paper_test_model), mode, precision=MODES[mode])
    for ours, theirs in zip(predictor.predict(IMAGE, PHRASES[:2]), reference):
        # Random weights put every pixel on one side of 0.5: compare the masks at fp32's median
        # probability instead, a mask with as many edges as a threshold can give.
        threshold = float(np.median(theirs.probability))
        expected = theirs.probability > threshold
        assert theirs.probability.max() - theirs.probability.min() > 1e-3
        assert _iou(ours.probability > threshold, expected) >= AGREEMENT_IOU


def test_chunks_give_the_same_probabilities_as_one_phrase_at_a_time(paper_test_model):
    one_by_one = PaperPredictor(paper_test_model, "one", max_batch=1).predict(IMAGE, PHRASES)
    chunked = PaperPredictor(paper_test_model, "three", max_batch=3).predict(IMAGE, PHRASES)
    for a, b in zip(one_by_one, chunked):
        assert np.abs(a.probability - b.probability).max() < 1e-5


def test_a_phrase_does_not_change_with_its_batch_mates(paper_test_model):
    predictor = PaperPredictor(paper_test_model, "batched", max_batch=8)
    alone = predictor.predict(IMAGE, [PHRASES[1]])[0].probability
    with_others = predictor.predict(IMAGE, [PHRASES[0], PHRASES[1], PHRASES[3]])[1].probability
    with_other_others = predictor.predict(IMAGE, [PHRASES[4], PHRASES[2], PHRASES[1]])[2].probability
    assert np.abs(with_others - alone).max() < 1e-5 and np.abs(with_other_others - alone).max() < 1e-5


def test_the_patch_embedding_runs_once_per_image(paper_test_model):
    predictor = PaperPredictor(paper_test_model, "shared", max_batch=8)
    batches = []
    trunk = paper_test_model.visual_model.image_encoder.trunk
    handle = trunk.patch_embed.register_forward_hook(lambda _m, args, _o: batches.append(args[0].shape[0]))
    try:
        predictor.predict(IMAGE, PHRASES[:3])
    finally:
        handle.remove()
    assert batches == [1]
    assert paper_test_model.parameters().__next__().dtype == torch.float32


def test_openvino_masks_agree_with_fp32_and_its_encoder_matches_torch(
    paper_test_model, tmp_path, monkeypatch
):
    """The paper family's image encoder converted by OpenVINO (f32): the same masks as fp32, and the same
    encoder outputs for phrases with and without padding."""
    pytest.importorskip("openvino", reason="a dependency of the project (pyproject.toml)")
    monkeypatch.setenv("RS2SAM2_CACHE", str(tmp_path))
    reference = PaperPredictor(copy.deepcopy(paper_test_model), "fp32").predict(IMAGE, PHRASES[:2])
    model = copy.deepcopy(paper_test_model)
    openvino = Precision("openvino", "cpu", "openvino", openvino_hint="f32")
    predictor = PaperPredictor(model, "openvino", precision=openvino)
    assert predictor.precision.name == "openvino" and model.encoder_runtime is not None
    for ours, theirs in zip(predictor.predict(IMAGE, PHRASES[:2]), reference):
        threshold = float(np.median(theirs.probability))
        assert _iou(ours.probability > threshold, theirs.probability > threshold) >= AGREEMENT_IOU
    tokens = model.tokenize(PHRASES[:2])  # two lengths: the shorter one padded
    images = torch.rand(1, 3, model.config.image_size, model.config.image_size)
    text = torch.randn(2, tokens.valid.shape[1], model.text_feat_linear.out_features)
    with torch.no_grad():
        want = model.encode_image_with_text_in_torch(images, text, ~tokens.valid)
        got = model.encode_image(images, text, ~tokens.valid)
        want_one = model.encode_image_with_text_in_torch(images, text[:1], None)
        got_one = model.encode_image(images, text[:1], None)
    for a, b in [(got[0], want[0]), *zip(got[1], want[1]), (got_one[0], want_one[0])]:
        assert float((a - b).abs().max()) <= 1e-4 * float(b.abs().max())
