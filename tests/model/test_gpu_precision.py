"""On a CUDA GPU: every GPU precision agrees with GPU fp32, GPU fp32 agrees with CPU fp32, `auto` picks
bf16 autocast with the weights left in fp32, and phrases are batched up to the GPU's free memory.

The reference is the bundled demo model (trained, so its masks at its own threshold, 0.5, are real
objects) on the demo scene with its phrases — the set `rs2sam2 bench precision` uses on the CPU.

Tolerances for GPU fp32 against CPU fp32, from measurements on the CPU with this model and scene:
- a relative change of one fp32 ulp (6e-8) in every weight moves a probability by 3.3e-6 at most and
  by 9e-9 on average; bf16 autocast moves them by 4.0e-2 at most and 1.6e-4 on average;
- in plain fp32 (TF32 off) the GPU computes the same function with other kernels, which sum in another
  order: a few tens of ulps per reduction. Bound: 1e-3 at most (300× the one-ulp change, 40× under
  bf16's) and 1e-5 on average (1000× the one-ulp change, 15× under bf16's), masks IoU ≥ 0.999 — a
  reduced precision creeping in (TF32, bf16) fails it;
- with torch's defaults (what the product runs: cuDNN may use TF32 in convolutions, 10-bit mantissa,
  8× finer than bf16's 7) it must stay within bf16's measured difference: 1.6e-4 on average, masks
  IoU ≥ 0.99.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.bundled import DEMO_CHECKPOINT, demo_phrases
from backend.model.factory import load_checkpoint, load_predictor
from backend.model.precision import AGREEMENT_IOU, resolve_precision
from backend.model.project.predictor import RS2SAM2Predictor
from bench.precision import reference_image
from tests.gpu_support import gpu_only, iou, strict_fp32

pytestmark = gpu_only()
THRESHOLD = 0.5  # the demo model's


def demo_probabilities(device: str, precision: str = "fp32") -> list[np.ndarray]:
    model, _ = load_checkpoint(DEMO_CHECKPOINT, device=device)
    predictor = RS2SAM2Predictor(model, "demo", precision=resolve_precision(precision, device))
    return [p.probability for p in predictor.predict(reference_image(128), demo_phrases())]


@pytest.fixture(scope="module")
def gpu_fp32() -> list[np.ndarray]:
    return demo_probabilities("cuda")


@pytest.fixture(scope="module")
def cpu_fp32() -> list[np.ndarray]:
    return demo_probabilities("cpu")


@pytest.mark.parametrize("kind", ["bf16", "fp16"])
def test_each_gpu_precision_agrees_with_gpu_fp32(kind, gpu_fp32, monkeypatch):
    if kind == "fp16":  # what a GPU without bf16 runs (resolve_precision asks torch at each autocast)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    precision = resolve_precision("bf16", "cuda")
    assert precision.autocast_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[kind]
    assert kind in precision.describe()
    model, _ = load_checkpoint(DEMO_CHECKPOINT, device="cuda")
    predictor = RS2SAM2Predictor(model, "demo", precision=precision)
    ours = [p.probability for p in predictor.predict(reference_image(128), demo_phrases())]
    assert all((p > THRESHOLD).any() for p in gpu_fp32)  # real objects: the comparison means something
    assert all(np.isfinite(p).all() for p in ours)
    ious = [iou(a > THRESHOLD, b > THRESHOLD) for a, b in zip(ours, gpu_fp32)]
    assert min(ious) >= AGREEMENT_IOU, ious


def test_gpu_fp32_is_cpu_fp32_within_float_rounding(cpu_fp32):
    with strict_fp32():
        gpu = demo_probabilities("cuda")
    difference = [np.abs(g - c) for g, c in zip(gpu, cpu_fp32)]
    assert max(float(d.max()) for d in difference) <= 1e-3
    assert float(np.mean([d.mean() for d in difference])) <= 1e-5
    assert min(iou(g > THRESHOLD, c > THRESHOLD) for g, c in zip(gpu, cpu_fp32)) >= 0.999


def test_gpu_fp32_with_torch_defaults_stays_within_bf16s_difference(gpu_fp32, cpu_fp32):
    difference = [np.abs(g - c) for g, c in zip(gpu_fp32, cpu_fp32)]
    assert float(np.mean([d.mean() for d in difference])) <= 1.6e-4
    assert min(iou(g > THRESHOLD, c > THRESHOLD) for g, c in zip(gpu_fp32, cpu_fp32)) >= 0.99


def test_auto_on_a_gpu_is_bf16_autocast_with_fp32_weights():
    predictor = load_predictor(preset="test", device="cuda", precision="auto")
    assert predictor.precision.name == "bf16" and predictor.precision.requested == "auto"
    assert predictor.precision.autocast_dtype in (torch.bfloat16, torch.float16)
    assert "autocast" in predictor.precision.describe()
    assert all(p.dtype == torch.float32 for p in predictor.model.parameters())  # only autocast changes
    for mode in ("int8", "openvino"):
        with pytest.raises(Exception, match="CPU only"):
            load_predictor(preset="test", device="cuda", precision=mode)


def test_phrases_are_batched_up_to_the_gpus_free_memory():
    torch.manual_seed(0)
    predictor = load_predictor(preset="test", device="cuda")
    # The test preset's activations are small: the GPU's cap (16), read from its real free memory.
    free, _ = torch.cuda.mem_get_info()
    assert free > 2**30 and predictor.max_batch == 16
    batches: list[int] = []
    block = predictor.image_trunk().blocks[0]
    handle = block.register_forward_hook(lambda _m, args, _o: batches.append(args[0].shape[0]))
    try:
        phrases = [f"the field number {i}" for i in range(20)]
        predictions = predictor.predict(np.zeros((128, 128, 3), np.uint8) + 90, phrases)
    finally:
        handle.remove()
    assert batches == [16, 4] and len(predictions) == 20
