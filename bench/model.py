"""RS2-SAM 2 model speed on this machine: per-stage times, time per phrase for 1 and N phrases, peak
memory and parameter counts, next to plain SAM 2 (SAM2ImagePredictor set_image + one box predict) of
the same Hiera, measured in the same run.

Every measurement runs in its own fresh process (so peak RSS belongs to that measurement alone);
times are the median of `--repeats` runs after one warm-up run. Random weights: speed does not depend
on them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import resource
import statistics
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="model preset (default: tiny)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="SAM 2 input sizes")
    parser.add_argument("--phrases", type=int, nargs="+", default=[1, 8], help="phrase counts per image")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


PHRASES = [
    "the large white building next to the river",
    "the expressway service area on the bottom right",
    "a small pond",
    "the baseball field on the left",
    "the harbour with many boats",
    "the road",
    "the red roof in the middle",
    "the storage tanks at the top",
]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure_rs2sam2(preset: str, size: int, n_phrases: int, repeats: int, threads: int) -> dict:
    import numpy as np
    import torch

    from backend.model.factory import build_model
    from backend.model.presets import get_preset
    from backend.model.project.predictor import RS2SAM2Predictor

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(get_preset(preset).replace(image_size=size)).eval()
    counts = model.parameter_counts()
    predictor = RS2SAM2Predictor(model, "bench")
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    phrases = [PHRASES[i % len(PHRASES)] for i in range(n_phrases)]

    # Stage clocks from hooks on the stage modules (the forward itself is unchanged).
    stages: dict[str, float] = {}
    starts: dict[str, float] = {}

    def clock(name: str, module: torch.nn.Module) -> None:
        module.register_forward_pre_hook(lambda *_: starts.__setitem__(name, time.perf_counter()))
        module.register_forward_hook(
            lambda *_: stages.__setitem__(name, stages.get(name, 0.0) + time.perf_counter() - starts[name])
        )

    clock("union", model.union)
    clock("image_encoder", model.sam.image_encoder)
    clock("decoder", model.sam.sam_mask_decoder)
    per_run: list[dict[str, float]] = []

    def run() -> None:
        stages.clear()
        start = time.perf_counter()
        predictor.set_image(image)  # both resizes + CLIP vision tower (text-independent)
        stages["set_image"] = time.perf_counter() - start
        predictor.predict_phrases(phrases)
        stages["total"] = time.perf_counter() - start
        per_run.append(dict(stages))

    total = _timed(run, repeats)
    timed = per_run[1:]
    median = {key: statistics.median(r.get(key, 0.0) for r in timed) for key in timed[0]}
    return {"total": total, "stages": median, "counts": counts, "peak_mib": _peak_rss_mib()}


def _measure_sam2(preset: str, size: int, repeats: int, threads: int) -> dict:
    import numpy as np
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from backend.model.presets import get_preset
    from backend.model.sam2_loading import build_sam2_model

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    sam = build_sam2_model(get_preset(preset).replace(image_size=size))
    predictor = SAM2ImagePredictor(sam)
    # SAM2ImagePredictor hard-codes the grids of a 1024 input; derive them from the size.
    predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    box = np.array([size * 0.25, size * 0.25, size * 0.6, size * 0.7])

    def run() -> None:
        predictor.set_image(image)
        predictor.predict(box=box, multimask_output=False)

    image_params = sum(
        p.numel()
        for m in (sam.image_encoder, sam.sam_prompt_encoder, sam.sam_mask_decoder)
        for p in m.parameters()
    )
    with torch.inference_mode():
        total = _timed(run, repeats)
    return {"total": total, "params": image_params, "peak_mib": _peak_rss_mib()}


def _in_fresh_process(fn, *args):
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def _m(count: int) -> str:
    return f"{count / 1e6:.1f} M"


def run(args: argparse.Namespace) -> str:
    threads = args.threads or "torch default"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"Preset `{args.preset}`, CPU, random weights, torch threads: {threads}, "
        f"median of {args.repeats} runs "
        f"after a warm-up; each row in a fresh process (peak RSS is that process's). Load average when the "
        f"run started: {load} (1-minute figures above the threads in use mean other work shared the machine, "
        f"and the times are upper bounds).",
        "",
        "| size | phrases | resize + CLIP vision | CLIP text + joint layers | image encoder + BHF "
        "| gate + MPG + decoder | total | per phrase | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    summary, counts = [], None
    for size in args.sizes:
        sam2 = _in_fresh_process(_measure_sam2, args.preset, size, args.repeats, args.threads)
        single = None
        for n_phrases in args.phrases:
            result = _in_fresh_process(
                _measure_rs2sam2, args.preset, size, n_phrases, args.repeats, args.threads
            )
            counts = result["counts"]
            stages = result["stages"]
            rest = (
                stages["total"]
                - stages["set_image"]
                - stages.get("union", 0.0)
                - stages.get("image_encoder", 0.0)
            )
            lines.append(
                f"| {size} | {n_phrases} | {stages['set_image']:.2f} s | {stages.get('union', 0):.2f} s "
                f"| {stages.get('image_encoder', 0):.2f} s | {rest:.2f} s | {result['total']:.2f} s "
                f"| {result['total'] / n_phrases:.2f} s | {result['peak_mib']:.0f} MiB |"
            )
            if n_phrases == 1:
                single = result["total"]
        ratio = f"{single / sam2['total']:.1f}×" if single else "n/a"
        summary.append(
            f"- {size} px: SAM 2 alone (`SAM2ImagePredictor.set_image` + one box `predict`, same Hiera, "
            f"{_m(sam2['params'])} image-model parameters) {sam2['total']:.2f} s, peak RSS "
            f"{sam2['peak_mib']:.0f} MiB; RS2-SAM 2 with one phrase / SAM 2 = {ratio}."
        )
    lines += ["", *summary]
    if counts:
        lines.append(
            f"- Parameters ({args.preset}): total {_m(counts['total'])}, trainable {_m(counts['trainable'])} "
            f"(nothing pretrained here, so the backbones train too), BHF adapters {_m(counts['adapters'])}, "
            f"SAM 2 image parts {_m(counts['sam'])}, CLIP {_m(counts['clip'])}."
        )
    return "\n".join(lines)
