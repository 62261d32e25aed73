"""The engine's out-of-memory answer against a real CUDA out-of-memory (bench/gpu_memory.py holds all of
the GPU's memory but a little more than one phrase needs): a tile's phrases in one forward fail in CUDA's
caching allocator, the engine retries them one phrase at a time and gets the same probabilities as an
unconstrained run; when even one phrase does not fit it says so in one sentence, and the model runs
again once the memory is back. The CPU side of the same fallback (the CPU allocator's own failures) is in
tests/service/test_faults.py."""

from __future__ import annotations

import numpy as np
import torch

from backend.model.factory import load_predictor
from tests.gpu_support import gpu_only

pytestmark = gpu_only()


def test_a_real_cuda_out_of_memory_is_retried_phrase_by_phrase():
    from bench.gpu_memory import oom_retry_check

    torch.manual_seed(0)
    predictor = load_predictor(preset="test", device="cuda", precision="fp32")
    image = np.random.default_rng(5).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    report = oom_retry_check(predictor, image)
    assert report["first_call"]["phrases"] == report["phrases"] > 1
    assert report["first_call"]["error"].startswith("OutOfMemoryError: CUDA out of memory"), report
    assert report["retried_one_by_one"] and report["retried_calls"] == report["phrases"], report
    # The same maps as without the memory pressure, up to rounding (cuDNN may pick another algorithm then).
    assert report["results"] == report["phrases"] and report["mean_difference"] <= 1e-3, report
    assert "even one phrase at a time; use a smaller tile size" in report["too_small_error"], report
    assert report["too_small_calls"] == [2, 1], report
    assert report["recovered"] and report["passed"], report
