"""The paper family on a CUDA GPU (the small `paper-test` architecture, random weights): bf16 and fp16
autocast agree with GPU fp32, GPU fp32 agrees with CPU fp32, and a phrase's result does not depend on
its chunk. Random weights put every pixel on one side of 0.5, so masks are cut at fp32's median
probability per phrase (as tests/model/paper/test_precision_and_batching.py does on the CPU)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from backend.model.paper.predictor import PaperPredictor
from backend.model.precision import AGREEMENT_IOU, resolve_precision
from tests.gpu_support import gpu_only, iou, strict_fp32

pytestmark = gpu_only()
IMAGE = np.random.default_rng(3).integers(0, 256, (128, 128, 3), dtype=np.uint8)
PHRASES = ["the large white building next to the river", "a small pond", "two tennis courts"]


def _probabilities(model, device: str, precision: str = "fp32", max_batch: int | None = None):
    twin = copy.deepcopy(model).to(device)
    predictor = PaperPredictor(twin, precision, max_batch, resolve_precision(precision, device))
    return [p.probability for p in predictor.predict(IMAGE, PHRASES)]


@pytest.mark.parametrize("kind", ["bf16", "fp16"])
def test_gpu_precisions_agree_with_gpu_fp32(kind, paper_test_model, monkeypatch):
    reference = _probabilities(paper_test_model, "cuda")
    if kind == "fp16":
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    ours = _probabilities(paper_test_model, "cuda", "bf16")
    for a, b in zip(ours, reference):
        cut = float(np.median(b))
        assert np.isfinite(a).all() and b.max() - b.min() > 1e-3
        assert iou(a > cut, b > cut) >= AGREEMENT_IOU


def test_gpu_fp32_agrees_with_cpu_fp32_and_with_its_chunks(paper_test_model):
    cpu = _probabilities(paper_test_model, "cpu")
    with strict_fp32():
        gpu = _probabilities(paper_test_model, "cuda", max_batch=1)
        chunked = _probabilities(paper_test_model, "cuda", max_batch=3)
    for g, c, k in zip(gpu, cpu, chunked):
        assert np.abs(g - c).max() <= 1e-3 and np.abs(g - k).max() <= 1e-4
        cut = float(np.median(c))
        assert iou(g > cut, c > cut) >= 0.99
