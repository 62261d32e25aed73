"""The paper's model (paper-rrsisd architecture, random weights of the published shapes) on this machine:
loading a published-layout folder (time, peak RSS against the size of the fp32 weights) and one 1024×1024
tile with one phrase (CPU time, peak RSS), beside SAM 2 Hiera-L alone on the same tile
(`SAM2ImagePredictor.set_image` + one box `predict`, SAM 2.0's Hiera-L config).

Each measurement runs in its own fresh process, so its peak RSS is its own. Pass `--folder` to measure a
real downloaded folder instead of the random one this benchmark writes (about 3.7 GB in a temp folder).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

PHRASE = "the large white building next to the river"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--folder", help="a published model folder to load (default: write a random one)")
    parser.add_argument("--repeats", type=int, default=1, help="timed tile runs after one warm-up (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _tokenizer_model(folder: Path) -> None:
    import sentencepiece

    corpus = ["the large white building next to the river", "a small pond on the left", "two tennis courts"]
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 50),
        model_prefix=str(folder / "sentencepiece.bpe"),
        vocab_size=60,
        model_type="bpe",
        num_threads=1,
        minloglevel=2,
    )
    (folder / "sentencepiece.bpe.vocab").unlink()


def _write_random_folder(folder: Path) -> int:
    """A folder in the published layout (one model.safetensors) with random weights; returns its bytes."""
    import json

    import torch

    from backend.model.paper.build import build_paper_model
    from backend.model.paper.safetensors_stream import write_file
    from backend.model.presets import get_preset

    torch.manual_seed(0)
    model = build_paper_model(get_preset("paper-rrsisd"))
    write_file(folder / "model.safetensors", model.state_dict(), {"format": "pt"})
    config = {"model_type": "evf", "hidden_size": 1024, "out_dim": 256, "mm_extractor_scale": "large"}
    (folder / "config.json").write_text(json.dumps(config))
    _tokenizer_model(folder)
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _measure_load_and_tile(folder: str, repeats: int, threads: int) -> dict:
    import numpy as np
    import torch

    from backend.model.factory import make_predictor
    from backend.model.paper.folder import load_published_folder
    from backend.model.presets import get_preset

    if threads:
        torch.set_num_threads(threads)
    before = _peak_mib()
    start = time.perf_counter()
    model = load_published_folder(folder, get_preset("paper-rrsisd"))
    load_seconds = time.perf_counter() - start
    load_peak = _peak_mib()
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    predictor = make_predictor(model, "bench")
    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    [prediction] = predictor.predict(image, [PHRASE])  # warm-up
    cpu, wall = [], []
    for _ in range(repeats):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        [prediction] = predictor.predict(image, [PHRASE])
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    counts = model.parameter_counts()
    return {
        "before_mib": before,
        "load_seconds": load_seconds,
        "load_peak_mib": load_peak,
        "weights_mib": weights / 2**20,
        "tile_cpu": statistics.median(cpu),
        "tile_wall": statistics.median(wall),
        "tile_peak_mib": _peak_mib(),
        "shape": tuple(prediction.probability.shape),
        "counts": counts,
        "threads": torch.get_num_threads(),
    }


def _measure_sam2(repeats: int, threads: int) -> dict:
    import numpy as np
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from backend.model.presets import get_preset
    from backend.model.sam2_loading import build_sam2_model

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    predictor = SAM2ImagePredictor(build_sam2_model(get_preset("large")))
    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    box = np.array([256, 256, 614, 717])

    def run() -> None:
        predictor.set_image(image)
        predictor.predict(box=box, multimask_output=False)

    with torch.inference_mode():
        run()
        cpu, wall = [], []
        for _ in range(repeats):
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            run()
            cpu.append(time.process_time() - cpu_start)
            wall.append(time.perf_counter() - wall_start)
    return {"tile_cpu": statistics.median(cpu), "tile_wall": statistics.median(wall), "peak_mib": _peak_mib()}


def _in_fresh_process(fn, *args):
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def run(args: argparse.Namespace) -> str:
    load_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="rs2sam2-bench-paper-") as tmp:
        folder = args.folder
        source = f"the folder {folder}"
        if folder is None:
            folder = tmp
            _in_fresh_process(_write_random_folder, Path(tmp))
            source = "a folder in the published layout written with random weights (one model.safetensors)"
        paper = _in_fresh_process(_measure_load_and_tile, str(folder), args.repeats, args.threads)
    sam2 = _in_fresh_process(_measure_sam2, args.repeats, args.threads)
    ratio = paper["load_peak_mib"] / paper["weights_mib"]
    counts = paper["counts"]
    threads = paper["threads"]
    header = (
        f"`paper-rrsisd` architecture loaded from {source}; CPU, fp32, torch threads: {threads}; one "
        f"1024×1024 uint8 tile, one phrase, median of {args.repeats} run(s) after a warm-up; each column in "
        f"a fresh process. Load average when the run started: {load_start} (1-minute figures above the "
        "threads in use mean other work shared the machine, and the times are upper bounds)."
    )
    paper_row = (
        f"| RS2-SAM 2 (paper) | {counts['total'] / 1e6:.1f} M | {paper['load_seconds']:.1f} s "
        f"| {paper['load_peak_mib']:.0f} MiB ({ratio:.2f}× the {paper['weights_mib']:.0f} MiB fp32 weights) "
        f"| {paper['tile_cpu']:.1f} s | {paper['tile_wall']:.1f} s | {paper['tile_peak_mib']:.0f} MiB |"
    )
    sam2_row = (
        f"| SAM 2 Hiera-L alone (box prompt) | — | — | — | {sam2['tile_cpu']:.1f} s "
        f"| {sam2['tile_wall']:.1f} s | {sam2['peak_mib']:.0f} MiB |"
    )
    return "\n".join(
        [
            header,
            "",
            "| model | parameters | load | peak RSS after load | tile CPU time | tile wall time | peak RSS |",
            "|---|---|---|---|---|---|---|",
            paper_row,
            sam2_row,
            "",
            f"- Output: a {paper['shape'][0]}×{paper['shape'][1]} probability map per phrase; "
            f"RS2-SAM 2 / SAM 2 CPU time = {paper['tile_cpu'] / sam2['tile_cpu']:.1f}×.",
            f"- Parameters: BEiT-3 {counts['beit3'] / 1e6:.1f} M, SAM 2 image parts "
            f"{counts['sam'] / 1e6:.1f} M, adapters {counts['adapters'] / 1e6:.1f} M. The peak RSS after "
            f"load includes the interpreter, torch and sam2 ({paper['before_mib']:.0f} MiB before loading).",
        ]
    )
