"""The cost of many phrases on one tile: per-phrase time as the phrases grow (1, 2, 4, 8, 16), with the
predictor's own chunking (phrases per forward sized to memory, backend/model/batching.py) and, beside it,
all phrases in one forward (what the predictor did before), on the CPU.

One fresh process; `tiny` with random weights on the demo scene at 1024 px; every phrase count is run
once per round and the rounds are repeated (medians), so that other work on a shared machine slows all
of them alike. Time is CPU time (independent of other work on the machine) and wall time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import statistics
import time

PHRASES = [
    "the brown farmland",
    "the blue stream",
    "the dark lake",
    "the dark street",
    "the large white building next to the river",
    "the expressway service area on the bottom right",
    "a small pond",
    "the baseball field on the left",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="model preset (default: tiny)")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="phrase counts")
    parser.add_argument("--precision", default="auto", help="precision mode (default: auto)")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds after a warm-up (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--one-batch", type=int, nargs="*", default=[8], help="counts also run as one forward (default 8)"
    )
    parser.add_argument(
        "--chunks", type=int, nargs="*", default=[2], help="other phrases-per-forward to compare (default 2)"
    )


def _phrases(count: int) -> list[str]:
    return [PHRASES[i % len(PHRASES)] + ("" if i < len(PHRASES) else f" {i}") for i in range(count)]


def measure(
    preset: str,
    counts: list[int],
    batches: dict[str, list[int]],
    precision: str,
    repeats: int,
    threads: int,
):
    import torch

    from backend.model.factory import build_model, make_predictor
    from bench.precision import reference_image

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(preset).eval()
    predictor = make_predictor(model, preset, precision)
    chunk = predictor.max_batch
    image = reference_image(predictor.input_size)
    sizes = sorted({chunk, *batches["chunks"]})
    runs = [(count, min(size, count)) for count in counts for size in sizes]
    runs = list(dict.fromkeys(runs + [(count, count) for count in batches["one_batch"] if count > chunk]))
    cpu: dict[tuple[int, int], list[float]] = {run: [] for run in runs}
    wall: dict[tuple[int, int], list[float]] = {run: [] for run in runs}
    for round_index in range(repeats + 1):  # round 0 is the warm-up (every shape seen once)
        for count, batch in runs:
            predictor.max_batch = batch
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            predictor.predict(image, _phrases(count))
            if round_index:
                cpu[(count, batch)].append(time.process_time() - cpu_start)
                wall[(count, batch)].append(time.perf_counter() - wall_start)
    return {
        "precision": predictor.precision.describe(),
        "chunk": chunk,
        "rows": [(*run, statistics.median(cpu[run]), statistics.median(wall[run])) for run in runs],
    }


def run(args: argparse.Namespace) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        result = pool.submit(
            measure,
            args.preset,
            args.counts,
            {"chunks": args.chunks, "one_batch": args.one_batch},
            args.precision,
            args.repeats,
            args.threads,
        ).result()
    single = min(cpu for count, _, cpu, _ in result["rows"] if count == 1)
    lines = [
        f"`{args.preset}`, random weights, the demo scene at 1024 px, CPU, precision {result['precision']}, "
        f"torch threads: {args.threads}; the predictor's chunk: {result['chunk']} phrase(s) per forward; "
        f"median of {args.repeats} rounds after a warm-up round. Load average when the run started: {load}.",
        "",
        "| phrases | phrases per forward | CPU time | wall time | CPU time per phrase "
        "| per phrase / one phrase |",
        "|---|---|---|---|---|---|",
    ]
    for count, batch, cpu, wall in result["rows"]:
        lines.append(
            f"| {count} | {batch} | {cpu:.2f} s | {wall:.2f} s | {cpu / count:.2f} s "
            f"| {cpu / count / single:.2f}× |"
        )
    return "\n".join(lines)
