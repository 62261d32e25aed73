"""Training benchmark: throughput (samples/s) and peak memory of one training step per preset on this
machine, and a learning curve (val mIoU against steps) of the `test` preset on synthetic scenes.

Throughput times the model's training step alone (forward, the per-sample loss, backward, AdamW) on
synthetic scenes at the preset's input size, after one warm-up step; each preset runs in a fresh
process so its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--presets", nargs="+", default=["test", "tiny"], help="presets to time (default: test tiny)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per preset (default: 10 test, 2 others)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: 8 for test, 1 for the 1024-px presets"
    )
    parser.add_argument(
        "--curve-data", default="synthetic:300,field+pond+river+road", help="data of the learning curve"
    )
    parser.add_argument("--curve-steps", type=int, default=600)
    parser.add_argument("--curve-eval-every", type=int, default=100)
    parser.add_argument("--curve-val", type=int, default=100, help="val phrases per point of the curve")
    parser.add_argument(
        "--curve-lr", type=float, default=1e-3, help="lr of both groups (from scratch, not fine-tuning)"
    )
    parser.add_argument("--curve-warmup", type=int, default=50)
    parser.add_argument("--skip-curve", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")


def _time_steps(preset: str, steps: int, batch_size: int, queue) -> None:
    """Runs in a fresh process: put (seconds per step, samples/s, peak RSS MiB, parameters) on the queue."""
    import resource

    import numpy as np
    import torch

    from backend.model.factory import build_model
    from backend.model.losses import RS2SAM2Loss
    from backend.model.preprocess import preprocess_image, preprocess_mask
    from training.data.synthetic import generate_scene
    from training.loop import _per_sample_loss, adamw_kernel

    model = build_model(preset, device="cpu")
    size = model.config.image_size
    samples = []
    for seed in range(batch_size):
        scene = generate_scene(seed, size=size)
        target = scene.referable[0]
        samples.append((scene.image, scene.mask(target), target.phrases[0]))
    sam = torch.stack([preprocess_image(image, model.config).sam for image, _, _ in samples])
    clip = torch.stack([preprocess_image(image, model.config).clip for image, _, _ in samples])
    masks = torch.stack([preprocess_mask(mask, model.config) for _, mask, _ in samples])
    phrases = [phrase for _, _, phrase in samples]
    optimizer = torch.optim.AdamW(model.param_groups(1e-4, 5e-5), **adamw_kernel(torch.device("cpu")))
    loss_fn = RS2SAM2Loss()

    def step() -> None:
        terms = _per_sample_loss(loss_fn, model(sam, clip, phrases), masks)
        terms["total"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (tokenizer, allocations)
    durations = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        durations.append(time.perf_counter() - start)
    per_step = float(np.median(durations))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = model.parameter_counts()
    queue.put((per_step, batch_size / per_step, peak_mib, counts["total"], counts["trainable"]))


def throughput_table(presets: list[str], steps: int | None, batch_size: int | None) -> str:
    from backend.model.presets import get_preset

    context = multiprocessing.get_context("spawn")
    rows = [
        "| preset | input px | batch | s/step (median) | samples/s | peak RSS | parameters (trainable) |",
        "|---|---|---|---|---|---|---|",
    ]
    for preset in presets:
        size = get_preset(preset).image_size
        batch = batch_size or (8 if size <= 256 else 1)
        count = steps or (10 if size <= 256 else 2)
        queue = context.Queue()
        process = context.Process(target=_time_steps, args=(preset, count, batch, queue))
        process.start()
        per_step, rate, peak, total, trainable = queue.get()
        process.join()
        rows.append(
            f"| {preset} | {size} | {batch} | {per_step:.2f} | {rate:.2f} | {peak:,.0f} MiB | "
            f"{total / 1e6:.1f} M ({trainable / 1e6:.1f} M) |"
        )
    return "\n".join(rows)


def learning_curve(args: argparse.Namespace) -> str:
    """The same run twice, with the method's loss weights and with FROM_SCRATCH_LOSS."""
    from training.baselines import learning_check
    from training.config import FROM_SCRATCH_LOSS, METHOD_LOSS, TrainConfig

    checks = {}
    for name, loss in (("method loss", METHOD_LOSS), ("from-scratch loss", FROM_SCRATCH_LOSS)):
        with tempfile.TemporaryDirectory() as folder:
            config = TrainConfig(
                data=(args.curve_data,),
                preset="test",
                out=str(Path(folder) / "run"),
                max_steps=args.curve_steps,
                batch_size=8,
                eval_every=args.curve_eval_every,
                val_limit=args.curve_val,
                lr_new=args.curve_lr,
                lr_rest=args.curve_lr,
                warmup_steps=args.curve_warmup,
                device="cpu",
                log_every=10,
                checkpoint_every=10**6,
                progress=False,
                **loss,
            )
            checks[name] = learning_check(config)
    first = next(iter(checks.values()))
    lines = [
        f"`test` preset from scratch on `{args.curve_data}` ({first.train_samples} training phrases, "
        f"{first.val_samples} val phrases from unseen scenes), batch 8, lr {args.curve_lr:g} (both groups), "
        f"{args.curve_warmup} warm-up steps, {args.curve_steps} steps; "
        + "; ".join(f"{name} {check.minutes:.1f} min" for name, check in checks.items())
        + f". Method loss: {METHOD_LOSS}; "
        + f"from-scratch loss (the default from random weights): {FROM_SCRATCH_LOSS}.",
        "",
        "| step | " + " | ".join(f"val mIoU, {name}" for name in checks) + " |",
        "|---|" + "---|" * len(checks),
    ]
    for points in zip(*(check.val_history for check in checks.values()), strict=True):
        lines.append(
            f"| {points[0]['step']} | " + " | ".join(f"{100 * p['mIoU']:.2f}" for p in points) + " |"
        )
    best_name, best = first.best_baseline
    lines += [
        "",
        "Phrase-blind baselines (val mIoU): "
        + ", ".join(f"{k} {100 * v:.2f}" for k, v in first.baselines.items())
        + f" — the best is {best_name} ({100 * best:.2f}).",
    ]
    return "\n".join(lines)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run(args: argparse.Namespace) -> str:
    sections = []
    if not args.skip_throughput:
        sections += [
            "### Throughput of one training step (CPU)",
            "",
            throughput_table(args.presets, args.steps, args.batch_size),
            "",
            f"Torch threads per process: {_torch_threads()} (set OMP_NUM_THREADS to change).",
        ]
    if not args.skip_curve:
        sections += ["", "### Learning curve", "", learning_curve(args)]
    return "\n".join(sections).strip()
