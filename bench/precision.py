"""Precision modes (`--precision`) on this machine: for each model of the reference set, one tile with
one phrase in every mode the device runs, against fp32 — time and agreement of the masks with fp32's
(mask IoU, the lowest over the reference phrases) — and what `auto` resolves to beside the fastest
agreeing mode measured (the rule in backend/model/precision.py must match it). Below 512 px `openvino`
is left out of that comparison: its start-up (about 0.35 s per process) is not in a tile's time and
outweighs what it saves on such tiles.

The reference set (fixed): the bundled demo model on the bundled demo scene with its phrases; `tiny` with
random weights (seed 0) on the demo scene resized to 1024×1024, same phrases; the paper's architecture
(`paper-rrsisd` shapes, random weights, a small tokenizer) on the same 1024 tile. Each model is measured
in its own fresh process holding every mode's predictor at once; the modes are interleaved (one call of
each per round) so that other work on a shared machine slows all of them alike; the times are medians.
The paper-scale model is the exception: one process per mode (memory), compared by CPU time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = ("demo", "tiny", "paper")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="reference models")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after a warm-up (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--modes", nargs="+", default=["fp32", "bf16", "int8", "openvino"], help="modes to measure"
    )


def reference_image(size: int):
    """The bundled demo scene as RGB uint8, resized (bilinear) to size×size when it is not that size."""
    import numpy as np
    import rasterio
    from PIL import Image

    from backend.bundled import DEMO_SCENE

    with rasterio.open(DEMO_SCENE) as source:
        image = np.ascontiguousarray(source.read([1, 2, 3]).transpose(1, 2, 0))
    if image.shape[:2] != (size, size):
        image = np.array(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return image


def stage_modules(model) -> dict[str, list]:
    """The model's parts by stage, for the profile (the adapters run inside the image encoder)."""
    if model.config.family == "paper":
        encoder = model.visual_model.image_encoder
        blocks = encoder.trunk.blocks
        return {
            "union encoder (BEiT-3)": [model.mm_extractor],
            # The paper family calls the trunk (with the text) and the neck itself, not the encoder's forward.
            "image encoder (Hiera + adapters + neck)": [encoder.trunk, encoder.neck],
            "… of which the adapters": [m for b in blocks for m in (b.Space_Adapter, b.MLP_Adapter)],
            "mask decoder (transformer + upscaling)": _decoder_parts(model.visual_model.sam_mask_decoder),
        }
    return {
        "union encoder: CLIP vision": [model.union.clip.visual.transformer],
        "union encoder: CLIP text + joint layers": [model.union],
        "image encoder (Hiera + adapters + neck)": [model.sam.image_encoder],
        "… of which the adapters": [m for a in model.adapters for m in (a.fusion, a.mlp)],
        "mask decoder (transformer + upscaling)": _decoder_parts(model.sam.sam_mask_decoder),
    }


def _decoder_parts(decoder) -> list:
    # The models call `predict_masks`, not the decoder's forward: clock the parts it runs.
    return [decoder.transformer, decoder.output_upscaling]


class StageClock:
    """Wall time spent inside each stage's modules (forward hooks; the forward itself is unchanged)."""

    def __init__(self, stages: dict[str, list]):
        self.seconds = dict.fromkeys(stages, 0.0)
        self._started: dict[int, float] = {}
        for name, modules in stages.items():
            for module in modules:
                module.register_forward_pre_hook(self._start)
                module.register_forward_hook(self._stop(name))

    def _start(self, module, _args) -> None:
        self._started[id(module)] = time.perf_counter()

    def _stop(self, name: str):
        def hook(module, _args, _output) -> None:
            self.seconds[name] += time.perf_counter() - self._started.pop(id(module))

        return hook

    def time_calls(self, name: str, owner, attribute: str) -> None:
        """Also count the calls of `owner.attribute` (a runtime outside torch, which has no hooks)."""
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        setattr(owner, attribute, timed)

    def take(self) -> dict[str, float]:
        taken, self.seconds = self.seconds, dict.fromkeys(self.seconds, 0.0)
        return taken


def _base_model(name: str, workdir: str):
    """(predictor factory per mode, image, model description)."""
    import torch

    from backend.bundled import DEMO_CHECKPOINT
    from backend.model.factory import build_model, load_predictor, make_predictor

    if name == "demo":
        return (
            lambda mode, _last: load_predictor(checkpoint=DEMO_CHECKPOINT, device="cpu", precision=mode),
            reference_image(128),
            "the bundled demo model (`test` preset, 128 px) on the demo scene",
        )
    torch.manual_seed(0)
    if name == "tiny":
        model = build_model("tiny").eval()
        what = "`tiny`, random weights, the demo scene at 1024 px"
    else:
        from backend.model.paper.tokenizer import PaperTokenizer
        from backend.model.presets import get_preset
        from bench.paper import _tokenizer_model

        config = get_preset("paper-rrsisd")
        model = _random_paper_model(config)
        _tokenizer_model(Path(workdir))
        model.tokenizer = PaperTokenizer(
            Path(workdir) / "sentencepiece.bpe.model", config.text_context_length
        )
        what = "paper architecture (`paper-rrsisd` shapes), random weights, the demo scene at 1024 px"
    # The last mode made gets the base model itself (fp32 comes last), so only the others add memory.
    return (
        lambda mode, last: make_predictor(model if last else copy.deepcopy(model), name, mode),
        reference_image(1024),
        what,
    )


def agreement(maps: dict[str, list], threshold: float | None) -> dict[str, tuple[float, float]]:
    """Each mode's (lowest mask IoU against fp32 over the phrases, mean mask share). A trained model's
    masks are cut at its threshold; random weights put most pixels on one side of 0.5, so theirs
    (`threshold` None) are cut at fp32's median probability of each phrase instead (half the pixels: as
    many edges as a mask can have)."""
    cuts = [threshold if threshold is not None else float(np.median(p)) for p in maps["fp32"]]
    masks = {mode: [p > cut for p, cut in zip(probs, cuts)] for mode, probs in maps.items()}
    return {
        mode: (
            min(_iou(a, b) for a, b in zip(masks[mode], masks["fp32"])),
            float(np.mean([m.mean() for m in masks[mode]])),
        )
        for mode in masks
    }


def _random_paper_model(config, device: str = "cpu"):
    """The paper architecture with random weights, allocated once: built on the meta device, then every
    parameter drawn (N(0, 0.02), then each module's own initialisation where it has one). A plain build
    peaked near 8 GB and was killed for memory on the shared machine; this one peaks at the size of the
    weights, like loading the published files. `to_empty` leaves the buffers uninitialised too (on a
    GPU: whatever the memory held before); the one buffer, SAM 2's random Fourier features of the prompt
    encoder, is drawn from N(0, 1) as SAM 2 draws it."""
    import torch

    from backend.model.paper.build import build_paper_model

    model = build_paper_model(config, empty=True).to_empty(device=device)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02)
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.normal_(0.0, 1.0)
            else:  # pragma: no cover - the architecture has none; an index buffer must not be garbage
                raise RuntimeError("the paper architecture gained an integer buffer: initialise it here")
        for module in model.modules():
            if module is not model and hasattr(module, "reset_parameters"):
                try:
                    module.reset_parameters()
                except AttributeError:  # torchscale's attention resets through multiway wrappers
                    pass
    return model.eval()


def _iou(a, b) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def measure_model(name: str, modes: list[str], repeats: int, threads: int) -> dict:
    import torch

    from backend.bundled import demo_phrases
    from backend.model.api import default_threshold_of
    from backend.model.precision import resolve_precision

    torch.set_num_threads(threads)
    phrases = demo_phrases()
    with tempfile.TemporaryDirectory(prefix="rs2sam2-bench-precision-") as workdir:
        factory, image, what = _base_model(name, workdir)
        order = [mode for mode in modes if mode != "fp32"] + ["fp32"]
        predictors = {mode: factory(mode, mode == order[-1]) for mode in order}
    # Warm-up with every reference phrase, whose probabilities give the agreement.
    maps = {mode: [p.probability for p in pr.predict(image, phrases)] for mode, pr in predictors.items()}
    cpu: dict[str, list[float]] = {mode: [] for mode in predictors}
    wall: dict[str, list[float]] = {mode: [] for mode in predictors}
    clocks = {mode: StageClock(stage_modules(p.model)) for mode, p in predictors.items()}
    for mode, predictor in predictors.items():
        if getattr(predictor.model, "encoder_runtime", None) is not None:  # `openvino`: the encoder's graph
            clocks[mode].time_calls(
                "image encoder (Hiera + adapters + neck)", predictor.model, "encoder_runtime"
            )
    stages: dict[str, list[dict[str, float]]] = {mode: [] for mode in predictors}
    for _ in range(repeats):
        for mode, predictor in predictors.items():
            clocks[mode].take()
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            predictor.predict(image, phrases[:1])
            cpu[mode].append(time.process_time() - cpu_start)
            wall[mode].append(time.perf_counter() - wall_start)
            stages[mode].append(clocks[mode].take())
    any_predictor = next(iter(predictors.values()))
    # As backend/model/factory.make_predictor decides it: `auto` converts the project's family only.
    auto = resolve_precision(
        "auto", "cpu", image_size=any_predictor.input_size, converts_to_openvino=name != "paper"
    )
    return {
        "what": what,
        "auto": auto.name,
        "input_size": any_predictor.input_size,
        "threshold": default_threshold_of(any_predictor) if name == "demo" else None,
        "maps": maps,
        "rows": {
            mode: {
                "cpu": statistics.median(cpu[mode]),
                "wall": statistics.median(wall[mode]),
                "stages": {
                    stage: statistics.median(run[stage] for run in stages[mode]) for stage in stages[mode][0]
                },
            }
            for mode in modes
            if mode in predictors
        },
    }


def _in_fresh_process(fn, *args):
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def _modes_here(requested: list[str]) -> list[str]:
    from backend.model.precision import cpu_has_native_bf16

    modes = ["fp32", *[mode for mode in requested if mode != "fp32"]]
    return [mode for mode in modes if mode != "bf16" or cpu_has_native_bf16()]


def run(args: argparse.Namespace) -> str:
    from backend.model.precision import AGREEMENT_IOU, BF16_MIN_IMAGE_SIZE, cpu_has_native_bf16

    modes = _modes_here(args.modes)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"CPU, torch threads: {args.threads}; one tile, one phrase; median of {args.repeats} interleaved "
        f"rounds after a warm-up, CPU time (load-independent) and wall time; agreement: the lowest mask IoU "
        f"against fp32 over the demo phrases (acceptable at ≥ {AGREEMENT_IOU}); the demo model's masks at "
        f"its threshold, the random-weight models' at fp32's median probability per phrase (half the pixels; "
        f"random weights put most pixels on one side of 0.5). The paper-scale model is measured in one "
        f"process per mode, one after the other (memory; CPU times compare). Native bf16 on this CPU: "
        f"{'yes' if cpu_has_native_bf16() else 'no'}. Load average when the run started: {load}.",
        "",
        "| model | mode | CPU time | wall time | vs fp32 (CPU) | mask IoU vs fp32 | mask share |",
        "|---|---|---|---|---|---|---|",
    ]
    notes, profile = [], []
    for name in args.models:
        # Conversion caches go to a scratch folder: the measured first-use conversion is not the user's.
        os.environ.setdefault("RS2SAM2_CACHE", tempfile.mkdtemp(prefix="rs2sam2-bench-precision-cache-"))
        result = _measure(name, modes, args.repeats, args.threads)
        rows = result["rows"]
        for mode, row in rows.items():
            lines.append(
                f"| {name} | {mode} | {row['cpu']:.2f} s | {row['wall']:.2f} s "
                f"| {rows['fp32']['cpu'] / row['cpu']:.2f}× | {row['iou']:.4f} | {row['foreground']:.3f} |"
            )
        profile += _profile_rows(name, rows)
        small = result["input_size"] < BF16_MIN_IMAGE_SIZE  # openvino's start-up outweighs its gain
        agreeing = [
            mode
            for mode, row in rows.items()
            if row["iou"] >= AGREEMENT_IOU and not (small and mode == "openvino")
        ]
        fastest = min(agreeing, key=lambda mode: rows[mode]["cpu"])
        verdict = "matches" if fastest == result["auto"] else "DIFFERS from"
        notes.append(
            f"- {name}: {result['what']}; `auto` resolves to {result['auto']}, which {verdict} the fastest "
            f"agreeing mode measured ({fastest})."
        )
    profile_header = [
        "Where the time goes (wall time inside each part, median; the rest is preprocessing, resizing "
        "the output and Python between the parts):",
        "",
        "| model | mode | part | time | share of the tile |",
        "|---|---|---|---|---|",
    ]
    return "\n".join([*lines, "", *notes, "", *profile_header, *profile])


def _measure(name: str, modes: list[str], repeats: int, threads: int) -> dict:
    """One model's rows, with the agreement. The paper-scale model is measured one mode per process: two
    copies of its 927 M parameters (and the deep copy between them) outgrow a shared 24 GB machine."""
    if name == "paper":
        parts = [_in_fresh_process(measure_model, name, [mode], repeats, threads) for mode in modes]
        result = {**parts[0], "maps": {}, "rows": {}}
        for part in parts:
            result["maps"].update(part["maps"])
            result["rows"].update(part["rows"])
    else:
        result = _in_fresh_process(measure_model, name, modes, repeats, threads)
    for mode, (iou, share) in agreement(result.pop("maps"), result["threshold"]).items():
        result["rows"][mode].update(iou=iou, foreground=share)
    return result


def _profile_rows(name: str, rows: dict) -> list[str]:
    lines = []
    for mode, row in rows.items():
        for stage, seconds in row["stages"].items():
            if seconds == 0:  # a part that runs inside another runtime (the adapters in `openvino`)
                continue
            lines.append(f"| {name} | {mode} | {stage} | {seconds:.3f} s | {seconds / row['wall']:.0%} |")
    return lines
