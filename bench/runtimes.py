"""CPU inference runtimes against torch's own precision modes, on the part of a tile that costs the most:
the phrase-conditioned image encoder (Hiera + BHF adapters + FPN neck) of `tiny` at 1024 px (`--preset`), one
phrase, random weights (seed 0), on the demo scene.

Candidates: torch eager fp32 (the reference), torch eager bf16 (the `bf16` precision mode: bf16 weights,
bf16 autocast), OpenVINO f32 and bf16 (`torch.export` → `openvino.convert_model`; when `openvino` can be
imported), and `torch.compile` of the bf16 mode (with --compile: minutes to compile). None of the
runtimes is a dependency of the project; one that is not installed is reported as such. For each: the
one-time cost of converting or compiling, the median CPU time per call (interleaved rounds), and the
largest difference from torch fp32's outputs relative to their largest value. The whole tile in the bf16
mode is measured beside them, so the encoder's share of a tile is known.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import multiprocessing
import os
import statistics
import time

BF16 = "torch eager bf16 (the `bf16` mode)"
TILE = "whole tile"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after a warm-up (median)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of every runtime (default 1)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (minutes to compile)")
    parser.add_argument("--preset", default="tiny", help="model preset (default: tiny, 1024 px)")


def _encoder(model):
    """The phrase-conditioned image encoder as a module of (image, text, padding) → (embedding,
    *high_res): the graph the `openvino` mode exports."""
    from backend.model.openvino_encoder import PhraseImageEncoder

    return PhraseImageEncoder(model).eval()


def _inputs(model):
    import torch

    from backend.model.preprocess import image_to_tensor, preprocess_batch
    from bench.precision import reference_image

    with torch.no_grad():
        image = reference_image(model.config.image_size)
        tokens = model.tokenize(["the dark lake"])
        sam, clip = preprocess_batch(image_to_tensor(image), model.config)
        union = model.union(clip, tokens)
        return image, (sam, model.text_proj(union.text), ~tokens.valid)


def _error(outputs, reference) -> float:
    import torch

    largest = max(float(r.abs().max()) for r in reference)
    worst = max(float((torch.as_tensor(o).float() - r).abs().max()) for o, r in zip(outputs, reference))
    return worst / largest


def _openvino(module, inputs, threads: int) -> dict:
    """OpenVINO candidates (f32, bf16): callables and their conversion time, or why there are none."""
    try:
        import openvino
    except ImportError:
        return {"OpenVINO": "not installed (`pip install openvino`)"}
    import torch

    start = time.process_time()
    exported = torch.export.export(module, inputs, strict=False)
    converted = openvino.convert_model(exported, example_input=inputs)
    convert = time.process_time() - start
    core = openvino.Core()
    version = getattr(openvino, "__version__", "").split("-")[0]
    candidates = {}
    for hint in ("f32", "bf16"):
        start = time.process_time()
        compiled = core.compile_model(
            converted, "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads}
        )
        numpy_inputs = [tensor.numpy() for tensor in inputs]

        def call(compiled=compiled, numpy_inputs=numpy_inputs):
            result = compiled(numpy_inputs)
            return [result[output] for output in compiled.outputs]

        candidates[f"OpenVINO {version} {hint}"] = (call, convert + time.process_time() - start)
    return candidates


def measure(preset: str, repeats: int, threads: int, with_compile: bool) -> dict:
    import copy

    import torch

    from backend.model.factory import build_model, make_predictor

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fp32_model = build_model(preset).eval()
    image, inputs = _inputs(fp32_model)
    bf16_predictor = make_predictor(copy.deepcopy(fp32_model), preset, "bf16")
    fp32_encoder, bf16_encoder = _encoder(fp32_model), _encoder(bf16_predictor.model)

    def eager(encoder, autocast):
        def call():
            with torch.no_grad(), autocast():
                return encoder(*inputs)

        return call

    candidates: dict = {
        "torch eager fp32": (eager(fp32_encoder, contextlib.nullcontext), 0.0),
        BF16: (eager(bf16_encoder, bf16_predictor.precision.autocast), 0.0),
    }
    with torch.no_grad():
        candidates.update(_openvino(fp32_encoder, inputs, threads))
    if with_compile:
        compiled = torch.compile(bf16_encoder)
        call = eager(compiled, bf16_predictor.precision.autocast)
        start = time.process_time()
        call()  # the first call compiles
        candidates["torch.compile (inductor) bf16"] = (call, time.process_time() - start)
    skipped = {name: why for name, why in candidates.items() if isinstance(why, str)}
    runnable = {name: value for name, value in candidates.items() if not isinstance(value, str)}
    reference = [tensor.float() for tensor in runnable["torch eager fp32"][0]()]
    errors = {name: _error(call(), reference) for name, (call, _) in runnable.items()}  # also the warm-up
    bf16_predictor.predict(image, ["the dark lake"])
    times: dict[str, list[float]] = {name: [] for name in [*runnable, TILE]}
    for _ in range(repeats):
        for name, (call, _) in runnable.items():
            start = time.process_time()
            call()
            times[name].append(time.process_time() - start)
        start = time.process_time()
        bf16_predictor.predict(image, ["the dark lake"])
        times[TILE].append(time.process_time() - start)
    return {
        "rows": {
            name: (runnable.get(name, (None, 0.0))[1], statistics.median(times[name]), errors.get(name))
            for name in times
        },
        "skipped": skipped,
        "size": fp32_model.config.image_size,
    }


def run(args: argparse.Namespace) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        result = pool.submit(measure, args.preset, args.repeats, args.threads, args.compile).result()
    rows = dict(result["rows"])
    _, tile, _ = rows.pop(TILE)
    fp32, bf16 = rows["torch eager fp32"][1], rows[BF16][1]
    lines = [
        f"The phrase-conditioned image encoder of `{args.preset}` (Hiera + BHF adapters + neck), random "
        f"weights, the demo scene at {result['size']} px, one phrase; CPU, {args.threads} thread(s) for "
        f"every runtime; CPU time, median of {args.repeats} interleaved rounds after a warm-up. The last "
        f"column: a whole tile in the `bf16` mode ({tile:.2f} s here, the encoder {bf16 / tile:.0%} of it) "
        f"with its encoder replaced by this one. Load average when the run started: {load}.",
        "",
        "| runtime, precision | one-time conversion (CPU) | encoder, CPU time | vs torch fp32 "
        "| largest difference / largest output | `bf16` tile with this encoder |",
        "|---|---|---|---|---|---|",
    ]
    for name, (convert, seconds, error) in rows.items():
        lines.append(
            f"| {name} | {convert:.1f} s | {seconds:.2f} s | {fp32 / seconds:.2f}× | {error:.1e} "
            f"| {tile - bf16 + seconds:.2f} s |"
        )
    lines += [f"- {name}: {why}." for name, why in result["skipped"].items()]
    return "\n".join(lines)
