"""A real CUDA out-of-memory, provoked on purpose, and the engine's answer to it.

The engine's model call (`backend.engine.predict.predict_tile`) runs all of a tile's phrases in one
call and, when the allocator runs out of memory, retries them one phrase at a time; when even one phrase
does not fit it raises `ModelOutOfMemoryError` (one sentence: use a smaller tile). `oom_retry_check`
makes the GPU really run out: it measures what one phrase needs, then holds all of the GPU's free memory
but a little more than that in plain allocations ("ballast"), so that a batch of many phrases fails in
CUDA's caching allocator (torch.OutOfMemoryError) while single phrases fit. Shared by the `gpu` test
(tests/engine/test_gpu_oom.py, the `test` preset) and the device check (`tiny` at 1024 px).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np
import torch

MIB = 1 << 20


@contextlib.contextmanager
def gpu_ballast(leave: int, device: str = "cuda"):
    """Hold all of the GPU's free memory but about `leave` bytes for the duration (plain allocations
    through torch's caching allocator, released afterwards). Yields the bytes left free."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    held: list[torch.Tensor] = []
    size, block = free - leave, 1 << 30
    while size > 0 and block >= 2 * MIB:  # large blocks first; smaller ones near the edge
        take = min(block, size)
        try:
            held.append(torch.empty(take, dtype=torch.uint8, device=device))
            size -= take
        except torch.OutOfMemoryError:
            block //= 2
    try:
        yield torch.cuda.mem_get_info(device)[0]
    finally:
        del held
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def reserved_peak(call: Callable[[], object], device: str = "cuda") -> int:
    """Bytes a call makes the caching allocator reserve beyond what is held before it (what the device
    must have free for the call to run)."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_reserved(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_reserved(device) - before)


def _sizes(
    predictor, image: np.ndarray, probe: list[str], device: str, max_phrases: int
) -> tuple[int, int, int, int]:
    """What one phrase makes the allocator reserve, what each further phrase adds, the memory to leave
    free (one phrase fits, with room for the allocator's rounding) and how many phrases need at least
    four times that in one forward. Leaves the predictor's `max_batch` at 2."""
    predictor.predict(image, probe)  # warm-up: cuBLAS/cuDNN handles and workspaces exist from here on
    one = reserved_peak(lambda: predictor.predict(image, probe), device)
    predictor.max_batch = 2
    two = reserved_peak(lambda: predictor.predict(image, probe * 2), device)
    per_phrase = max(two - one, 2 * MIB)
    leave = int(1.5 * one) + 16 * MIB
    count = int(min(max_phrases, 1 + math.ceil(4 * leave / per_phrase)))
    return one, per_phrase, leave, count


def _differences(retried: list, reference: list[np.ndarray]) -> dict:
    """Under memory pressure cuDNN may run another convolution algorithm (one that needs less
    workspace), so the retried maps may differ from the reference's by rounding: compared on average."""
    pairs = list(zip(retried, reference))
    return {
        "max_difference": float(max(np.abs(a.probability - b).max() for a, b in pairs)),
        "mean_difference": float(np.mean([np.abs(a.probability - b).mean() for a, b in pairs])),
    }


def _passed(report: dict, count: int) -> bool:
    return bool(
        report.get("first_call", {}).get("error", "").startswith("OutOfMemoryError")
        and report.get("retried_one_by_one")
        and report.get("results") == count
        and report.get("mean_difference", 1.0) <= 1e-3
        and "smaller tile" in report.get("too_small_error", "")
        and report.get("recovered")
    )


def oom_retry_check(predictor, image: np.ndarray, max_phrases: int = 512) -> dict:
    """Provoke a real CUDA out-of-memory in `predict_tile` and record what happened (see the module's
    docstring). The predictor must be on a CUDA device; its `max_batch` is restored afterwards."""
    from backend.engine.errors import ModelOutOfMemoryError
    from backend.engine.predict import predict_tile

    device = str(predictor.device)
    probe = ["the dark lake"]
    saved_batch = predictor.max_batch
    one, per_phrase, leave, count = _sizes(predictor, image, probe, device, max_phrases)
    phrases = [f"the field number {index}" for index in range(count)]
    predictor.max_batch = 1
    reference = [p.probability for p in predictor.predict(image, phrases)]
    calls: list[tuple[int, str]] = []
    original = predictor.predict

    def spy(spied_image, spied_phrases):
        try:
            result = original(spied_image, spied_phrases)
        except Exception as exc:
            calls.append((len(spied_phrases), f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"))
            raise
        calls.append((len(spied_phrases), ""))
        return result

    predictor.predict = spy
    predictor.max_batch = count  # every phrase in one forward: what does not fit
    report: dict = {
        "device": torch.cuda.get_device_name(torch.device(device)),
        "one_phrase_bytes": one,
        "per_phrase_bytes": per_phrase,
        "phrases": count,
    }
    try:
        with gpu_ballast(leave, device) as left:
            retried = predict_tile(predictor, image, phrases)
        report["left_free_bytes"] = int(left)
        report["calls"] = len(calls)
        report["first_call"] = {"phrases": calls[0][0], "error": calls[0][1]}
        report["retried_one_by_one"] = all(n == 1 and not error for n, error in calls[1:])
        report["retried_calls"] = len(calls) - 1
        report.update(_differences(retried, reference))
        report["results"] = len(retried)
        calls.clear()
        with gpu_ballast(max(one // 8, 2 * MIB), device) as left:
            try:
                predict_tile(predictor, image, phrases[:2])
                report["too_small_error"] = ""
            except ModelOutOfMemoryError as exc:
                report["too_small_error"] = str(exc)
        report["too_small_left_free_bytes"] = int(left)
        report["too_small_calls"] = [n for n, _ in calls]
        report["recovered"] = len(original(image, probe)) == 1  # the model still runs afterwards
    finally:
        predictor.predict = original
        predictor.max_batch = saved_batch
    report["passed"] = _passed(report, count)
    return report
